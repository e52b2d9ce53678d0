// The configuration of the evaluation job kinds (shared/research/peco_method.md §3,
// shared/research/mocov3_and_readouts.md §2):
//   finetune      the whole BEiT classifier trained on labelled data by AdamW with layer decay,
//                 evaluated on a held-out split;
//   linear_probe  the readouts of a frozen backbone: its features computed once for the
//                 training and held-out images and cached, then a linear classifier fitted to
//                 convergence (L-BFGS, L2 chosen on validation) and a weighted k-NN (k 20, T 0.07).
//
// YAML sections: kind, seed, threads, data (the training split; data.labels_per_class for a
// class-balanced label subset), transform, model, backbone, readout (linear_probe only), eval,
// optim (finetune only), train; configs/finetune_*.yaml and configs/linear_probe_*.yaml document
// each field. Unknown fields, wrong types and values out of range are InvalidArgument errors
// naming the dotted field, e.g. "readout.block: expected auto or a value in [1, 6], got 9".
//
// The backbone: `backbone: {checkpoint: DIR}` (a peco pretrain checkpoint directory, or a pretrain
// run directory whose newest verified checkpoint is used), `backbone: {weights: FILE}` (an
// official BEiT `{'model': state_dict}` file), or one of the floors every report carries:
// `backbone: random` (a seeded random initialisation; also `backbone: {}`) and, for linear_probe
// only, `backbone: pixels` (the image itself as the feature vector). With a checkpoint, the
// model's architecture is the checkpoint's (ResolveEvalBackbone in eval_backbone.h): architecture
// fields given in `model:` (a `preset:` counts as giving all of them) must agree with it.
//
// finetune defaults follow the paper's recipe (§3.1: AdamW (0.9, 0.999), weight decay 0.05, layer
// decay 0.65, label smoothing 0.1, no gradient clipping, cosine to min_lr 1e-6); step counts are
// configuration. linear_probe has one step (the feature pass and the fits; train.max_steps is 1),
// no optimizer section, and reads its training images with the evaluation view (no
// augmentation: the features are computed once).
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
#include "trainer/tasks/readouts.h"

namespace peco::trainer {

struct EvalBackboneConfig {
  std::string checkpoint;  // a peco pretrain checkpoint or run directory
  std::string weights;     // an official BEiT {'model': state_dict} .pth file
  // `backbone: pixels` or `backbone: random` (the floors); "" for the mapping form.
  std::string named;
};

// linear_probe: what is read out of the frozen backbone, and how.
struct ReadoutConfig {
  // "auto": every block's features are computed and the block whose k-NN readout is best on the
  // validation split is read out (each block's validation top-1 is reported); or a block
  // counted from 1. The pixel backbone has no blocks (auto only).
  std::string block = "auto";
  int64_t block_number = 0;      // derived: the block, 0 for auto
  std::string pooling = "mean";  // cls | mean (of the patch tokens) | cls+mean (concatenated)
  // Training images held out (drawn with validation_seed, never the test split) to choose the
  // block and the linear readout's L2 strength.
  int64_t validation_images = 5000;
  uint64_t validation_seed = 0;
  KnnOptions knn;  // k 20, T 0.07
  // none: the features as they are (BEiT's probe); batchnorm: standardised per feature with the
  // training features' statistics (MAE's BatchNorm without affine parameters).
  std::string feature_norm = "batchnorm";
  LinearReadoutOptions linear;  // l2 candidates, max_iterations, tolerance
};

struct EvalSplitConfig {
  // (eval.every applies to finetune; linear_probe evaluates once, after its fits.)
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
  ReadoutConfig readout;  // linear_probe
  EvalOptimConfig optim;  // finetune
  TrainConfig train;
  std::string source_text;  // the YAML as given, stored in checkpoints

  bool linear_probe() const { return kind == "linear_probe"; }
  // The blocks whose features a linear_probe computes: {readout.block_number}, or every block
  // for auto; empty for the pixel backbone.
  std::vector<int64_t> ReadoutBlocks() const;

  // Checks ranges and consistency; with `check_paths`, also that the dataset directories and the
  // backbone path exist.
  absl::Status Validate(bool check_paths = true) const;

 private:
  absl::Status ValidateReadout(bool model_known) const;
  absl::Status ValidateOptim() const;
};

// Parses and validates. `source` names the document in errors (usually the file path).
absl::StatusOr<EvalJobConfig> ParseEvalConfig(const std::string& yaml, const std::string& source,
                                              bool check_paths = true);

// Recomputes the derived fields (loader seed, transform sizes and normalisation, eval_data,
// schedule length) from the others; ParseEvalConfig and ResolveEvalBackbone call it.
void FinishEvalConfig(EvalJobConfig* config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_CONFIG_H_
