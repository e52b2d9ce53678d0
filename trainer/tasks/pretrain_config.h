// The pretrain job's configuration: BEiT-style masked image modeling whose targets are the codes
// of a frozen peco tokenizer (shared/research/peco_method.md §2, §7).
//
// YAML sections: kind (pretrain), seed, threads, data, transform, model, tokenizer, masking,
// optim, train (configs/pretrain_*.yaml document each field). Every field has a default; unknown
// fields, wrong types and values out of range are InvalidArgument errors naming the dotted field
// path, e.g. "masking.num_masking_patches: expected a value in [1, 64], got 100".
//
// `model.preset` picks a BeitVitConfig preset (beit_base_patch16_224_8k_vocab, beit_large_...,
// beit_small_fashion_mnist); explicit model fields then override the preset's.
//
// Departures from the paper's recipe are configuration: the ViT view's normalisation
// (`transform.vit_mean`/`vit_std`: Inception 0.5/0.5 by default, ImageNet for the paper config),
// the tokenizer view's size (`tokenizer.image_size`), masking, optimiser and precision.
//
// Value types; thread-compatible.
#ifndef PECO_TRAINER_TASKS_PRETRAIN_CONFIG_H_
#define PECO_TRAINER_TASKS_PRETRAIN_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/data/block_masking.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/lr_schedule.h"
#include "trainer/models/beit_config.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/data_config.h"

namespace peco::trainer {

struct PretrainTokenizerConfig {
  // A peco tokenizer checkpoint directory (holding MANIFEST) or a tokenizer run directory, whose
  // newest verified checkpoint is used. Required.
  std::string checkpoint;
  // Side of the tokenizer view; 0 = the size the tokenizer was trained at. The token grid is
  // image_size / the tokenizer's downsampling factor and must equal the ViT patch grid.
  int64_t image_size = 0;
};

struct PretrainOptimConfig {
  LrSchedule schedule;  // per-step linear warmup from 0, then cosine to min_lr
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.05;  // not applied to 1-D parameters, pos_embed or cls_token
  double grad_clip = 3.0;      // global norm; 0 = off
};

struct PretrainTrainConfig : TrainConfig {
  // Peak dense TFLOP/s of one device, for the MFU metric; 0 = MFU not reported.
  double peak_tflops = 0;
};

struct PretrainJobConfig {
  uint64_t seed = 0;
  int threads = 0;   // 0 = the cores available
  DataConfig data;   // data.loader.transform.output_sizes = {ViT view, tokenizer view}
  FaultPlan faults;  // reliability tests only; off unless set
  // Normalisation of the ViT view (the tokenizer view is always in [-1, 1]).
  std::vector<double> vit_mean = {0.5, 0.5, 0.5};
  std::vector<double> vit_std = {0.5, 0.5, 0.5};
  std::string model_preset = "beit_small_fashion_mnist";
  BeitVitConfig model;
  PretrainTokenizerConfig tokenizer;
  BlockMaskingOptions masking;
  PretrainOptimConfig optim;
  PretrainTrainConfig train;
  std::string source_text;  // the YAML as given, stored in checkpoints

  // Checks ranges and consistency (image size vs model, masking vs the patch grid); with
  // `check_paths`, also that the dataset directory and the tokenizer checkpoint exist.
  absl::Status Validate(bool check_paths = true) const;
};

// Parses and validates. `source` names the document in errors (usually the file path).
absl::StatusOr<PretrainJobConfig> ParsePretrainConfig(const std::string& yaml,
                                                      const std::string& source,
                                                      bool check_paths = true);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_PRETRAIN_CONFIG_H_
