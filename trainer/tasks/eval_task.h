// The evaluation jobs' entry point, and the `finetune` job: the whole BEiT classifier trained on
// labelled data and evaluated on a held-out split (shared/research/peco_method.md §3.1).
// `linear_probe` jobs (frozen-backbone readouts) run in readout_task.h.
//
// Model: BeitClassifier of FinetuneConfigFrom(config.model, classes of the training set) —
// per-block relative position tables, mean pooling + fc_norm, head scaled by init_scale —
// initialised (seeded by `seed`) and then loaded from the backbone (eval_backbone.h); a random
// backbone is the from-scratch baseline and the start event and log say so (and warn when
// optim.layer_decay < 1 would slow its early blocks down).
//
// Per step, on every rank: cross-entropy with label smoothing (the mean over the batch, and every
// rank's batch has the same size, so gradients averaged by GradientAllReducer are the global
// batch's), optional gradient clipping, AdamW with BeitParamGroups and layer decay
// (FinetuneParamGroups). The drop-path generator is reseeded from (seed, step, rank) every step,
// so resume is step-exact.
//
// Evaluation (every `eval.every` steps and at the end): the held-out split (its first
// eval.max_images images when set) in order, centre crop, no augmentation, model in eval mode;
// each rank evaluates a contiguous shard of floor(N / world) images, rank 0 also the remainder,
// and the counts are summed across ranks, so every image counts once. Reported top-1 and top-5
// are percentages (top-5 is top-min(5, classes)), eval_loss is the plain cross-entropy (no
// smoothing).
//
// Checkpoints (`<train.output_dir>/checkpoints/step-N`, rank 0): model.pt (the classifier),
// optimizer.pt, config.yaml, trainer_state.json (kind, step, loader position, world size, config
// digest, the resolved model, the backbone's provenance — source kind, path, SHA-256 of a
// checkpoint's MANIFEST or of the weights file — and the last evaluation). Resuming is refused
// when the backbone's digest, the architecture, the classes or the world size differ. SIGTERM
// ends every rank after the same step with a final checkpoint (no final evaluation).
//
// Progress events: start, step (loss, train_top1 %, lr — the head's, before layer-decay scales —,
// grad_norm, images_per_second, step_seconds, data_wait_seconds), eval (step, eval_top1,
// eval_top5, eval_loss, eval_images), checkpoint, completed (with the final eval_*) / stopped.
//
// Errors: InvalidArgument for bad configuration or a refused backbone or resume; DataLoss for
// damaged checkpoints; FailedPrecondition for a non-finite loss; Unavailable when a peer rank
// fails; Internal for LibTorch failures.
#ifndef PECO_TRAINER_TASKS_EVAL_TASK_H_
#define PECO_TRAINER_TASKS_EVAL_TASK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/training_loop.h"
#include "trainer/models/beit_optim.h"
#include "trainer/models/beit_vit.h"
#include "trainer/tasks/eval_config.h"
#include "trainer/tasks/eval_state.h"

namespace peco::trainer {

struct EvalRunOptions {
  // A checkpoint directory or a run directory (its newest verified checkpoint). Empty: a fresh
  // run (refused if output_dir already holds checkpoints).
  std::string resume_from;
  ProgressSink* progress = nullptr;  // not owned; required
};

struct EvalRunResult : TrainingResult {
  EvalResult eval;        // the last evaluation (linear_probe: the linear readout's)
  ReadoutResult readout;  // linear_probe
};

// Runs one rank of a finetune or linear_probe job (RunReadoutJob); the rank and world size come
// from the torchrun environment (engine/distributed.h).
absl::StatusOr<EvalRunResult> RunEvalJob(const EvalJobConfig& config,
                                         const EvalRunOptions& options);

// The AdamW groups of the finetune job: BeitParamGroups of `model` with optim.weight_decay and
// optim.layer_decay (lr scale layer_decay^(depth + 1 - layer id)).
std::vector<BeitParamGroup> FinetuneParamGroups(const BeitClassifier& model,
                                                const EvalJobConfig& config);

struct LoadedEval {
  std::string kind;  // finetune
  int64_t step = 0;
  std::string checkpoint_dir;
  BeitVitConfig model_config;     // the classifier's (FinetuneConfigFrom form)
  BeitClassifier model{nullptr};  // eval mode, CPU
  int64_t num_classes = 0;
  std::vector<double> input_mean, input_std;  // the input normalisation it was trained with
  std::string backbone, backbone_source, backbone_sha256;  // provenance
  EvalResult eval;
};

// Loads a verified finetune checkpoint (a checkpoint directory, or a run directory's newest) on
// the CPU. InvalidArgument when it holds another kind.
absl::StatusOr<LoadedEval> LoadEvalCheckpoint(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_TASK_H_
