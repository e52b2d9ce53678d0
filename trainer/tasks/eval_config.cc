#include "trainer/tasks/eval_config.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/tasks/model_section.h"

namespace peco::trainer {
namespace {

bool IsFinetune(const std::string& kind) { return kind == "finetune"; }

absl::Status ReadOptim(ConfigReader& r, const std::string& kind, EvalOptimConfig* o) {
  RETURN_IF_ERROR(r.Read("lr", &o->schedule.base_lr));
  RETURN_IF_ERROR(r.Read("min_lr", &o->schedule.min_lr));
  RETURN_IF_ERROR(r.ReadEnum("schedule", {"cosine", "constant"}, &o->schedule.kind));
  RETURN_IF_ERROR(r.Read("warmup_steps", &o->schedule.warmup_steps));
  RETURN_IF_ERROR(r.Read("betas", &o->betas));
  RETURN_IF_ERROR(r.Read("eps", &o->eps));
  RETURN_IF_ERROR(r.Read("weight_decay", &o->weight_decay));
  if (!IsFinetune(kind) && r.Has("layer_decay")) {
    return absl::InvalidArgumentError(
        "optim.layer_decay: only for kind finetune (the linear probe trains the head alone)");
  }
  RETURN_IF_ERROR(r.Read("layer_decay", &o->layer_decay));
  RETURN_IF_ERROR(r.Read("label_smoothing", &o->label_smoothing));
  RETURN_IF_ERROR(r.Read("grad_clip", &o->grad_clip));
  return r.Finish();
}

absl::Status ReadEval(ConfigReader& r, EvalSplitConfig* e) {
  RETURN_IF_ERROR(r.ReadEnum("split", {"train", "test"}, &e->split));
  RETURN_IF_ERROR(r.Read("path", &e->path));
  RETURN_IF_ERROR(r.Read("every", &e->every));
  RETURN_IF_ERROR(r.Read("batch_size", &e->batch_size));
  RETURN_IF_ERROR(r.Read("max_images", &e->max_images));
  RETURN_IF_ERROR(r.Read("crop_fraction", &e->crop_fraction));
  return r.Finish();
}

// The held-out split's data config: the training data's source and sizes, evaluated in order
// with a centre crop and no augmentation.
DataConfig EvalDataFrom(const EvalJobConfig& c) {
  DataConfig d = c.data;
  d.labels_per_class = 0;  // the whole held-out split
  d.split = c.eval.split;
  if (!c.eval.path.empty()) d.path = c.eval.path;
  d.loader.batch_size = c.eval.batch_size;
  d.loader.shuffle = false;
  d.loader.drop_last = false;
  TransformOptions& t = d.loader.transform;
  t.random_crop = false;
  t.center_crop_fraction = c.eval.crop_fraction;
  t.horizontal_flip = false;
  t.brightness = t.contrast = t.saturation = 0;
  return d;
}

}  // namespace

absl::Status EvalJobConfig::Validate(bool check_paths) const {
  RETURN_IF_ERROR(ValidateDataSection(data, check_paths));
  if (data.source == "image_folder" && eval.path.empty()) {
    return absl::InvalidArgumentError(
        "eval.path: expected the held-out image folder (data.source is image_folder)");
  }
  if (check_paths && data.source != "synthetic") {
    std::error_code ec;
    if (!std::filesystem::is_directory(eval_data.path, ec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("eval.path: expected a readable directory for the held-out ", data.source,
                       " split, got '", eval_data.path, "'"));
    }
  }
  if (eval.every < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval.every: expected steps >= 0 (0 = only at the end), got ", eval.every));
  }
  if (eval.batch_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval.batch_size: expected a value > 0, got ", eval.batch_size));
  }
  if (eval.max_images < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval.max_images: expected >= 0 (0 = all), got ", eval.max_images));
  }
  if (!(eval.crop_fraction > 0 && eval.crop_fraction <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval.crop_fraction: expected a value in (0, 1], got ", eval.crop_fraction));
  }
  RETURN_IF_ERROR(ValidateNormalisation("transform.mean", mean, false));
  RETURN_IF_ERROR(ValidateNormalisation("transform.std", std, true));
  RETURN_IF_ERROR(model.Validate("model."));
  if (model.in_chans != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.in_chans: expected 3 (inputs are RGB), got ", model.in_chans));
  }
  // With a backbone checkpoint the architecture is only known once it is read
  // (ResolveEvalBackbone), which validates again.
  const bool model_known =
      backbone.checkpoint.empty() || backbone_resolved ||
      std::find(model_fields.begin(), model_fields.end(), "preset") != model_fields.end();
  if (model_known && model.img_size != data.image_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.img_size: ", model.img_size, " (the backbone's input) differs from data.image_size ",
        data.image_size, "; set both to the size the backbone was trained at"));
  }
  if (!backbone.checkpoint.empty() && !backbone.weights.empty()) {
    return absl::InvalidArgumentError(
        "backbone: give at most one of checkpoint (a peco pretrain checkpoint) and weights (an "
        "official BEiT file); neither = a random backbone");
  }
  if (check_paths) {
    std::error_code ec;
    if (!backbone.checkpoint.empty() && !std::filesystem::is_directory(backbone.checkpoint, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backbone.checkpoint: expected a pretrain checkpoint or run directory, got '",
          backbone.checkpoint, "'"));
    }
    if (!backbone.weights.empty() && !std::filesystem::is_regular_file(backbone.weights, ec)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backbone.weights: expected an official BEiT .pth file, got '", backbone.weights, "'"));
    }
  }
  if (linear_probe()) {
    if (probe_block < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "probe.block: expected a block counted from 1 (0 = depth * 3 / 4), got ", probe_block));
    }
    if (model_known && probe_block > model.depth) {
      return absl::InvalidArgumentError(absl::StrCat("probe.block: expected a value in [1, ",
                                                     model.depth, "], got ", probe_block));
    }
  }
  RETURN_IF_ERROR(optim.schedule.Validate("optim."));
  if (optim.betas.size() != 2 || optim.betas[0] < 0 || optim.betas[0] >= 1 || optim.betas[1] < 0 ||
      optim.betas[1] >= 1) {
    return absl::InvalidArgumentError("optim.betas: expected two values in [0, 1)");
  }
  if (!(optim.eps > 0)) return absl::InvalidArgumentError("optim.eps: expected a value > 0");
  if (optim.weight_decay < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("optim.weight_decay: expected >= 0, got ", optim.weight_decay));
  }
  if (!(optim.layer_decay > 0 && optim.layer_decay <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optim.layer_decay: expected a value in (0, 1] (1 = off), got ", optim.layer_decay));
  }
  if (!(optim.label_smoothing >= 0 && optim.label_smoothing < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "optim.label_smoothing: expected a value in [0, 1), got ", optim.label_smoothing));
  }
  if (optim.grad_clip < 0) {
    return absl::InvalidArgumentError("optim.grad_clip: expected >= 0 (0 = off)");
  }
  RETURN_IF_ERROR(ValidateTrainSection(train));
  if (threads < 0) return absl::InvalidArgumentError("threads: expected >= 0 (0 = all cores)");
  return absl::OkStatus();
}

