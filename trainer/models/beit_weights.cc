#include "trainer/models/beit_weights.h"

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/models/weights.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr absl::string_view kSharedTable = "rel_pos_bias.relative_position_bias_table";

void AppendInOrder(const torch::nn::Module& module, const std::string& prefix, NamedTensors* out) {
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    out->emplace_back(prefix + item.key(), item.value().detach());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    out->emplace_back(prefix + item.key(), item.value().detach());
  }
  for (const auto& child : module.named_children()) {
    AppendInOrder(*child.value(), prefix + child.key() + ".", out);
  }
}

// Keys of a classifier that may stay at their initial values when the pre-training state lacks
// them (the official load is non-strict for exactly these).
bool MayKeepInitial(const std::string& name, bool source_has_tables) {
  if (absl::StartsWith(name, "head.") || absl::StartsWith(name, "fc_norm.")) return true;
  if (absl::EndsWith(name, "relative_position_index")) return true;
  return !source_has_tables && absl::EndsWith(name, "relative_position_bias_table");
}

}  // namespace

NamedTensors StateDictInOfficialOrder(const torch::nn::Module& module) {
  NamedTensors out;
  AppendInOrder(module, "", &out);
  return out;
}

absl::StatusOr<NamedTensors> ReadBeitStateFile(const std::string& path) {
  absl::StatusOr<c10::IValue> file = ReadTorchFile(path);
  if (!file.ok()) return file.status();
  absl::StatusOr<c10::IValue> model = DictGet(*file, "model", path);
  if (!model.ok()) return model.status();
  return ToNamedTensors(*model, absl::StrCat(path, " ['model']"));
}

NamedTensors ConvertPretrainToFinetune(const NamedTensors& pretrain,
                                       const BeitVitConfig& finetune) {
  NamedTensors out;
  torch::Tensor shared_table;
  for (const auto& [name, tensor] : pretrain) {
    if (name == "mask_token" || absl::StartsWith(name, "lm_head.")) continue;
    if (absl::EndsWith(name, "relative_position_index")) continue;
    if (finetune.use_mean_pooling && absl::StartsWith(name, "norm.")) continue;
    if (name == kSharedTable && finetune.use_rel_pos_bias) {
      shared_table = tensor;
      if (!finetune.use_shared_rel_pos_bias) continue;
    }
    out.emplace_back(name, tensor);
  }
  if (shared_table.defined()) {
    for (int64_t i = 0; i < finetune.depth; ++i) {
      out.emplace_back(absl::StrCat("blocks.", i, ".attn.relative_position_bias_table"),
                       shared_table.clone());
    }
  }
  return out;
}

absl::Status LoadPretrainIntoClassifier(BeitClassifier& model, const NamedTensors& pretrain,
                                        absl::string_view what) {
  const NamedTensors converted = ConvertPretrainToFinetune(pretrain, model->config());
  std::map<std::string, torch::Tensor> given(converted.begin(), converted.end());
  bool source_has_tables = false;
  for (const auto& [name, tensor] : pretrain) {
    if (absl::EndsWith(name, "relative_position_bias_table")) source_has_tables = true;
  }
  NamedTensors full;
  std::set<std::string> known;
  for (const auto& [name, current] : StateDictInOfficialOrder(*model)) {
    known.insert(name);
    auto it = given.find(name);
    const bool stale_head = it != given.end() && absl::StartsWith(name, "head.") &&
                            it->second.sizes() != current.sizes();
    if (it != given.end() && !stale_head) {
      full.emplace_back(name, it->second);
    } else if (stale_head || MayKeepInitial(name, source_has_tables)) {
      // A head for another number of classes is dropped, as the official script does.
      full.emplace_back(name, current.clone());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": missing key '", name, "' (a pre-training state for this classifier needs it)"));
    }
  }
  for (const auto& [name, tensor] : converted) {
    if (known.count(name) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": unexpected key '", name, "' for this classifier"));
    }
  }
  return TorchCall(what, [&] { return LoadNamedTensors(*model, full, what, /*strict=*/true); });
}

}  // namespace peco::trainer
