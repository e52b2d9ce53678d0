// What a trainer does when a periodic checkpoint cannot be written (`train.on_checkpoint_failure`).
//
//   fail (default): the error ends the attempt; the job restarts (elsewhere if need be) from its
//                   newest checkpoint, which the failed write left the newest.
//   skip:           the failure is logged and emitted as a `checkpoint_failed` event (the worker
//                   forwards it into the job's history), and training goes on; the next periodic
//                   checkpoint tries again. More than `train.max_skipped_checkpoints` failures
//                   in a row end the attempt as `fail` would, so a disk that never comes back
//                   does not train for hours without a restart point.
// The final checkpoint is the job's result: its failure always ends the attempt.
//
// Thread-compatible: one guard per training loop.
#ifndef PECO_TRAINER_ENGINE_CHECKPOINT_POLICY_H_
#define PECO_TRAINER_ENGINE_CHECKPOINT_POLICY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

enum class CheckpointFailurePolicy { kFail, kSkip };

// "fail" | "skip" -> the policy; InvalidArgument naming train.on_checkpoint_failure otherwise.
absl::Status ParseCheckpointFailurePolicy(const std::string& name, CheckpointFailurePolicy* policy);

class CheckpointFailureGuard {
 public:
  // Borrows `progress`, which must outlive the guard. `max_skipped_in_a_row` >= 0.
  CheckpointFailureGuard(CheckpointFailurePolicy policy, int max_skipped_in_a_row,
                         ProgressSink* progress)
      : policy_(policy), max_skipped_in_a_row_(max_skipped_in_a_row), progress_(progress) {}

  // Takes the outcome of writing the checkpoint of `step` (`final`: the job's last). Returns OK
  // when it was written, or when it failed and the policy skips it; the write's error otherwise.
  absl::Status Check(int64_t step, bool final, const absl::Status& written);

  // Failures skipped since the last checkpoint that was written.
  int skipped_in_a_row() const { return skipped_in_a_row_; }

 private:
  const CheckpointFailurePolicy policy_;
  const int max_skipped_in_a_row_;
  ProgressSink* const progress_;
  int skipped_in_a_row_ = 0;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_CHECKPOINT_POLICY_H_
