#include "coordinator/scheduling_pass.h"

#include "absl/strings/str_cat.h"

namespace peco::coordinator {

DependencyState DependencyStateOf(const v1::JobSpec& spec, JobStore& store) {
  if (spec.depends_on().has_job_id()) {
    absl::StatusOr<v1::Job> dependency = store.GetJob(spec.depends_on().job_id());
    if (!dependency.ok() || dependency->state() == v1::JOB_STATE_FAILED ||
        dependency->state() == v1::JOB_STATE_CANCELLED) {
      return DependencyState::kFailed;
    }
    if (dependency->state() != v1::JOB_STATE_SUCCEEDED) return DependencyState::kPending;
  } else if (spec.depends_on().has_checkpoint_id()) {
    if (!store.GetCheckpoint(spec.depends_on().checkpoint_id()).ok()) {
      return DependencyState::kFailed;
    }
  }
  return DependencyState::kNone;
}

PendingJob QueueEntryOf(const v1::Job& job, std::optional<absl::Time> restart_pending_since,
                        DependencyState dependency) {
  PendingJob entry;
  entry.job_id = job.id();
  entry.priority = job.spec().priority();
  entry.submit_seq = job.submit_seq();
  entry.world_size = job.spec().world_size();
  entry.gpus_per_rank = job.spec().devices_per_rank().gpus();
  entry.cpu_slots_per_rank = job.spec().devices_per_rank().cpu_slots();
  entry.pending_since = restart_pending_since.value_or(absl::FromUnixMicros(job.submit_time_us()));
  entry.dependency = dependency;
  return entry;
}

std::string FailedJobReason(const v1::Job& job, const std::string& policy_reason) {
  const v1::Dependency& depends_on = job.spec().depends_on();
  if (!depends_on.has_job_id() && !depends_on.has_checkpoint_id()) return policy_reason;
  const std::string& target =
      depends_on.has_job_id() ? depends_on.job_id() : depends_on.checkpoint_id();
  return absl::StrCat("dependency ", target, " failed, was cancelled or is gone");
}

}  // namespace peco::coordinator
