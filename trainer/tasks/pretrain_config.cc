#include "trainer/tasks/pretrain_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/tasks/model_section.h"

namespace peco::trainer {
namespace {

absl::Status ReadTokenizer(ConfigReader& r, PretrainTokenizerConfig* t) {
  RETURN_IF_ERROR(r.Read("checkpoint", &t->checkpoint));
  RETURN_IF_ERROR(r.Read("image_size", &t->image_size));
  return r.Finish();
}

absl::Status ReadMasking(ConfigReader& r, BlockMaskingOptions* m) {
  RETURN_IF_ERROR(r.Read("num_masking_patches", &m->num_masking_patches));
  RETURN_IF_ERROR(r.Read("min_num_patches", &m->min_num_patches));
  if (r.Has("max_num_patches")) {
    int value = 0;
    RETURN_IF_ERROR(r.Read("max_num_patches", &value));
    m->max_num_patches = value;
  }
  RETURN_IF_ERROR(r.Read("min_aspect", &m->min_aspect));
  if (r.Has("max_aspect")) {
    double value = 0;
    RETURN_IF_ERROR(r.Read("max_aspect", &value));
    m->max_aspect = value;
  }
  return r.Finish();
}

absl::Status ReadOptim(ConfigReader& r, PretrainOptimConfig* o) {
  RETURN_IF_ERROR(r.Read("lr", &o->schedule.base_lr));
  RETURN_IF_ERROR(r.Read("min_lr", &o->schedule.min_lr));
  RETURN_IF_ERROR(r.ReadEnum("schedule", {"cosine", "constant"}, &o->schedule.kind));
  RETURN_IF_ERROR(r.Read("warmup_steps", &o->schedule.warmup_steps));
  RETURN_IF_ERROR(r.Read("betas", &o->betas));
  RETURN_IF_ERROR(r.Read("eps", &o->eps));
  RETURN_IF_ERROR(r.Read("weight_decay", &o->weight_decay));
  RETURN_IF_ERROR(r.Read("grad_clip", &o->grad_clip));
  return r.Finish();
}

absl::Status ReadTrain(ConfigReader& r, PretrainTrainConfig* t) {
  RETURN_IF_ERROR(ReadTrainFields(r, t));
  RETURN_IF_ERROR(r.Read("peak_tflops", &t->peak_tflops));
  return r.Finish();
}

}  // namespace

absl::Status PretrainJobConfig::Validate(bool check_paths) const {
  RETURN_IF_ERROR(ValidateDataSection(data, check_paths));
  RETURN_IF_ERROR(ValidateNormalisation("transform.vit_mean", vit_mean, false));
  RETURN_IF_ERROR(ValidateNormalisation("transform.vit_std", vit_std, true));
  RETURN_IF_ERROR(model.Validate("model."));
  if (model.in_chans != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.in_chans: expected 3 (views are RGB), got ", model.in_chans));
  }
  if (model.img_size != data.image_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.img_size: ", model.img_size, " (ViT input) differs from data.image_size ",
        data.image_size, "; set both to the ViT view's size"));
  }
  if (tokenizer.checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "tokenizer.checkpoint: expected the directory of a peco tokenizer checkpoint or run");
  }
  if (check_paths && !std::filesystem::is_directory(tokenizer.checkpoint)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer.checkpoint: expected a tokenizer checkpoint or run directory, got '",
        tokenizer.checkpoint, "'"));
  }
  if (tokenizer.image_size < 0 || tokenizer.image_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer.image_size: expected 0 (the tokenizer's own) or a size in [1, 4096], got ",
        tokenizer.image_size));
  }
  BlockMaskingOptions grid_masking = masking;  // the grid is the model's patch grid
  grid_masking.height = grid_masking.width = static_cast<int>(model.grid());
  RETURN_IF_ERROR(grid_masking.Validate());
  RETURN_IF_ERROR(optim.schedule.Validate("optim."));
  if (optim.betas.size() != 2 || optim.betas[0] < 0 || optim.betas[0] >= 1 || optim.betas[1] < 0 ||
      optim.betas[1] >= 1) {
    return absl::InvalidArgumentError("optim.betas: expected two values in [0, 1)");
  }
  if (!(optim.eps > 0)) return absl::InvalidArgumentError("optim.eps: expected a value > 0");
  if (optim.weight_decay < 0)
    return absl::InvalidArgumentError("optim.weight_decay: expected >= 0");
  if (optim.grad_clip < 0)
    return absl::InvalidArgumentError("optim.grad_clip: expected >= 0 (0 = off)");
  RETURN_IF_ERROR(ValidateTrainSection(train));
  if (train.peak_tflops < 0) {
    return absl::InvalidArgumentError("train.peak_tflops: expected >= 0 (0 = no MFU)");
  }
  if (threads < 0) return absl::InvalidArgumentError("threads: expected >= 0 (0 = all cores)");
  return absl::OkStatus();
}

absl::StatusOr<PretrainJobConfig> ParsePretrainConfig(const std::string& yaml,
                                                      const std::string& source, bool check_paths) {
  ASSIGN_OR_RETURN(ConfigReader root, ConfigReader::FromString(yaml, source));
  PretrainJobConfig config;
  config.source_text = yaml;
  std::string kind = "pretrain";
  RETURN_IF_ERROR(root.ReadEnum("kind", {"pretrain"}, &kind));
  RETURN_IF_ERROR(ReadRunFields(root, &config.seed, &config.threads, &config.data, &config.faults));
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("transform"));
    RETURN_IF_ERROR(r.Read("vit_mean", &config.vit_mean));
    RETURN_IF_ERROR(r.Read("vit_std", &config.vit_std));
    RETURN_IF_ERROR(ReadTransformSection(r, &config.data.loader.transform));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("model"));
    RETURN_IF_ERROR(ReadBeitModelSection(r, &config.model_preset, &config.model));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("tokenizer"));
    RETURN_IF_ERROR(ReadTokenizer(r, &config.tokenizer));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("masking"));
    RETURN_IF_ERROR(ReadMasking(r, &config.masking));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("optim"));
    RETURN_IF_ERROR(ReadOptim(r, &config.optim));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("train"));
    RETURN_IF_ERROR(ReadTrain(r, &config.train));
  }
  // The `job:` section is for the service (docs/SERVICE.md), so one file runs both ways.
  RETURN_IF_ERROR(root.Child("job").status());
  RETURN_IF_ERROR(root.Finish());

  // Derived fields. The tokenizer view's size joins output_sizes once the tokenizer is known
  // (ResolveTokenizerView in pretrain_task.h).
  config.masking.height = static_cast<int>(config.model.grid());
  config.masking.width = static_cast<int>(config.model.grid());
  config.data.loader.seed = config.seed;
  config.data.loader.transform.output_sizes = {static_cast<int>(config.model.img_size)};
  config.data.loader.transform.to_rgb = true;
  config.data.loader.transform.mean = {0.5, 0.5, 0.5};  // the tokenizer view lives in [-1, 1]
  config.data.loader.transform.std = {0.5, 0.5, 0.5};
  config.optim.schedule.total_steps = config.train.max_steps;
  config.optim.schedule.warmup_from_zero = true;  // BEiT's start_warmup_value = 0
  RETURN_IF_ERROR(config.Validate(check_paths));
  return config;
}

}  // namespace peco::trainer
