// The legal job state transitions of DESIGN.md section 4, as pure functions.
//
//   QUEUED     -> WAITING | ASSIGNED | FAILED | CANCELLED
//   WAITING    -> QUEUED (dependency succeeded) | FAILED (dependency failed) | CANCELLED
//   ASSIGNED   -> RUNNING | RESTARTING (worker lost or refused) | FAILED | CANCELLED
//   RUNNING    -> SUCCEEDED | FAILED | CANCELLED | RESTARTING (lost worker, crash, stall)
//   RESTARTING -> ASSIGNED (the next attempt is placed) | FAILED | CANCELLED
//   FAILED, CANCELLED -> RESTARTING (an explicit `peco resume`)
//   SUCCEEDED  -> (none)
//
// A state never transitions to itself. Thread-safe: no state.
#ifndef PECO_COORDINATOR_JOB_STATE_MACHINE_H_
#define PECO_COORDINATOR_JOB_STATE_MACHINE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Returns true when `from` -> `to` is in the table above.
bool IsLegalTransition(v1::JobState from, v1::JobState to);

// Returns OK for a legal transition, FailedPrecondition naming both states otherwise, and
// InvalidArgument when either state is JOB_STATE_UNSPECIFIED or out of range.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

// Returns true for SUCCEEDED, FAILED and CANCELLED.
bool IsTerminal(v1::JobState state);

// Returns true for the states in which a job holds devices (ASSIGNED, RUNNING).
bool HoldsDevices(v1::JobState state);

// Returns the short lower-case name of a state ("queued", "running", ...), "unspecified" for
// JOB_STATE_UNSPECIFIED and "unknown" for values outside the enum.
absl::string_view JobStateName(v1::JobState state);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_STATE_MACHINE_H_
