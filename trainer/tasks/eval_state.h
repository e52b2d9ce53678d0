// The state an evaluation job (finetune, linear_probe) keeps in each checkpoint's
// trainer_state.json, and its JSON form.
//
// Value type and free functions; thread-compatible. Parsing errors are InvalidArgument naming
// `source` and the field.
#ifndef PECO_TRAINER_TASKS_EVAL_STATE_H_
#define PECO_TRAINER_TASKS_EVAL_STATE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
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

// RunState (engine/run_state.h; kind finetune | linear_probe) and the evaluation's own fields.
struct EvalState : RunState {
  BeitVitConfig model;                      // the classifier's config (FinetuneConfigFrom form)
  int64_t probe_block = 0;                  // linear_probe: the probed block; finetune: 0
  std::string probe_feature_norm = "none";  // linear_probe: none | batchnorm
  int64_t num_classes = 0;                  // classes of the training data
  EvalBackboneSource backbone;              // where the backbone's initial weights came from
  EvalResult eval;                          // the last evaluation (step -1: none yet)
};

// The trainer_state.json text (one JSON object and a newline). "kind" is the job kind.
std::string EvalStateToJson(const EvalState& state);

// Parses EvalStateToJson's output; InvalidArgument for another kind or a missing field.
absl::StatusOr<EvalState> EvalStateFromJson(const std::string& json, const std::string& source);

// True when two classifier configs have the same parameter shapes (architecture, per-block
// relative position tables, classes, pooling).
bool SameClassifier(const BeitVitConfig& a, const BeitVitConfig& b);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_STATE_H_
