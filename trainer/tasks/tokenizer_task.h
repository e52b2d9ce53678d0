// The tokenizer job: trains a PeCo perceptual VQ tokenizer (VQGAN encoder/decoder, vector
// quantizer, pixel + perceptual + codebook losses, optional hinge GAN).
//
// Checkpoints go to `<train.output_dir>/checkpoints/step-N` (DESIGN.md section 5) with the full
// state needed for a step-exact resume: weights, optimizer moments, discriminator, data-loader
// position, RNG state, the config. Progress events go to the ProgressSink (stdout NDJSON).
// A stop request (SIGTERM on any rank) ends every rank after the same step with a final
// checkpoint. Data parallel over the ranks of the torchrun environment (engine/distributed.h):
// N ranks x batch b train one model as 1 rank x batch N b would (tokenizer_task.cc says how);
// rank 0 alone writes checkpoints and previews; the held-out evaluation is split over the ranks.
//
// Errors: InvalidArgument for bad configuration or a refused resume (names the field or file),
// DataLoss for damaged checkpoints with no intact fallback, FailedPrecondition for a
// non-finite loss (not retried by the service), Internal for LibTorch failures.
#ifndef PECO_TRAINER_TASKS_TOKENIZER_TASK_H_
#define PECO_TRAINER_TASKS_TOKENIZER_TASK_H_

#include <string>

#include "absl/status/statusor.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/training_loop.h"
#include "trainer/models/vq_tokenizer.h"
#include "trainer/tasks/tokenizer_config.h"

namespace peco::trainer {

struct TokenizerRunOptions {
  // A checkpoint directory (holding MANIFEST) or a run directory whose newest verified
  // checkpoint is used. Empty: a fresh run (refused if output_dir already holds checkpoints).
  std::string resume_from;
  ProgressSink* progress = nullptr;  // not owned; required
};

using TokenizerRunResult = TrainingResult;  // last_checkpoint is empty on ranks other than 0

absl::StatusOr<TokenizerRunResult> RunTokenizerJob(const TokenizerJobConfig& config,
                                                   const TokenizerRunOptions& options);

struct LoadedTokenizer {
  TokenizerJobConfig config;
  VqTokenizer model{nullptr};
  int64_t step = 0;
  std::string checkpoint_dir;
};

// Loads a verified tokenizer checkpoint (a checkpoint directory, or a run directory's newest)
// in eval mode.
absl::StatusOr<LoadedTokenizer> LoadTokenizerCheckpoint(const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_TOKENIZER_TASK_H_
