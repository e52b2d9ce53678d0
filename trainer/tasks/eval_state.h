// The state an evaluation job (finetune, linear_probe) keeps in each checkpoint's
// trainer_state.json, and its JSON form.
//
// Value type and free functions; thread-compatible. Parsing errors are InvalidArgument naming
// `source` and the field.
#ifndef PECO_TRAINER_TASKS_EVAL_STATE_H_
#define PECO_TRAINER_TASKS_EVAL_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/run_state.h"
#include "trainer/models/beit_config.h"
#include "trainer/tasks/eval_backbone.h"

namespace peco::trainer {

// One evaluation on the held-out split.
struct EvalResult {
  int64_t step = -1;  // -1: none yet
  double top1 = 0;    // percent
  double top5 = 0;    // percent
  double loss = 0;
  int64_t images = 0;
};

// A linear_probe's readouts beside its EvalResult (which holds the linear readout's top-1,
// top-5 and test cross-entropy).
struct ReadoutResult {
  int64_t block = 0;  // the block read out (chosen on validation for block: auto); pixels: 0
  std::vector<int64_t> blocks;                // the candidate blocks (auto: every block)
  std::vector<double> block_validation_top1;  // k-NN validation top-1 of each candidate
  double knn_top1 = 0, knn_top5 = 0;          // percent, on the held-out split
  double l2 = 0;                              // the linear readout's chosen L2 strength
  int64_t train_images = 0;                   // training images with features
};

// RunState (engine/run_state.h; kind finetune | linear_probe) and the evaluation's own fields.
struct EvalState : RunState {
  BeitVitConfig model;                // the classifier's config (FinetuneConfigFrom form)
  std::string pooling = "mean";       // linear_probe: cls | mean | cls+mean
  std::string feature_norm = "none";  // linear_probe: none | batchnorm
  int64_t num_classes = 0;            // classes of the training data
  // The model input's normalisation, (value / 255 - mean) / std, as resolved for the run (the
  // config's or the backbone checkpoint's); checkpoints written before it was recorded read as
  // the default 0.5 / 0.5.
  std::vector<double> input_mean = {0.5, 0.5, 0.5};
  std::vector<double> input_std = {0.5, 0.5, 0.5};
  EvalBackboneSource backbone;  // where the backbone's initial weights came from
  EvalResult eval;              // the last evaluation (step -1: none yet)
  ReadoutResult readout;        // linear_probe
};

// The trainer_state.json text (one JSON object and a newline). "kind" is the job kind.
std::string EvalStateToJson(const EvalState& state);

// Parses EvalStateToJson's output; InvalidArgument for another kind or a missing field.
absl::StatusOr<EvalState> EvalStateFromJson(const std::string& json, const std::string& source);

// The state of an evaluation checkpoint a run of `current`'s kind and backbone resumes from
// (after Build): InvalidArgument when the checkpoint holds another kind or was made from another
// backbone (kind or SHA-256), naming both; DataLoss when its trainer_state.json is missing.
absl::StatusOr<EvalState> ReadResumedEvalState(const RestoredCheckpoint& checkpoint,
                                               const EvalState& current);

// True when two classifier configs have the same parameter shapes (architecture, per-block
// relative position tables, classes, pooling).
bool SameClassifier(const BeitVitConfig& a, const BeitVitConfig& b);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_STATE_H_
