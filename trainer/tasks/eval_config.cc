#include "trainer/tasks/eval_config.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/tasks/model_section.h"

namespace peco::trainer {
namespace {

absl::Status ReadOptim(ConfigReader& r, EvalOptimConfig* o) {
  RETURN_IF_ERROR(r.Read("lr", &o->schedule.base_lr));
  RETURN_IF_ERROR(r.Read("min_lr", &o->schedule.min_lr));
  RETURN_IF_ERROR(r.ReadEnum("schedule", {"cosine", "constant"}, &o->schedule.kind));
  RETURN_IF_ERROR(r.Read("warmup_steps", &o->schedule.warmup_steps));
  RETURN_IF_ERROR(r.Read("betas", &o->betas));
  RETURN_IF_ERROR(r.Read("eps", &o->eps));
  RETURN_IF_ERROR(r.Read("weight_decay", &o->weight_decay));
  RETURN_IF_ERROR(r.Read("layer_decay", &o->layer_decay));
  RETURN_IF_ERROR(r.Read("label_smoothing", &o->label_smoothing));
  RETURN_IF_ERROR(r.Read("grad_clip", &o->grad_clip));
  return r.Finish();
}

absl::Status ReadReadout(ConfigReader& r, ReadoutConfig* o) {
  RETURN_IF_ERROR(r.Read("block", &o->block));
  RETURN_IF_ERROR(r.ReadEnum("pooling", {"cls", "mean", "cls+mean"}, &o->pooling));
  RETURN_IF_ERROR(r.Read("validation_images", &o->validation_images));
  int64_t seed = static_cast<int64_t>(o->validation_seed);
  RETURN_IF_ERROR(r.Read("validation_seed", &seed));
  if (seed < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("readout.validation_seed: expected a value >= 0, got ", seed));
  }
  o->validation_seed = static_cast<uint64_t>(seed);
  {
    ASSIGN_OR_RETURN(ConfigReader knn, r.Child("knn"));
    RETURN_IF_ERROR(knn.Read("k", &o->knn.k));
    RETURN_IF_ERROR(knn.Read("temperature", &o->knn.temperature));
    RETURN_IF_ERROR(knn.Finish());
  }
  RETURN_IF_ERROR(r.ReadEnum("feature_norm", {"none", "batchnorm"}, &o->feature_norm));
  {
    ASSIGN_OR_RETURN(ConfigReader linear, r.Child("linear"));
    RETURN_IF_ERROR(linear.Read("l2", &o->linear.l2));
    RETURN_IF_ERROR(linear.Read("max_iterations", &o->linear.max_iterations));
    RETURN_IF_ERROR(linear.Read("tolerance", &o->linear.tolerance));
    RETURN_IF_ERROR(linear.Finish());
  }
  o->linear.standardize = o->feature_norm == "batchnorm";
  o->linear.seed = o->validation_seed;
  if (o->block == "auto") {
    o->block_number = 0;
  } else if (!absl::SimpleAtoi(o->block, &o->block_number) || o->block_number < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "readout.block: expected auto or a block counted from 1, got '", o->block, "'"));
  }
  return r.Finish();
}

