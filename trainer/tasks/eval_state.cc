#include "trainer/tasks/eval_state.h"

#include "absl/strings/str_cat.h"
#include "common/config_reader.h"
#include "common/json_writer.h"
#include "common/status_macros.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/tasks/model_section.h"

namespace peco::trainer {

std::string EvalStateToJson(const EvalState& s) {
  JsonWriter w;
  AddRunState(s, &w);
  w.AddRaw("model", BeitConfigToJson(s.model))
      .Add("pooling", s.pooling)
      .Add("feature_norm", s.feature_norm)
      .Add("num_classes", s.num_classes)
      .Add("input_mean", s.input_mean)
      .Add("input_std", s.input_std)
      .Add("backbone", s.backbone.kind)
      .Add("backbone_source", s.backbone.path)
      .Add("backbone_sha256", s.backbone.sha256)
      .Add("backbone_step", s.backbone.step)
      .Add("eval_step", s.eval.step)
      .Add("eval_top1", s.eval.top1)
      .Add("eval_top5", s.eval.top5)
      .Add("eval_loss", s.eval.loss)
      .Add("eval_images", s.eval.images);
  if (s.kind == "linear_probe") {
    w.Add("readout_block", s.readout.block)
        .Add("readout_blocks", s.readout.blocks)
        .Add("readout_block_validation_top1", s.readout.block_validation_top1)
        .Add("readout_knn_top1", s.readout.knn_top1)
        .Add("readout_knn_top5", s.readout.knn_top5)
        .Add("readout_l2", s.readout.l2)
        .Add("readout_train_images", s.readout.train_images);
  }
  return w.str() + "\n";
}

absl::StatusOr<EvalState> EvalStateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  EvalState s;
  RETURN_IF_ERROR(ReadRunState(r, {"finetune", "linear_probe"}, source, &s));
  {
    ASSIGN_OR_RETURN(ConfigReader m, r.Child("model"));
    ASSIGN_OR_RETURN(s.model, BeitConfigFromReader(m));
  }
  RETURN_IF_ERROR(r.ReadEnum("pooling", {"cls", "mean", "cls+mean"}, &s.pooling));
  RETURN_IF_ERROR(r.ReadEnum("feature_norm", {"none", "batchnorm"}, &s.feature_norm));
  RETURN_IF_ERROR(r.Read("num_classes", &s.num_classes));
  RETURN_IF_ERROR(r.Read("input_mean", &s.input_mean));
  RETURN_IF_ERROR(r.Read("input_std", &s.input_std));
  RETURN_IF_ERROR(r.Read("backbone", &s.backbone.kind));
  RETURN_IF_ERROR(r.Read("backbone_source", &s.backbone.path));
  RETURN_IF_ERROR(r.Read("backbone_sha256", &s.backbone.sha256));
  RETURN_IF_ERROR(r.Read("backbone_step", &s.backbone.step));
  RETURN_IF_ERROR(r.Read("eval_step", &s.eval.step));
  RETURN_IF_ERROR(r.Read("eval_top1", &s.eval.top1));
  RETURN_IF_ERROR(r.Read("eval_top5", &s.eval.top5));
  RETURN_IF_ERROR(r.Read("eval_loss", &s.eval.loss));
  RETURN_IF_ERROR(r.Read("eval_images", &s.eval.images));
  if (s.kind == "linear_probe") {
    RETURN_IF_ERROR(r.Read("readout_block", &s.readout.block));
    RETURN_IF_ERROR(r.Read("readout_blocks", &s.readout.blocks));
    RETURN_IF_ERROR(r.Read("readout_block_validation_top1", &s.readout.block_validation_top1));
    RETURN_IF_ERROR(r.Read("readout_knn_top1", &s.readout.knn_top1));
    RETURN_IF_ERROR(r.Read("readout_knn_top5", &s.readout.knn_top5));
    RETURN_IF_ERROR(r.Read("readout_l2", &s.readout.l2));
    RETURN_IF_ERROR(r.Read("readout_train_images", &s.readout.train_images));
  }
  RETURN_IF_ERROR(r.Finish());
  return s;
}

absl::StatusOr<EvalState> ReadResumedEvalState(const RestoredCheckpoint& checkpoint,
                                               const EvalState& current) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(EvalState stored,
                   EvalStateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  if (stored.kind != current.kind) {
    return absl::InvalidArgumentError(absl::StrCat("--resume: ", dir, " holds a ", stored.kind,
                                                   " checkpoint, this job is ", current.kind));
  }
  if (stored.backbone.kind != current.backbone.kind ||
      stored.backbone.sha256 != current.backbone.sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backbone: this config's backbone (", current.backbone.kind, " ", current.backbone.path,
        ", sha256 ", current.backbone.sha256, ") is not the one checkpoint ", dir,
        " started from (", stored.backbone.kind, " ", stored.backbone.path, ", sha256 ",
        stored.backbone.sha256, "); resume with that backbone or start a new run"));
  }
  return stored;
}

bool SameClassifier(const BeitVitConfig& a, const BeitVitConfig& b) {
  for (const std::string& field : BeitArchitectureFields()) {
    if (BeitArchitectureValue(a, field) != BeitArchitectureValue(b, field)) return false;
  }
  return a.use_rel_pos_bias == b.use_rel_pos_bias && a.num_classes == b.num_classes &&
         a.use_mean_pooling == b.use_mean_pooling;
}

}  // namespace peco::trainer
