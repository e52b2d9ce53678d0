#include "coordinator/attempt_outcome.h"

#include "absl/strings/str_cat.h"

namespace peco::coordinator {

AttemptOutcome DecideAttemptOutcome(const v1::Job& job, AttemptEnd end, bool retryable,
                                    const std::string& reason, const std::string& cause,
                                    int max_restarts) {
  AttemptOutcome outcome;
  if (end == AttemptEnd::kSucceeded) {
    outcome.state = v1::JOB_STATE_SUCCEEDED;
    return outcome;
  }
  if (job.cancel_requested_time_us() > 0) {
    outcome.state = v1::JOB_STATE_CANCELLED;
    outcome.reason = job.cancel_reason();
    if (end == AttemptEnd::kFailed) {
      absl::StrAppend(&outcome.reason, " (the trainer did not stop cleanly: ", reason, ")");
    }
    outcome.cause = "cancelled";
    return outcome;
  }
  outcome.cause = cause;
  if (retryable && job.restart_count() < max_restarts) {
    outcome.state = v1::JOB_STATE_RESTARTING;
    outcome.reason = reason;
    outcome.restart = true;
    return outcome;
  }
  outcome.state = v1::JOB_STATE_FAILED;
  outcome.reason = retryable
                       ? absl::StrCat(reason, " (gave up after ", job.restart_count(), " restarts)")
                       : reason;
  return outcome;
}

}  // namespace peco::coordinator