// `backbone: pixels | random`, or the mapping {checkpoint | weights} (neither: random).
absl::Status ReadBackbone(ConfigReader& root, EvalBackboneConfig* b) {
  if (root.HasScalar("backbone")) {
    return root.ReadEnum("backbone", {"pixels", "random"}, &b->named);
  }
  ASSIGN_OR_RETURN(ConfigReader r, root.Child("backbone"));
  RETURN_IF_ERROR(r.Read("checkpoint", &b->checkpoint));
  RETURN_IF_ERROR(r.Read("weights", &b->weights));
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
  d.loader.transform = EvaluationView(d.loader.transform, c.eval.crop_fraction);
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
    if (!IsDatasetPath(eval_data.source, eval_data.path)) {
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
  // The pixel backbone's view is data.image_size; it has no model.
  if (model_known && backbone.named != "pixels" && model.img_size != data.image_size) {
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
  if (backbone.named == "pixels" && !linear_probe()) {
    return absl::InvalidArgumentError(
        "backbone: pixels is a readout floor (kind linear_probe); a finetune job trains a ViT: "
        "use backbone: random for the from-scratch baseline");
  }
  if (!backbone.named.empty() && (!backbone.checkpoint.empty() || !backbone.weights.empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("backbone: ", backbone.named, " names no checkpoint or weights file"));
  }
  if (linear_probe()) {
    RETURN_IF_ERROR(ValidateReadout(model_known));
  } else {
    RETURN_IF_ERROR(ValidateOptim());
  }
  RETURN_IF_ERROR(ValidateTrainSection(train));
  if (threads < 0) return absl::InvalidArgumentError("threads: expected >= 0 (0 = all cores)");
  return absl::OkStatus();
}

absl::Status EvalJobConfig::ValidateReadout(bool model_known) const {
  const ReadoutConfig& r = readout;
  if (backbone.named == "pixels" && r.block_number != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "readout.block: the pixel backbone has no blocks (expected auto), got ", r.block));
  }
  if (model_known && r.block_number > model.depth) {
    return absl::InvalidArgumentError(absl::StrCat(
        "readout.block: expected auto or a value in [1, ", model.depth, "], got ", r.block));
  }
  if (r.validation_images < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "readout.validation_images: expected a value >= 1, got ", r.validation_images));
  }
  if (r.knn.k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("readout.knn.k: expected a value >= 1, got ", r.knn.k));
  }
  if (!(r.knn.temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("readout.knn.temperature: expected a value > 0, got ", r.knn.temperature));
  }
  absl::Status linear = r.linear.Validate();
  if (!linear.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("readout.", linear.message()));
  }
  if (eval.every != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval.every: a linear_probe job evaluates once, after its fits (expected 0), got ",
        eval.every));
  }
  if (train.max_steps != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_steps: a linear_probe job has one step (the feature pass and the "
                     "fits; expected 1), got ",
                     train.max_steps));
  }
  return absl::OkStatus();
}

absl::Status EvalJobConfig::ValidateOptim() const {
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
    config.train.output_dir = "runs/linear_probe";
    config.train.max_steps = 1;
    config.train.log_every = 1;
    config.train.checkpoint_every = 1;
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
    if (config.linear_probe()) {
      absl::Status rest = r.Finish();
      if (!rest.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            rest.message(),
            "; a linear_probe job reads its training images once, with the evaluation view "
            "(eval.crop_fraction, no augmentation), and caches their features"));
      }
    } else {
      RETURN_IF_ERROR(ReadTransformSection(r, &config.data.loader.transform));
    }
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("model"));
    RETURN_IF_ERROR(
        ReadBeitModelSection(r, &config.model_preset, &config.model, &config.model_fields));
  }
  RETURN_IF_ERROR(ReadBackbone(root, &config.backbone));
  if (root.Has("probe")) {
    return absl::InvalidArgumentError(
        "probe: the linear probe's section is `readout:` (block, pooling, feature_norm, knn, "
        "linear; configs/linear_probe_small.yaml)");
  }
  if (!config.linear_probe() && root.Has("readout")) {
    return absl::InvalidArgumentError("readout: only for kind linear_probe");
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("readout"));
    RETURN_IF_ERROR(ReadReadout(r, &config.readout));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("eval"));
    RETURN_IF_ERROR(ReadEval(r, &config.eval));
  }
  if (config.linear_probe() && root.Has("optim")) {
    return absl::InvalidArgumentError(
        "optim: a linear_probe job fits its linear readout by L-BFGS (readout.linear) and has no "
        "optimizer section");
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("optim"));
    RETURN_IF_ERROR(ReadOptim(r, &config.optim));
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
  // The backbone's input (Validate checks model.img_size agrees, except for pixels).
  t.output_sizes = {static_cast<int>(config->data.image_size)};
  t.to_rgb = true;
  t.mean = config->mean;
  t.std = config->std;
  config->eval_data = EvalDataFrom(*config);
  config->optim.schedule.total_steps = config->train.max_steps;
  config->optim.schedule.warmup_from_zero = true;  // BEiT's cosine_scheduler
}

std::vector<int64_t> EvalJobConfig::ReadoutBlocks() const {
  if (backbone.named == "pixels") return {};
  if (readout.block_number > 0) return {readout.block_number};
  std::vector<int64_t> blocks;
  for (int64_t b = 1; b <= model.depth; ++b) blocks.push_back(b);
  return blocks;
}

}  // namespace peco::trainer
