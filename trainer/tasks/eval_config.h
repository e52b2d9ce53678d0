// The configuration of the evaluation job kinds, `finetune` and `linear_probe`: a BEiT backbone
// trained on labelled data and evaluated on a held-out split (shared/research/peco_method.md §3).
//
// YAML sections: kind (finetune | linear_probe), seed, threads, data (the training split),
// transform, model, backbone, probe (linear_probe only), eval, optim, train;
// configs/finetune_*.yaml and configs/linear_probe_*.yaml document each field. Unknown fields,
// wrong types and values out of range are InvalidArgument errors naming the dotted field, e.g.
// "probe.block: expected a value in [1, 6], got 9".
//
// The backbone: `backbone.checkpoint` (a peco pretrain checkpoint directory, or a pretrain run
// directory whose newest verified checkpoint is used) or `backbone.weights` (an official BEiT
// `{'model': state_dict}` file); at most one. Neither: a randomly initialised (seeded) backbone,
// the random-backbone baseline. With a checkpoint, the model's architecture is the checkpoint's
// (ResolveEvalBackbone in eval_backbone.h): architecture fields given in `model:` (a `preset:`
// counts as giving all of them) must agree with it.
//
// Defaults per kind follow the paper's recipe (§3.1 fine-tuning: AdamW (0.9, 0.999), weight decay
// 0.05, layer decay 0.65, label smoothing 0.1, no gradient clipping, cosine to min_lr 1e-6;
// §3.2 linear probe: AdamW, weight decay 1e-4, cosine, the average-pooled patch tokens of block
// round-down(3/4 depth) = 9 of ViT-B). Step counts (warmup, max_steps) are configuration.
//
// Value types; thread-compatible.
#ifndef PECO_TRAINER_TASKS_EVAL_CONFIG_H_
#define PECO_TRAINER_TASKS_EVAL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/lr_schedule.h"
#include "trainer/models/beit_config.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/data_config.h"

namespace peco::trainer {

struct EvalBackboneConfig {
  std::string checkpoint;  // a peco pretrain checkpoint or run directory
  std::string weights;     // an official BEiT {'model': state_dict} .pth file
};

struct EvalSplitConfig {
  // fashion_mnist: the split (train | test); image_folder: the held-out folder (`path`);
  // synthetic: a second synthetic set of data.synthetic_size images drawn with another seed.
  std::string split = "test";
  std::string path;
  int64_t every = 0;         // evaluate every this many steps; 0 = only at the end
  int64_t batch_size = 256;  // per rank
  int64_t max_images = 0;    // 0 = the whole split; else its first max_images images
  // The evaluation crop: a centred square of this fraction of the shorter side, resized to
  // model.img_size (BEiT: 224/256 = 0.875 on ImageNet).
  double crop_fraction = 1.0;
};

struct EvalOptimConfig {
  LrSchedule schedule;  // per-step linear warmup from 0, then cosine to min_lr
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.05;    // finetune 0.05, linear_probe 1e-4; never on 1-D parameters
  double layer_decay = 0.65;     // finetune only: lr scale decay^(depth + 1 - layer id)
  double label_smoothing = 0.1;  // finetune 0.1, linear_probe 0
  double grad_clip = 0;          // global norm; 0 = off
};

struct EvalJobConfig {
  std::string kind = "finetune";  // finetune | linear_probe
  uint64_t seed = 0;
  int threads = 0;       // 0 = the cores available
  DataConfig data;       // the training split
  FaultPlan faults;      // reliability tests only; off unless set
  DataConfig eval_data;  // derived: the held-out split, centre crop, no flip, in order
  EvalSplitConfig eval;
  // Normalisation of the model input (value / 255 - mean) / std; default 0.5 / 0.5 as the
  // pretrain job's, or the backbone checkpoint's transform.vit_mean / vit_std.
  std::vector<double> mean = {0.5, 0.5, 0.5};
  std::vector<double> std = {0.5, 0.5, 0.5};
  bool normalisation_given = false;  // transform.mean or transform.std written
  std::string model_preset = "beit_small_fashion_mnist";
  BeitVitConfig model;  // the backbone's pre-training form; the classifier is FinetuneConfigFrom
  std::vector<std::string> model_fields;  // the keys `model:` gave
  bool backbone_resolved = false;         // set by ResolveEvalBackbone
  EvalBackboneConfig backbone;
  int64_t probe_block = 0;  // linear_probe: block counted from 1; 0 in YAML = depth * 3 / 4
  // linear_probe: "none" feeds the pooled tokens to the head as they are (BEiT's protocol);
  // "batchnorm" standardises each feature first with a BatchNorm without affine parameters
  // (MAE's probe; still a linear classifier of the features).
  std::string probe_feature_norm = "none";
  EvalOptimConfig optim;
  TrainConfig train;
  std::string source_text;  // the YAML as given, stored in checkpoints

  bool linear_probe() const { return kind == "linear_probe"; }
  // The probed block: probe_block, or depth * 3 / 4 (at least 1) when it is 0.
  int64_t ProbeBlock() const;

  // Checks ranges and consistency; with `check_paths`, also that the dataset directories and the
  // backbone path exist.
  absl::Status Validate(bool check_paths = true) const;
};

// Parses and validates. `source` names the document in errors (usually the file path).
absl::StatusOr<EvalJobConfig> ParseEvalConfig(const std::string& yaml, const std::string& source,
                                              bool check_paths = true);

// Recomputes the derived fields (loader seed, transform sizes and normalisation, eval_data,
// schedule length) from the others; ParseEvalConfig and ResolveEvalBackbone call it.
void FinishEvalConfig(EvalJobConfig* config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_CONFIG_H_
