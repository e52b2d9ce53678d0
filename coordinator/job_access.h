// Who may act on a job, and the audit entries that record it (docs/SERVICE.md "Users and
// ownership").
//
// Every job has an owner, the user that submitted it (v1::Job.owner; JobOwner() in job_store.h).
// A user sees and acts on its own jobs; a caller with the admin role (the primary user token, or
// an issued token with `--role admin`) on every job. Refusals are PERMISSION_DENIED without the
// owner's name. The Coordinator records every state-changing call (submit, cancel, resume) and
// every refusal in the audit log (JobStore::AppendAudit), which `peco get` shows.
//
// Thread-safety: pure functions.
#ifndef PECO_COORDINATOR_JOB_ACCESS_H_
#define PECO_COORDINATOR_JOB_ACCESS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "coordinator/job_store.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Who a JobService call comes from (auth.h Caller): the user name and whether it is an admin. The
// default is the primary user: calls made inside the process (tools, tests) act as the
// administrator; the RPC layer always passes the caller of the call.
struct UserCaller {
  std::string name = kAdminUser;
  bool admin = true;
};

// OK when `caller` may see and act on `job`; PermissionDenied naming the job otherwise.
absl::Status CheckJobAccess(const v1::Job& job, const UserCaller& caller);

// The audit entry of `action` on `job_id` by `caller` at `time_us` with `outcome` (OK, or the
// refusal: its code name and message become outcome and detail, after `detail`).
v1::AuditEntry MakeAuditEntry(int64_t time_us, const UserCaller& caller, absl::string_view action,
                              const std::string& job_id, const absl::Status& outcome,
                              absl::string_view detail = "");

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_ACCESS_H_
