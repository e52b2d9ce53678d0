// The contract between a trainer process (peco-train) and whoever runs it (peco-worker's
// supervisor, tests, scripts): the names of the progress events it writes to stdout, one JSON
// object a line (trainer/engine/progress.h), and the meaning of its exit codes. The trainer and
// the worker both include this header, so neither side spells an event name or exit code alone.
//
// Constants only; thread-safe.
#ifndef PECO_COMMON_TRAINER_PROTOCOL_H_
#define PECO_COMMON_TRAINER_PROTOCOL_H_

#include "absl/status/status.h"

namespace peco::trainer_protocol {

// Progress events ({"event": <name>, ...}).
inline constexpr char kEventStart[] = "start";            // once, before the first step
inline constexpr char kEventStep[] = "step";              // every train.log_every steps
inline constexpr char kEventEval[] = "eval";              // an evaluation on held-out data
inline constexpr char kEventCheckpoint[] = "checkpoint";  // a checkpoint committed (rank 0)
inline constexpr char kEventCheckpointFailed[] = "checkpoint_failed";  // skipped by policy
inline constexpr char kEventHeartbeat[] = "heartbeat";  // work between steps is moving
inline constexpr char kEventCompleted[] = "completed";  // max_steps reached, final checkpoint
inline constexpr char kEventStopped[] = "stopped";      // stopped by signal, checkpoint written
inline constexpr char kEventError[] = "error";          // the run failed; exit code follows

// Exit codes of `peco-train <kind>`.
inline constexpr int kExitOk = 0;       // done, or stopped cleanly by SIGTERM with a checkpoint
inline constexpr int kExitFailure = 1;  // anything else (retryable by the service)
inline constexpr int kExitInvalidConfig = 2;  // bad usage or configuration: not worth retrying
inline constexpr int kExitNonFiniteLoss = 3;  // the loss became NaN or infinite: not retried

// The exit code for a run that ended with `status`: InvalidArgument and NotFound are
// configuration errors, FailedPrecondition a non-finite loss (or a refused start), OK is 0.
inline int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
      return kExitInvalidConfig;
    case absl::StatusCode::kFailedPrecondition:
      return kExitNonFiniteLoss;
    default:
      return kExitFailure;
  }
}

}  // namespace peco::trainer_protocol

#endif  // PECO_COMMON_TRAINER_PROTOCOL_H_
