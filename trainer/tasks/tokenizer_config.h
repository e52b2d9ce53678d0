// The tokenizer job's configuration: YAML mapped onto typed options, validated before training.
//
// Every field has a default (the small preset's shape); unknown fields, wrong types and values
// out of range are InvalidArgument errors naming the dotted field path, e.g.
// "model.ch_mult: 3 levels downsample by 4, which does not divide the image size 30".
// configs/tokenizer_*.yaml document each field.
//
// Value types; thread-compatible.
#ifndef PECO_TRAINER_TASKS_TOKENIZER_CONFIG_H_
#define PECO_TRAINER_TASKS_TOKENIZER_CONFIG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config_reader.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/lr_schedule.h"
#include "trainer/losses/perceptual_loss.h"
#include "trainer/models/patch_discriminator.h"
#include "trainer/models/vq_tokenizer.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/data_config.h"
#include "trainer/tasks/tokenizer_eval.h"

namespace peco::trainer {

struct GanConfig {
  bool enabled = false;
  double disc_weight = 0.8;
  int64_t disc_start = 0;
  PatchDiscriminatorConfig discriminator;
};

struct TokenizerLossConfig {
  std::string pixel = "l1";  // l1 | l2
  double pixel_weight = 1.0;
  double codebook_weight = 1.0;
  double perceptual_weight = 1.0;  // 0 disables the perceptual network entirely
  // none: the perceptual term is weighted by perceptual_weight. initial: by perceptual_weight x
  // (pixel_weight x pixel term / perceptual term) measured on the first training batch (the global
  // batch's means), so the two terms start of one order whatever the network's feature scale; the
  // factor is kept in the checkpoint's trainer_state.json.
  std::string perceptual_balance = "none";
  PerceptualLossConfig perceptual;
  GanConfig gan;
};

struct OptimConfig {
  std::string optimizer = "adam";  // adam | adamw
  LrSchedule schedule;
  std::vector<double> betas = {0.5, 0.9};
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_clip = 0.0;  // 0 = off
};

struct TokenizerJobConfig {
  uint64_t seed = 0;
  int threads = 0;  // 0 = the cores available
  DataConfig data;
  FaultPlan faults;  // reliability tests only; off unless set
  VqTokenizerConfig model;
  TokenizerLossConfig loss;
  OptimConfig optim;
  TrainConfig train;
  TokenizerEvalConfig eval;  // held-out reconstruction, code usage and token agreement
  std::string source_text;   // the YAML as given, stored in checkpoints

  // The held-out data of `eval:`: data's source and size with eval.split (fashion_mnist) or
  // eval.path (image_folder).
  DataConfig EvalData() const;

  // Checks ranges and consistency; with `check_paths`, also that the dataset directory and the
  // perceptual weights exist, and that loss.perceptual.checkpoint is a verified pretrain
  // checkpoint deep enough for loss.perceptual.blocks (what a training run needs, not what
  // loading a checkpoint needs).
  absl::Status Validate(bool check_paths = true) const;
};

// Parses and validates. `source` names the document in errors (usually the file path).
absl::StatusOr<TokenizerJobConfig> ParseTokenizerConfig(const std::string& yaml,
                                                        const std::string& source,
                                                        bool check_paths = true);
absl::StatusOr<TokenizerJobConfig> LoadTokenizerConfig(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_TOKENIZER_CONFIG_H_
