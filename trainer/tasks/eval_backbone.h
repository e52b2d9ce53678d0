// The backbone of the evaluation jobs (finetune, linear_probe): where its weights come from, the
// architecture it fixes, and loading it into a classifier.
//
// Sources: `backbone.checkpoint` (a peco pretrain checkpoint; its config.yaml gives the
// architecture), `backbone.weights` (an official BEiT `{'model': state_dict}` file; the
// architecture is `model:`'s), or neither (`backbone: random`): a randomly initialised backbone,
// the baseline; `backbone: pixels` (linear_probe): the image itself, the floor.
//
// Free functions; thread-compatible. Errors are InvalidArgument naming the `backbone.*` or
// `model.*` field (a missing or damaged source does not heal on retry); Internal for LibTorch.
#ifndef PECO_TRAINER_TASKS_EVAL_BACKBONE_H_
#define PECO_TRAINER_TASKS_EVAL_BACKBONE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/engine/progress.h"
#include "trainer/models/beit_vit.h"
#include "trainer/tasks/eval_config.h"

namespace peco::trainer {

// Where the backbone's initial weights come from, recorded in every evaluation checkpoint.
struct EvalBackboneSource {
  std::string kind = "random";  // random | pixels (linear_probe) | checkpoint | weights
  std::string path;             // the resolved checkpoint directory or the weights file
  std::string sha256;  // checkpoint: SHA-256 of its MANIFEST; weights: of the file; random: ""
  int64_t step = -1;   // checkpoint: its step
};

// Resolves config->backbone. For a checkpoint (or run directory: its newest verified
// checkpoint): refuses a checkpoint of another kind ("backbone.checkpoint: DIR is a tokenizer
// checkpoint, expected a pretrain checkpoint"); takes its model architecture and, unless
// transform.mean / std were given, its normalisation; refuses architecture fields of `model:`
// that differ, naming both values; keeps model.drop_path_rate / init_std when given. Then
// re-validates *config. Skipped damaged checkpoints are logged to `progress` (may be null).
absl::StatusOr<EvalBackboneSource> ResolveEvalBackbone(EvalJobConfig* config,
                                                       ProgressSink* progress);

// Loads the backbone's weights into `model` (a classifier of FinetuneConfigFrom(config.model,
// classes)) through LoadPretrainIntoClassifier; nothing for a random backbone. All or nothing.
absl::Status LoadBackboneInto(const EvalBackboneSource& source, BeitClassifier& model);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_BACKBONE_H_
