#include "worker/attempt_result.h"

#include <signal.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/trainer_protocol.h"

namespace peco::worker {
namespace {

std::string FailureCause(const AttemptOutcome& outcome, const RankStatus* failed,
                         const AttemptEnding& ending) {
  if (ending.launch_failed) return "launch";
  if (failed != nullptr && failed->stalled) return "stall";
  if (outcome.cancel_requested) return "cancel";
  if (failed == nullptr || !failed->exit.has_value()) return "exit";
  if (failed->exit->exited()) {
    // The trainer refused a NaN or infinite loss.
    return failed->exit->exit_code == trainer_protocol::kExitNonFiniteLoss ? "nonfinite_loss"
                                                                           : "exit";
  }
  // The supervisor SIGKILLs a rank only after the gang's deciding failure was recorded, so a
  // deciding SIGKILL came from elsewhere: on Linux, the out-of-memory killer.
  return failed->exit->signal == SIGKILL ? "oom" : "signal";
}

}  // namespace

v1::AttemptResult BuildAttemptResult(const std::string& job_id, int64_t attempt,
                                     const AttemptOutcome& outcome,
                                     const std::vector<RankStatus>& ranks,
                                     const AttemptEnding& ending) {
  v1::AttemptResult result;
  result.set_job_id(job_id);
  result.set_attempt(attempt);
  int64_t last_step = -1;
  for (const RankStatus& rank : ranks) last_step = std::max(last_step, rank.last_step);
  result.set_last_step(last_step);
  result.set_reason(outcome.reason);
  result.set_retryable(outcome.retryable);
  switch (outcome.result) {
    case AttemptOutcome::Result::kSucceeded:
      result.set_result(v1::AttemptResult::RESULT_SUCCEEDED);
      result.set_cause("exit");
      return result;
    case AttemptOutcome::Result::kStopped:
      result.set_result(v1::AttemptResult::RESULT_STOPPED);
      result.set_cause("cancel");
      break;
    case AttemptOutcome::Result::kFailed: {
      result.set_result(v1::AttemptResult::RESULT_FAILED);
      const RankStatus* failed = nullptr;
      for (const RankStatus& rank : ranks) {
        if (rank.tag.rank == outcome.failed_rank) failed = &rank;
      }
      const std::string cause = FailureCause(outcome, failed, ending);
      if (cause == "oom") {
        result.set_reason(absl::StrCat(
            outcome.reason, " (not sent by peco-worker: probably the out-of-memory killer)"));
      }
      result.set_cause(cause);
      break;
    }
  }
  if (ending.shutdown_cancelled && !ending.coordinator_cancelled) {
    // The worker stopped it, not the user: another attempt should carry on from its checkpoint.
    result.set_result(v1::AttemptResult::RESULT_FAILED);
    result.set_retryable(true);
    result.set_cause("cancel");
    result.set_reason(
        absl::StrCat("peco-worker shut down", outcome.reason.empty() ? "" : ": ", outcome.reason));
  }
  return result;
}

}  // namespace peco::worker