absl::StatusOr<EvalJobConfig> ParseEvalConfig(const std::string& yaml, const std::string& source,
                                              bool check_paths) {
  ASSIGN_OR_RETURN(ConfigReader root, ConfigReader::FromString(yaml, source));
  EvalJobConfig config;
  config.source_text = yaml;
  if (!root.Has("kind")) {
    return absl::InvalidArgumentError("kind: expected finetune or linear_probe");
  }
  RETURN_IF_ERROR(root.ReadEnum("kind", {"finetune", "linear_probe"}, &config.kind));
  // The recipe's defaults per kind (shared/research/peco_method.md §3.1, §3.2).
  config.optim.schedule.base_lr = 4e-3;
  if (config.linear_probe()) {
    config.optim.schedule.min_lr = 0;
    config.optim.weight_decay = 1e-4;
    config.optim.label_smoothing = 0;
    config.optim.layer_decay = 1.0;
    config.train.output_dir = "runs/linear_probe";
  } else {
    config.optim.schedule.min_lr = 1e-6;
    config.train.output_dir = "runs/finetune";
  }
  RETURN_IF_ERROR(ReadRunFields(root, &config.seed, &config.threads, &config.data, &config.faults));
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("transform"));
    config.normalisation_given = r.Has("mean") || r.Has("std");
    RETURN_IF_ERROR(r.Read("mean", &config.mean));
    RETURN_IF_ERROR(r.Read("std", &config.std));
    RETURN_IF_ERROR(ReadTransformSection(r, &config.data.loader.transform));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("model"));
    RETURN_IF_ERROR(
        ReadBeitModelSection(r, &config.model_preset, &config.model, &config.model_fields));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("backbone"));
    RETURN_IF_ERROR(r.Read("checkpoint", &config.backbone.checkpoint));
    RETURN_IF_ERROR(r.Read("weights", &config.backbone.weights));
    RETURN_IF_ERROR(r.Finish());
  }
  if (!config.linear_probe() && root.Has("probe")) {
    return absl::InvalidArgumentError("probe: only for kind linear_probe");
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("probe"));
    RETURN_IF_ERROR(r.Read("block", &config.probe_block));
    RETURN_IF_ERROR(r.ReadEnum("feature_norm", {"none", "batchnorm"}, &config.probe_feature_norm));
    RETURN_IF_ERROR(r.Finish());
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("eval"));
    RETURN_IF_ERROR(ReadEval(r, &config.eval));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("optim"));
    RETURN_IF_ERROR(ReadOptim(r, config.kind, &config.optim));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("train"));
    RETURN_IF_ERROR(ReadTrainFields(r, &config.train));
    RETURN_IF_ERROR(r.Finish());
  }
  RETURN_IF_ERROR(root.Child("job").status());  // the service's section (docs/SERVICE.md)
  RETURN_IF_ERROR(root.Finish());
  FinishEvalConfig(&config);
  RETURN_IF_ERROR(config.Validate(check_paths));
  return config;
}

void FinishEvalConfig(EvalJobConfig* config) {
  config->data.loader.seed = config->seed;
  TransformOptions& t = config->data.loader.transform;
  t.output_sizes = {static_cast<int>(config->model.img_size)};
  t.to_rgb = true;
  t.mean = config->mean;
  t.std = config->std;
  config->eval_data = EvalDataFrom(*config);
  config->optim.schedule.total_steps = config->train.max_steps;
  config->optim.schedule.warmup_from_zero = true;  // BEiT's cosine_scheduler
}

int64_t EvalJobConfig::ProbeBlock() const {
  return probe_block > 0 ? probe_block : std::max<int64_t>(1, model.depth * 3 / 4);
}

}  // namespace peco::trainer
