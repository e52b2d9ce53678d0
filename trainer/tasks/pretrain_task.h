// The pretrain job: BEiT-style masked image modeling whose targets are the codes of a frozen peco
// tokenizer (shared/research/peco_method.md §2, §7).
//
// Per step, on every rank: the loader yields one crop per image resized to the ViT view and the
// tokenizer view; a block mask is drawn per sample from a generator seeded by (seed, epoch,
// dataset index) only, so masks do not depend on threads, ranks or resumes; the frozen tokenizer
// (eval, no gradients, fp32) turns the tokenizer view into token ids; BeitMim predicts the ids at
// masked positions; the loss is the cross-entropy averaged over all masked tokens of the global
// batch (so N ranks x batch b train as 1 rank x batch N b). Gradients are averaged across ranks
// (GradientAllReducer), clipped to a global norm, and AdamW (BeitParamGroups: no decay for 1-D
// parameters, pos_embed, cls_token) steps with the per-step schedule. The CPU generator (drop path)
// is reseeded from (seed, step, rank) at every step, so a resumed run draws exactly what an
// uninterrupted one draws.
//
// Before training, the tokenizer's token grid must equal the ViT patch grid and its codebook
// size must equal model.vocab_size (InvalidArgument naming both sides). The SHA-256 of the
// tokenizer checkpoint's MANIFEST is pinned in every pretrain checkpoint; resuming with a
// different tokenizer is refused.
//
// Checkpoints (`<train.output_dir>/checkpoints/step-N`, written by rank 0): model.pt,
// optimizer.pt, config.yaml, trainer_state.json (step, loader position, world size, config and
// tokenizer digests). A stop request (SIGTERM on any rank) ends every rank after the same step,
// with a final checkpoint. Progress events go to the ProgressSink (NDJSON): start, step (loss,
// mlm_acc, lr, grad_norm, images_per_second, tflops, mfu when train.peak_tflops > 0),
// checkpoint, completed / stopped.
//
// Errors: InvalidArgument for bad configuration, a mismatched or refused tokenizer, or a refused
// resume; DataLoss for damaged checkpoints; FailedPrecondition for a non-finite loss;
// Unavailable when a peer rank fails; Internal for LibTorch failures.
#ifndef PECO_TRAINER_TASKS_PRETRAIN_TASK_H_
#define PECO_TRAINER_TASKS_PRETRAIN_TASK_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/training_loop.h"
#include "trainer/models/beit_vit.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/tokenizer_config.h"

namespace peco::trainer {

struct PretrainRunOptions {
  // A checkpoint directory or a run directory (its newest verified checkpoint). Empty: a fresh
  // run (refused if output_dir already holds checkpoints).
  std::string resume_from;
  ProgressSink* progress = nullptr;  // not owned; required
};

using PretrainRunResult = TrainingResult;  // last_checkpoint is empty on ranks other than 0

// Runs one rank of the job; the rank and world size come from the torchrun environment
// (engine/distributed.h).
absl::StatusOr<PretrainRunResult> RunPretrainJob(const PretrainJobConfig& config,
                                                 const PretrainRunOptions& options);

// Checks that `tokenizer` (the config of a tokenizer checkpoint) fits `config` and completes
// config->data.loader.transform.output_sizes with the tokenizer view. InvalidArgument naming
// both sides: "tokenizer.checkpoint: its 8x8 token grid (16 px / factor 2) differs from the
// ViT patch grid 4x4 (model.img_size 32 / model.patch_size 8)".
absl::Status ResolveTokenizerView(const TokenizerJobConfig& tokenizer, PretrainJobConfig* config);

// The identity of a tokenizer checkpoint directory: the SHA-256 of its MANIFEST (which lists
// the SHA-256 of every file).
absl::StatusOr<std::string> TokenizerDigest(const std::string& checkpoint_dir);

// Forward FLOPs of BeitMim for one image with `masked` masked patches (matrix products only).
double BeitMimForwardFlops(const BeitVitConfig& config, int64_t masked);

struct LoadedPretrain {
  PretrainJobConfig config;
  BeitMim model{nullptr};
  int64_t step = 0;
  std::string checkpoint_dir;
  std::string tokenizer_sha256;
};

// Loads a verified pretrain checkpoint (a checkpoint directory, or a run directory's newest) in
// eval mode on the CPU.
absl::StatusOr<LoadedPretrain> LoadPretrainCheckpoint(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_PRETRAIN_TASK_H_
