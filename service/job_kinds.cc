#include "service/job_kinds.h"

#include "absl/strings/str_join.h"

namespace peco::service {
namespace {

const std::vector<JobKindInfo>& Table() {
  static const auto* table = new std::vector<JobKindInfo>{
      {v1::JOB_KIND_TOKENIZER,
       "tokenizer",
       "perceptual VQ tokenizer (PeCo's VQGAN with a perceptual loss)",
       {{v1::JOB_KIND_CONTRASTIVE, "loss.perceptual.checkpoint"},
        {v1::JOB_KIND_PRETRAIN, "loss.perceptual.checkpoint"},
        {v1::JOB_KIND_FINETUNE, "loss.perceptual.checkpoint"}}},
      {v1::JOB_KIND_PRETRAIN,
       "pretrain",
       "BEiT-style masked image modelling on the tokenizer's codes",
       {{v1::JOB_KIND_TOKENIZER, "tokenizer.checkpoint"}}},
      {v1::JOB_KIND_FINETUNE,
       "finetune",
       "supervised fine-tuning on labelled data",
       {{v1::JOB_KIND_PRETRAIN, "backbone.checkpoint"}}},
      {v1::JOB_KIND_LINEAR_PROBE,
       "linear_probe",
       "k-NN and linear readouts of frozen features",
       {{v1::JOB_KIND_PRETRAIN, "backbone.checkpoint"}}},
      {v1::JOB_KIND_CONTRASTIVE, "contrastive", "MoCo v3 self-supervised perceptual network", {}},
  };
  return *table;
}

}  // namespace

absl::Span<const JobKindInfo> AllJobKinds() { return Table(); }

const JobKindInfo* FindJobKind(v1::JobKind kind) {
  for (const JobKindInfo& info : Table()) {
    if (info.kind == kind) return &info;
  }
  return nullptr;
}

std::string JobKindName(v1::JobKind kind) {
  const JobKindInfo* info = FindJobKind(kind);
  return info == nullptr ? "" : std::string(info->name);
}

std::optional<v1::JobKind> JobKindFromName(absl::string_view name) {
  for (const JobKindInfo& info : Table()) {
    if (info.name == name) return info.kind;
  }
  return std::nullopt;
}

std::string KnownJobKindNames() {
  return absl::StrJoin(Table(), ", ", [](std::string* out, const JobKindInfo& info) {
    out->append(info.name.data(), info.name.size());
  });
}

std::optional<std::string> DependencyInputField(v1::JobKind dependent, v1::JobKind dependency) {
  const JobKindInfo* info = FindJobKind(dependent);
  if (info == nullptr) return std::nullopt;
  for (const JobKindInfo::Input& input : info->inputs) {
    if (input.from == dependency) return std::string(input.field);
  }
  return std::nullopt;
}

}  // namespace peco::service
