// The rules every JobStore (coordinator/job_store.h) applies to its records, as pure functions
// on the wire messages, so that the SQLite store and the in-memory store cannot drift apart:
// fencing, the legal state transitions (coordinator/job_state_machine.h), what a state update
// does to a job and to its current attempt, what starting an attempt writes, and the control
// fields. A store loads the records, calls these under its own lock or transaction, and writes
// back what they changed; the Check* functions change nothing.
//
// Errors name `operation` (e.g. "updating a job state") and the job: FailedPrecondition for a
// fencing or state-machine refusal, InvalidArgument for a malformed request.
//
// Free functions; thread-compatible (they touch only their arguments).
#ifndef PECO_COORDINATOR_JOB_RECORD_RULES_H_
#define PECO_COORDINATOR_JOB_RECORD_RULES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coordinator/job_store.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/metrics.pb.h"

namespace peco::coordinator {

// InvalidArgument unless the submission's initial state is QUEUED or WAITING.
absl::Status ValidateNewJob(const char* operation, const NewJob& new_job);

// A submission whose client_request_id names `existing`: OK (the caller returns `existing`)
// when the specs are identical, AlreadyExists when they differ.
// InvalidArgument naming `operation` for an audit entry without a job id or an actor.
absl::Status CheckAuditEntry(const char* operation, const v1::AuditEntry& entry);

absl::Status CheckRequestReplay(const char* operation, const v1::Job& existing,
                                const NewJob& new_job);

// The record of a new job with submit order `seq`: id "job-%06d" of seq, the spec, the initial
// state, the submit time and the request id.
v1::Job NewJobRecord(const NewJob& new_job, int64_t seq);

// FailedPrecondition unless `job` is at attempt `expected`; `what` names the caller's request
// ("the update", "the request") in the message.
absl::Status CheckAttemptFence(const char* operation, const v1::Job& job, int64_t expected,
                               const char* what);

// Fencing and the state machine for `update` on `job`.
absl::Status CheckStateUpdate(const char* operation, const v1::Job& job,
                              const JobStateUpdate& update);

// Applies a checked `update` to `job`: the state, start_time_us on the first RUNNING,
// end_time_us on a terminal state (cleared when a terminal job resumes), failure_reason on
// FAILED. Returns whether the job's current attempt follows the update (ApplyAttemptUpdate):
// true while the job has an attempt and was not terminal before.
bool ApplyStateUpdate(const JobStateUpdate& update, v1::Job* job);

// The current attempt's side of a state update: its state, and when it ends (RESTARTING or a
// terminal state) its end time, failure reason and cause.
void ApplyAttemptUpdate(const JobStateUpdate& update, v1::Attempt* attempt);

// Sets the control fields `update` names (unset optionals leave a field as it is). Fencing is
// the caller's (CheckAttemptFence).
void ApplyControlUpdate(const JobControlUpdate& update, v1::Job* job);

// InvalidArgument for a request that no job could accept (no placements, a negative
// resume_step); checked before the job is looked up.
absl::Status ValidateNewAttempt(const char* operation, const NewAttempt& request);

// Fencing and the state machine for starting `request` on `job`.
absl::Status CheckNewAttempt(const char* operation, const v1::Job& job, const NewAttempt& request);

// Starts the next attempt of a checked `job`: ASSIGNED, attempt + 1, restart_count + 1 after
// RESTARTING, the pending cancellation and next_resume_checkpoint_id cleared. Returns the new
// attempt's record.
v1::Attempt StartAttempt(const NewAttempt& request, v1::Job* job);

// FailedPrecondition when a point of `points` names another job or attempt than the call.
absl::Status CheckMetricPoints(const char* operation, const std::string& job_id, int64_t attempt,
                               const std::vector<v1::MetricPoint>& points);

// Appends one stored metric value to a history listed in (step, attempt, rank, name) order:
// a value of the same (attempt, rank, step) as the last point joins it, any other starts a new
// point with `time_us` (so a point's time is its first name's).
void AppendMetricValue(const std::string& job_id, int64_t attempt, int32_t rank, int64_t step,
                       int64_t time_us, const std::string& name, double value,
                       std::vector<v1::MetricPoint>* points);

// The submit_seq a ListJobs page starts after (the page token is the decimal submit_seq of the
// previous page's last job; "" = 0). InvalidArgument for a page size outside 1..1000, a token
// that is not such a number, or a state filter holding anything but a real job state.
absl::StatusOr<int64_t> PageStart(const char* operation, const JobQuery& query);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_RECORD_RULES_H_
