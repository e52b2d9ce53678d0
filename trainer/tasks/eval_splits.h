// The labelled splits an evaluation job reads: its training data and the held-out split, opened
// and checked to be labelled alike.
//
// Free function; thread-safe. Errors: InvalidArgument naming data.path or eval.path (unlabelled
// data, class counts that differ, a held-out folder that cannot be opened).
#ifndef PECO_TRAINER_TASKS_EVAL_SPLITS_H_
#define PECO_TRAINER_TASKS_EVAL_SPLITS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"
#include "trainer/tasks/data_config.h"
#include "trainer/tasks/eval_config.h"

namespace peco::trainer {

struct EvalSplits {
  std::shared_ptr<const Dataset> train;     // `train` as given (labels_per_class applied)
  std::shared_ptr<const Dataset> held_out;  // config.eval_data, drawn with the eval stream
  int64_t classes = 0;                      // at least 2
};

// Opens `train` (config.data, or a variant of it such as the training images seen through the
// evaluation view) with config.seed and config.eval_data with MixSeed(seed, kEvalDataStream).
absl::StatusOr<EvalSplits> OpenEvalSplits(const DataConfig& train, const EvalJobConfig& config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_EVAL_SPLITS_H_
