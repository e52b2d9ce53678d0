#include "coordinator/job_access.h"

#include "absl/strings/str_cat.h"

namespace peco::coordinator {

absl::Status CheckJobAccess(const v1::Job& job, const UserCaller& caller) {
  if (caller.admin || JobOwner(job) == caller.name) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("job ", job.id(), " belongs to another user; ", caller.name,
                   " may act only on its own jobs (an admin token acts on every job)"));
}

v1::AuditEntry MakeAuditEntry(int64_t time_us, const UserCaller& caller, absl::string_view action,
                              const std::string& job_id, const absl::Status& outcome,
                              absl::string_view detail) {
  v1::AuditEntry entry;
  entry.set_time_us(time_us);
  entry.set_actor(caller.name);
  entry.set_action(std::string(action));
  entry.set_job_id(job_id);
  entry.set_outcome(outcome.ok() ? "OK" : absl::StatusCodeToString(outcome.code()));
  std::string text(detail);
  if (!outcome.ok()) {
    absl::StrAppend(&text, text.empty() ? "" : "; ", outcome.message());
  }
  entry.set_detail(std::move(text));
  return entry;
}

}  // namespace peco::coordinator
