#include "coordinator/job_state_machine.h"

#include "absl/strings/str_cat.h"

namespace peco::coordinator {

bool IsLegalTransition(v1::JobState from, v1::JobState to) {
  switch (from) {
    case v1::JOB_STATE_QUEUED:
      return to == v1::JOB_STATE_WAITING || to == v1::JOB_STATE_ASSIGNED ||
             to == v1::JOB_STATE_FAILED || to == v1::JOB_STATE_CANCELLED;
    case v1::JOB_STATE_WAITING:
      return to == v1::JOB_STATE_QUEUED || to == v1::JOB_STATE_FAILED ||
             to == v1::JOB_STATE_CANCELLED;
    case v1::JOB_STATE_ASSIGNED:
      return to == v1::JOB_STATE_RUNNING || to == v1::JOB_STATE_RESTARTING ||
             to == v1::JOB_STATE_FAILED || to == v1::JOB_STATE_CANCELLED;
    case v1::JOB_STATE_RUNNING:
      return to == v1::JOB_STATE_SUCCEEDED || to == v1::JOB_STATE_FAILED ||
             to == v1::JOB_STATE_CANCELLED || to == v1::JOB_STATE_RESTARTING;
    case v1::JOB_STATE_RESTARTING:
      return to == v1::JOB_STATE_ASSIGNED || to == v1::JOB_STATE_FAILED ||
             to == v1::JOB_STATE_CANCELLED;
    case v1::JOB_STATE_FAILED:
    case v1::JOB_STATE_CANCELLED:
      return to == v1::JOB_STATE_RESTARTING;
    default:
      return false;
  }
}

absl::Status CheckTransition(v1::JobState from, v1::JobState to) {
  for (v1::JobState s : {from, to}) {
    if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("job state ", static_cast<int>(s), " is invalid"));
    }
  }
  if (!IsLegalTransition(from, to)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "illegal job state transition ", JobStateName(from), " -> ", JobStateName(to)));
  }
  return absl::OkStatus();
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

bool HoldsDevices(v1::JobState state) {
  return state == v1::JOB_STATE_ASSIGNED || state == v1::JOB_STATE_RUNNING;
}

absl::string_view JobStateName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_UNSPECIFIED:
      return "unspecified";
    case v1::JOB_STATE_QUEUED:
      return "queued";
    case v1::JOB_STATE_WAITING:
      return "waiting";
    case v1::JOB_STATE_ASSIGNED:
      return "assigned";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_RESTARTING:
      return "restarting";
    case v1::JOB_STATE_SUCCEEDED:
      return "succeeded";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_CANCELLED:
      return "cancelled";
    default:
      return "unknown";
  }
}

}  // namespace peco::coordinator
