// The end-of-run audit of the control-plane soak (bench/control_plane_load.cc, phase `soak`):
// reads back every job a coordinator holds and its whole history, and counts what a durable
// service must never show: duplicated jobs (two jobs for one client request id), jobs that did
// not finish, and histories with a gap (no terminal state, no step-1 point of the attempt that
// finished) or a repeat (a terminal state or a metric point twice). Lost jobs are the submits that
// were acknowledged but are not among the jobs read back; the caller compares counts.
//
// Thread-safety: AuditJobs runs its own threads and returns when they are done.
#ifndef PECO_BENCH_JOB_AUDIT_H_
#define PECO_BENCH_JOB_AUDIT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/sim_cluster.h"

namespace peco::bench {

struct JobAudit {
  int64_t jobs = 0;
  std::map<std::string, int64_t> states;  // final state name -> jobs
  int64_t restarted = 0;                  // jobs that needed more than one attempt
  int64_t duplicate_request_ids = 0;      // jobs beyond the first for one client request id
  int64_t incomplete_histories = 0;
  int64_t repeated_events = 0;  // metric points seen twice
  int64_t history_events = 0;
  std::vector<std::string> examples;  // up to 10 "job-...: why" lines

  // No duplicate, every job SUCCEEDED, every history complete and without repeats.
  bool clean() const;
};

// Lists every job (paged ListJobs) and reads each one's history (WatchJob with history, which
// ends at the job's terminal state) over `threads` connections. Errors: the first failed call.
absl::StatusOr<JobAudit> AuditJobs(const Endpoint& endpoint, int threads);

}  // namespace peco::bench

#endif  // PECO_BENCH_JOB_AUDIT_H_
