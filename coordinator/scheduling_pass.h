// The scheduling pass's translation between job records and the pure policy
// (scheduler_policy.h): a pass builds a ClusterSnapshot (the workers from ClusterView, the queue
// from these functions), calls Schedule(), and applies the decision (Coordinator). Kept apart so
// the mapping from records to the policy's inputs is tested alone.
//
// Thread-safety: pure, except DependencyStateOf, which reads the (thread-safe) JobStore.
#ifndef PECO_COORDINATOR_SCHEDULING_PASS_H_
#define PECO_COORDINATOR_SCHEDULING_PASS_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "coordinator/job_store.h"
#include "coordinator/scheduler_policy.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Where a job's dependency stands: kFailed when the job it depends on failed, was cancelled or
// is gone, or the checkpoint it depends on is not recorded; kPending while that job has not
// succeeded; kNone otherwise (no dependency, or satisfied).
DependencyState DependencyStateOf(const v1::JobSpec& spec, JobStore& store);

// The policy's queue entry for a pending job. `restart_pending_since` is when a RESTARTING job
// became schedulable (nullopt: the submit time counts).
PendingJob QueueEntryOf(const v1::Job& job, std::optional<absl::Time> restart_pending_since,
                        DependencyState dependency);

// The reason recorded on a job the policy failed: its dependency's, when it has one, else the
// policy's own (e.g. unplaceable).
std::string FailedJobReason(const v1::Job& job, const std::string& policy_reason);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_SCHEDULING_PASS_H_
