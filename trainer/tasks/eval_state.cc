#include "trainer/tasks/eval_state.h"

#include "absl/strings/str_cat.h"
#include "common/config_reader.h"
#include "common/json_writer.h"
#include "common/status_macros.h"
#include "trainer/tasks/model_section.h"

namespace peco::trainer {

std::string EvalStateToJson(const EvalState& s, uint64_t seed, bool final) {
  JsonWriter w;
  w.Add("kind", s.kind)
      .Add("step", s.step)
      .Add("epoch", s.loader.epoch)
      .Add("batch", s.loader.batch)
      .Add("world_size", static_cast<int64_t>(s.world_size))
      .Add("seed", seed)
      .Add("config_sha256", s.config_sha256)
      .AddRaw("model", BeitConfigToJson(s.model))
      .Add("probe_block", s.probe_block)
      .Add("probe_feature_norm", s.probe_feature_norm)
      .Add("num_classes", s.num_classes)
      .Add("backbone", s.backbone.kind)
      .Add("backbone_source", s.backbone.path)
      .Add("backbone_sha256", s.backbone.sha256)
      .Add("backbone_step", s.backbone.step)
      .Add("eval_step", s.eval.step)
      .Add("eval_top1", s.eval.top1)
      .Add("eval_top5", s.eval.top5)
      .Add("eval_loss", s.eval.loss)
      .Add("eval_images", s.eval.images)
      .Add("final", final);
  return w.str() + "\n";
}

absl::StatusOr<EvalState> EvalStateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  EvalState s;
  int64_t seed = 0;
  bool final = false;
  RETURN_IF_ERROR(r.Read("kind", &s.kind));
  if (s.kind != "finetune" && s.kind != "linear_probe") {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": holds a '", s.kind, "' checkpoint, expected a finetune or linear_probe one"));
  }
  RETURN_IF_ERROR(r.Read("step", &s.step));
  RETURN_IF_ERROR(r.Read("epoch", &s.loader.epoch));
  RETURN_IF_ERROR(r.Read("batch", &s.loader.batch));
  RETURN_IF_ERROR(r.Read("world_size", &s.world_size));
  RETURN_IF_ERROR(r.Read("seed", &seed));
  RETURN_IF_ERROR(r.Read("config_sha256", &s.config_sha256));
  {
    ASSIGN_OR_RETURN(ConfigReader m, r.Child("model"));
    ASSIGN_OR_RETURN(s.model, BeitConfigFromReader(m));
  }
  RETURN_IF_ERROR(r.Read("probe_block", &s.probe_block));
  // Absent from checkpoints written before the probe could normalise its features.
  RETURN_IF_ERROR(r.ReadEnum("probe_feature_norm", {"none", "batchnorm"}, &s.probe_feature_norm));
  RETURN_IF_ERROR(r.Read("num_classes", &s.num_classes));
  RETURN_IF_ERROR(r.Read("backbone", &s.backbone.kind));
  RETURN_IF_ERROR(r.Read("backbone_source", &s.backbone.path));
  RETURN_IF_ERROR(r.Read("backbone_sha256", &s.backbone.sha256));
  RETURN_IF_ERROR(r.Read("backbone_step", &s.backbone.step));
  RETURN_IF_ERROR(r.Read("eval_step", &s.eval.step));
  RETURN_IF_ERROR(r.Read("eval_top1", &s.eval.top1));
  RETURN_IF_ERROR(r.Read("eval_top5", &s.eval.top5));
  RETURN_IF_ERROR(r.Read("eval_loss", &s.eval.loss));
  RETURN_IF_ERROR(r.Read("eval_images", &s.eval.images));
  RETURN_IF_ERROR(r.Read("final", &final));
  RETURN_IF_ERROR(r.Finish());
  return s;
}

bool SameClassifier(const BeitVitConfig& a, const BeitVitConfig& b) {
  for (const std::string& field : BeitArchitectureFields()) {
    if (BeitArchitectureValue(a, field) != BeitArchitectureValue(b, field)) return false;
  }
  return a.use_rel_pos_bias == b.use_rel_pos_bias && a.num_classes == b.num_classes &&
         a.use_mean_pooling == b.use_mean_pooling;
}

}  // namespace peco::trainer
