// The contrastive job: MoCo v3 (shared/research/mocov3_and_readouts.md section 1) on the shared
// training loop, training the self-supervised ViT that PeCo's perceptual loss reads.
//
// Per step, on every rank: the loader yields two independently augmented views of each image
// (view 1 and view 2 of the config, each drawn from the sample's own generator, so views do not
// depend on threads, ranks or resumes); MocoV3::Loss computes the queries of both views, moves the
// momentum encoder towards the base encoder with the scheduled momentum, computes the keys,
// gathers every rank's keys and returns ctr(q1, k2) + ctr(q2, k1). With `moco.batch_norm: sync`
// the heads' BatchNorm normalises over the global batch, so N ranks x batch b train exactly as
// 1 rank x batch N b (tested). Gradients are averaged across ranks, optionally clipped, and AdamW
// steps with lr x global batch / 256 on a warm-up + half-cosine schedule.
//
// Monitor: the evaluation jobs' k-NN readout (k 20, T 0.07, cosine) of the base encoder's CLS
// feature, `eval.train_images` training images against the held-out split, at step 0 (the
// initialisation: the floor), every eval.every steps and at the end; one `eval` event each
// (eval_knn_top1/top5, eval_top1 = the k-NN top-1), the last one kept in the checkpoint.
//
// Checkpoints (`<train.output_dir>/checkpoints/step-N`, rank 0): model.pt (both encoders, the
// predictor and every BatchNorm statistic), optimizer.pt, config.yaml, trainer_state.json (step,
// loader position, world size, seed, config digest, the last monitor readout). Resume is
// step-exact (the momentum and lr schedules are functions of the step); a checkpoint of another
// architecture is refused naming the model field. `peco-train export` writes MoCo v3's release
// format (export/moco_export.h).
//
// Errors: InvalidArgument for bad configuration or a refused resume; DataLoss for damaged
// checkpoints; FailedPrecondition for a non-finite loss; Unavailable when a peer rank fails;
// Internal for LibTorch failures.
#ifndef PECO_TRAINER_TASKS_CONTRASTIVE_TASK_H_
#define PECO_TRAINER_TASKS_CONTRASTIVE_TASK_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/training_loop.h"
#include "trainer/models/moco_v3.h"
#include "trainer/tasks/contrastive_config.h"

namespace peco::trainer {

struct ContrastiveRunOptions {
  // A checkpoint directory or a run directory (its newest verified checkpoint). Empty: a fresh
  // run (refused if output_dir already holds checkpoints).
  std::string resume_from;
  ProgressSink* progress = nullptr;  // not owned; required
};

// Runs one rank of the job; the rank and world size come from the torchrun environment
// (engine/distributed.h).
absl::StatusOr<TrainingResult> RunContrastiveJob(const ContrastiveJobConfig& config,
                                                 const ContrastiveRunOptions& options);

struct LoadedContrastive {
  ContrastiveJobConfig config;
  MocoV3 model{nullptr};  // evaluation mode
  int64_t step = 0;
  std::string checkpoint_dir;
};

// Loads a verified contrastive checkpoint (a checkpoint directory, or a run directory's newest)
// on the CPU. InvalidArgument when it holds another kind; DataLoss when damaged.
absl::StatusOr<LoadedContrastive> LoadContrastiveCheckpoint(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_CONTRASTIVE_TASK_H_
