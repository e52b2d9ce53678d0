// The contrastive job's configuration: MoCo v3 (shared/research/mocov3_and_readouts.md section 1),
// which trains the self-supervised ViT that PeCo's perceptual loss reads.
//
// YAML sections: kind (contrastive), seed, threads, data, transform (with `view1:` / `view2:`
// overrides), model, moco, optim, eval, train; configs/contrastive_*.yaml document each field.
// Every field has a default; unknown fields, wrong types and values out of range are
// InvalidArgument errors naming the dotted field, e.g. "moco.temperature: expected > 0, got 0".
//
// Defaults are MoCo v3's ViT recipe: T 0.2, momentum 0.99 rising to 1 on a half cosine, AdamW
// (0.9, 0.999) with weight decay 0.1, lr 1.5e-4 x global batch / 256, linear warm-up then a
// half cosine to 0, the frozen random patch projection, projector 3 layers and predictor 2 layers
// of hidden width 4096 and output 256, BatchNorm synchronised over the ranks, and BYOL's two
// asymmetric views (crop 0.08-1, colour jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale p 0.2, blur
// p 1.0 / 0.1, solarize p 0 / 0.2, flips). Step counts, the model and the views are configuration.
//
// Value types; thread-compatible.
#ifndef PECO_TRAINER_TASKS_CONTRASTIVE_CONFIG_H_
#define PECO_TRAINER_TASKS_CONTRASTIVE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/lr_schedule.h"
#include "trainer/models/moco_v3.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/data_config.h"
#include "trainer/tasks/readouts.h"

namespace peco::trainer {

struct MocoConfig {
  double temperature = 0.2;
  double momentum = 0.99;  // at step 0
  // cosine: m(t) = 1 - (1 - momentum) (1 + cos(pi t / max_steps)) / 2 (MoCo v3's, per step);
  // constant: momentum throughout.
  std::string momentum_schedule = "cosine";
  // sync: the heads' BatchNorm statistics over the global batch (MoCo v3 converts the model to
  // SyncBatchNorm); per_rank: each rank's own batch (MoCo v3's builder.py without the conversion).
  std::string batch_norm = "sync";

  // The momentum at optimizer step `step` of `total_steps`.
  double MomentumAt(int64_t step, int64_t total_steps) const;
};

struct ContrastiveOptimConfig {
  LrSchedule schedule;  // linear warm-up then half cosine to min_lr; base_lr as scaled below
  double lr = 1.5e-4;   // as written
  // lr x global batch / 256 (MoCo v3's `--lr` is this base); false: lr as written.
  bool scale_lr_by_batch = true;
  std::vector<double> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0.1;  // every trained parameter, as MoCo v3's AdamW(model.parameters())
  double grad_clip = 0;       // global norm; 0 = off
};

// The k-NN monitor (the evaluation jobs' readout): the base encoder's CLS feature after the final
// norm, for `train_images` training images and the held-out split, through the evaluation view.
struct ContrastiveEvalConfig {
  // fashion_mnist: the split (train | test); image_folder: the held-out folder (`path`);
  // synthetic: a second synthetic set drawn with another seed.
  std::string split = "test";
  std::string path;
  int64_t every = 0;             // also every this many steps; 0 = only at the start and the end
  bool at_start = true;          // the initialisation's k-NN, the floor the run is read against
  int64_t train_images = 10000;  // the first this many training images (0 = all)
  int64_t max_images = 0;        // held-out images (0 = the whole split)
  int64_t batch_size = 256;      // per rank
  double crop_fraction = 1.0;    // the centred crop of the resized image (ImageNet: 0.875)
  KnnOptions knn;                // k 20, T 0.07
  bool enabled = true;           // eval: {enabled: false} turns the monitor off
};

struct ContrastiveTrainConfig : TrainConfig {
  double peak_tflops = 0;  // one device's peak dense TFLOP/s, for MFU; 0 = not reported
};

struct ContrastiveJobConfig {
  uint64_t seed = 0;
  int threads = 0;   // 0 = the cores available
  DataConfig data;   // data.loader.transform = view 1, independent_views = {view 2}
  FaultPlan faults;  // reliability tests only; off unless set
  std::string model_preset = "vit_small_fashion_mnist";
  MocoV3Config model;
  MocoConfig moco;
  ContrastiveOptimConfig optim;
  ContrastiveEvalConfig eval;
  DataConfig eval_data;  // derived: the held-out split through the evaluation view
  ContrastiveTrainConfig train;
  std::string source_text;  // the YAML as given, stored in checkpoints

  const TransformOptions& view1() const { return data.loader.transform; }
  const TransformOptions& view2() const { return data.loader.independent_views[0]; }

  // Checks ranges and consistency; with `check_paths`, also that the data directories exist.
  absl::Status Validate(bool check_paths = true) const;
};

// The model presets: vit_small_fashion_mnist (32 px, patch 4, 128 wide, 4 blocks), vit_small and
// vit_base (MoCo v3's ViT-S/16 and ViT-B/16 at 224 px).
absl::StatusOr<MocoV3Config> MocoV3Preset(const std::string& name);

// Parses and validates. `source` names the document in errors (usually the file path).
absl::StatusOr<ContrastiveJobConfig> ParseContrastiveConfig(const std::string& yaml,
                                                            const std::string& source,
                                                            bool check_paths = true);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_CONTRASTIVE_CONFIG_H_
