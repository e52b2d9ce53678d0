// What the end of an attempt does to its job (coordinator.h, NOTE [attempt outcomes]), as one
// pure decision:
//  - success ends the job SUCCEEDED;
//  - a job whose cancellation was requested becomes CANCELLED, whatever else happened (with the
//    trainer's failure appended to the reason when it did not stop cleanly);
//  - a retryable failure or stop restarts the job (RESTARTING) while restart_count < max_restarts;
//  - anything else FAILS the job, a retryable one saying how many restarts it had.
//
// Thread-safety: pure.
#ifndef PECO_COORDINATOR_ATTEMPT_OUTCOME_H_
#define PECO_COORDINATOR_ATTEMPT_OUTCOME_H_

#include <string>

#include "peco/v1/job.pb.h"

namespace peco::coordinator {

enum class AttemptEnd { kSucceeded, kStopped, kFailed };

struct AttemptOutcome {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  std::string reason;
  // Recorded on the attempt (v1::Attempt.cause).
  std::string cause;
  // Whether this is a restart (counted by the restart metric under the caller's label).
  bool restart = false;
};

// The job's next state after its current attempt ended with `end`. `reason` and `cause`
// describe the failure or stop (ignored on success); `max_restarts` is the job's limit.
AttemptOutcome DecideAttemptOutcome(const v1::Job& job, AttemptEnd end, bool retryable,
                                    const std::string& reason, const std::string& cause,
                                    int max_restarts);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_ATTEMPT_OUTCOME_H_
