// MemoryJobStore: the JobStore (coordinator/job_store.h) held in memory, for tests.
//
// It keeps every record in this object and nothing on disk: the records are lost with the
// object. That breaks the part of the JobStore contract about crashes (an OK return is *not*
// safe from a crash of the process, and Sync() makes nothing durable), which is why the
// coordinator's binary does not use it; everything else in the contract holds.
//
// Its observable behaviour is SqliteJobStore's (coordinator/sqlite_job_store.h), and
// tests/coordinator/job_store_test.cc runs the same contract suite against both:
//  - ids "job-000001", "job-000002", ... in submit order, which is also submit_seq;
//  - a reused client_request_id returns the job as it is now, or AlreadyExists when the spec
//    differs;
//  - state-machine (job_state_machine.h) and fencing refusals with the same status codes, and
//    nothing written on a refusal;
//  - ListJobs page tokens are decimal submit_seq values (any other token is InvalidArgument);
//  - workers ordered by id (byte order); checkpoints of a job ordered by (step, attempt, id);
//  - metric values are kept the way SQLite stores a REAL NOT NULL column: a NaN value is
//    skipped (not stored, not counted) and -0.0 reads back as 0.0.
// Storage never fails, so no method returns Internal or Unavailable.
//
// Thread-safety: every public method is thread-safe and atomic; one mutex serializes them.
//
// Usage:
//   auto store = std::make_unique<MemoryJobStore>();
//   ASSIGN_OR_RETURN(CreateJobResult result, store->CreateJob(new_job));
#ifndef PECO_COORDINATOR_MEMORY_JOB_STORE_H_
#define PECO_COORDINATOR_MEMORY_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"

namespace peco::coordinator {

class MemoryJobStore : public JobStore {
 public:
  // Creates an empty store.
  MemoryJobStore() = default;
  ~MemoryJobStore() override = default;

  // See JobStore for each method's contract; the error codes are the ones listed there, except
  // that nothing here fails for storage reasons.
  absl::StatusOr<CreateJobResult> CreateJob(const NewJob& new_job) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  // Returns OK at once: there is nothing to flush (and nothing durable; see the file comment).
  absl::Status Sync() override;
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;
  absl::StatusOr<v1::Job> UpdateJobState(const JobStateUpdate& update) override;
  absl::StatusOr<v1::Job> UpdateJobControl(const JobControlUpdate& update) override;
  absl::StatusOr<v1::Attempt> BeginAttempt(const NewAttempt& attempt) override;
  absl::StatusOr<std::vector<absl::StatusOr<StartedAttempt>>> BeginAttempts(
      const std::vector<NewAttempt>& attempts) override;
  absl::StatusOr<std::vector<v1::Attempt>> ListAttempts(const std::string& job_id) override;

  absl::Status UpsertWorker(const v1::WorkerInfo& worker) override;
  absl::StatusOr<v1::WorkerInfo> GetWorker(const std::string& worker_id) override;
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers() override;

  absl::Status AddCheckpoint(const v1::CheckpointInfo& info) override;
  absl::StatusOr<v1::CheckpointInfo> GetCheckpoint(const std::string& checkpoint_id) override;
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id) override;
  absl::Status DeleteCheckpoint(const std::string& checkpoint_id) override;

  absl::Status AppendAudit(const v1::AuditEntry& entry) override;
  absl::StatusOr<std::vector<v1::AuditEntry>> ListAudit(const std::string& job_id,
                                                        int limit) override;

  absl::StatusOr<int64_t> AppendMetricPoints(const std::string& job_id, int64_t attempt,
                                             const std::vector<v1::MetricPoint>& points) override;
  absl::StatusOr<std::vector<v1::MetricPoint>> ListMetricPoints(const MetricQuery& query) override;

 private:
  // A metric value's key, in the order the history is listed: (step, attempt, rank, name).
  // Unique per (job, attempt, rank, step, name), the key that makes appends idempotent.
  using MetricKey = std::tuple<int64_t, int64_t, int32_t, std::string>;
  struct MetricValue {
    double value = 0;
    int64_t time_us = 0;
  };

  // A job with everything that belongs to it but its checkpoints.
  struct JobEntry {
    v1::Job job;
    std::vector<v1::Attempt> attempts;  // attempts[i].number() == i + 1
    std::map<MetricKey, MetricValue> metrics;
    std::string depends_on;  // the job it depends on (a checkpoint's job resolved), or ""
  };

  // Returns the job's entry, or NotFound naming `operation`.
  absl::StatusOr<JobEntry*> FindJob(const std::string& job_id, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // BeginAttempt()'s work: a refusal (writing nothing) or the started attempt.
  absl::StatusOr<StartedAttempt> BeginAttemptLocked(const NewAttempt& request,
                                                    const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::vector<JobEntry> jobs_ ABSL_GUARDED_BY(mu_);  // jobs_[i].job.submit_seq() == i + 1
  absl::flat_hash_map<std::string, size_t> job_index_by_id_ ABSL_GUARDED_BY(mu_);
  // Non-empty client_request_id -> index in jobs_.
  absl::flat_hash_map<std::string, size_t> job_index_by_request_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::WorkerInfo> workers_ ABSL_GUARDED_BY(mu_);             // by id
  std::map<std::string, v1::CheckpointInfo> checkpoints_ ABSL_GUARDED_BY(mu_);     // by id
  std::map<std::string, std::vector<v1::AuditEntry>> audit_ ABSL_GUARDED_BY(mu_);  // by job id
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_MEMORY_JOB_STORE_H_
