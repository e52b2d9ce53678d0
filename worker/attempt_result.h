// The AttemptResult a worker reports when an attempt's local ranks have all exited, decided in
// one pure function from the supervisor's outcome and the ranks' exits. The cause of a failure
// (AttemptResult.cause, worker_agent.h) is the deciding rank's: "launch" (never started),
// "stall" (killed for making no progress), "cancel" (stopped after a cancellation),
// "nonfinite_loss" (the trainer's exit code for a NaN or infinite loss), "oom" (a SIGKILL the
// worker did not send: on Linux the out-of-memory killer), "signal" (another signal), "exit"
// (an exit code; also the cause of success). An attempt the worker itself stopped (its shutdown,
// not the user) is a retryable failure, so another attempt carries on from its checkpoint.
//
// Thread-safety: pure.
#ifndef PECO_WORKER_ATTEMPT_RESULT_H_
#define PECO_WORKER_ATTEMPT_RESULT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "peco/v1/worker_service.pb.h"
#include "worker/trainer_supervisor.h"

namespace peco::worker {

// How the attempt came to an end besides its ranks' exits.
struct AttemptEnding {
  bool launch_failed = false;          // the trainers never started
  bool coordinator_cancelled = false;  // the coordinator asked for the stop
  bool shutdown_cancelled = false;     // the worker's own shutdown asked for it
};

v1::AttemptResult BuildAttemptResult(const std::string& job_id, int64_t attempt,
                                     const AttemptOutcome& outcome,
                                     const std::vector<RankStatus>& ranks,
                                     const AttemptEnding& ending);

}  // namespace peco::worker

#endif  // PECO_WORKER_ATTEMPT_RESULT_H_
