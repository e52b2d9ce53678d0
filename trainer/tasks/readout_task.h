// The `linear_probe` job: readouts of a frozen backbone (shared/research/mocov3_and_readouts.md
// §2), run by the one training loop as a job of one step.
//
// The step: the backbone's features of the training images (data:, labels_per_class applied,
// seen through the evaluation view: eval.crop_fraction, no augmentation) and of the held-out
// split (its first eval.max_images when set) are computed once, rank-sharded and gathered
// (ExtractFeaturesOverRanks: every rank holds every image's features, as one rank would), and
// cached in `<train.output_dir>/features/{train,test}.pt` under a key of everything they depend
// on (backbone digest, model, blocks, pooling, view, data, seed), so a restarted attempt reuses
// them. Then, on the training features alone:
//   - block: auto picks, among every block's features, the one whose k-NN readout is best on a
//     validation split of readout.validation_images training images (readout.validation_seed);
//   - a linear readout (softmax regression) is fitted to convergence by L-BFGS, the L2 strength
//     chosen on the same validation split, then refitted on every training image
//     (readout.feature_norm batchnorm standardises each feature first; none does not).
// The evaluation scores both readouts on the held-out features: the weighted k-NN (k, T) against
// every training feature, and the linear readout.
//
// Backbones: a pretrain checkpoint or official BEiT weights (eval_backbone.h), `random` (seeded
// initialisation) and `pixels` (the evaluation view's values as the features, greyscale images
// one channel): the floors.
//
// Events: heartbeat (phase features:train / features:test per batch, fit:block, fit:linear every
// 20 objective evaluations: the worker's stall clock sees a long pass moving); start; step (loss =
// the linear readout's regularised training objective, feature_seconds, fit_seconds,
// features_cached 0/1); one eval event with every readout — eval_top1 / eval_top5 / eval_loss
// (linear), eval_linear_top1 / _top5, eval_knn_top1 / _top5, eval_block, eval_l2, eval_images, and
// validation_knn_top1_block_B for each candidate block —; checkpoint; completed (with the same
// eval_* fields).
//
// Checkpoint (rank 0): readout.pt (the fitted linear readout: mean, std, weight, bias;
// logits = ((x - mean) / std) W^T + b on the block's pooled features), config.yaml,
// trainer_state.json (EvalState with the ReadoutResult). Resuming a finished run reports its
// evaluation again and computes nothing; a run stopped before its checkpoint restarts from the
// feature cache.
//
// Errors: InvalidArgument for bad configuration (readout.validation_images or readout.knn.k not
// smaller than the training set, a refused backbone or resume); DataLoss for damaged
// checkpoints (a damaged feature cache is recomputed, and says so); FailedPrecondition for
// non-finite features; Unavailable when a peer rank fails; Internal for LibTorch failures.
#ifndef PECO_TRAINER_TASKS_READOUT_TASK_H_
#define PECO_TRAINER_TASKS_READOUT_TASK_H_

#include <string>

#include "absl/status/statusor.h"
#include "trainer/tasks/eval_config.h"
#include "trainer/tasks/eval_state.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/readouts.h"

namespace peco::trainer {

// Runs one rank of a linear_probe job (RunEvalJob calls it for that kind).
absl::StatusOr<EvalRunResult> RunReadoutJob(const EvalJobConfig& config,
                                            const EvalRunOptions& options);

struct LoadedReadout {
  std::string checkpoint_dir;
  EvalState state;        // kind linear_probe: provenance, model, eval and readout results
  LinearReadout readout;  // the fitted linear readout (CPU)
};

// Loads a verified linear_probe checkpoint (a checkpoint directory, or a run directory's
// newest). InvalidArgument when it holds another kind.
absl::StatusOr<LoadedReadout> LoadReadoutCheckpoint(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_READOUT_TASK_H_
