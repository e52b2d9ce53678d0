// JobStore: the coordinator's durable state (DESIGN.md section 7) behind an interface: jobs,
// attempts, workers, checkpoint records and metric history. SqliteJobStore
// (coordinator/sqlite_job_store.h) is the production implementation; MemoryJobStore
// (coordinator/memory_job_store.h) holds the same records in memory for tests, and
// tests/coordinator/job_store_test.cc runs one contract suite against both.
//
// Records are the wire messages of proto/peco/v1 so that nothing is translated twice.
//
// Contract shared by every implementation:
//  - Every method is thread-safe and atomic: it either applies all of its writes or none.
//  - A method that returns OK has made its writes visible to every later call and safe from a
//    crash of the process (a coordinator killed right after the return finds them on restart).
//    Sync() makes every write that returned before it durable against a crash of the machine
//    too; the coordinator calls it before it acknowledges a change to anyone, so that nothing
//    acknowledged is lost (implementations may make every write durable at once and Sync() a
//    no-op).
//  - Fencing: every write about an attempt (state updates, metric points, checkpoint records)
//    names the attempt it believes is current; a write that names another attempt is refused
//    with FailedPrecondition and changes nothing, so a stale rank cannot corrupt a new attempt.
//  - Errors: NotFound for a missing id, InvalidArgument for a malformed request,
//    FailedPrecondition for a fencing or state-machine refusal, AlreadyExists for an
//    idempotency-key reuse with different content, Internal/Unavailable for storage failures
//    (the message names the operation).
#ifndef PECO_COORDINATOR_JOB_STORE_H_
#define PECO_COORDINATOR_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peco/v1/checkpoint.pb.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/metrics.pb.h"
#include "peco/v1/worker.pb.h"

namespace peco::coordinator {

// The user name of the coordinator's primary user token (auth.h), which has the admin role, and
// the owner of jobs stored before jobs had owners (an empty v1::Job.owner).
inline constexpr char kAdminUser[] = "admin";

// A job's owner: v1::Job.owner, or kAdminUser when it has none.
inline std::string JobOwner(const v1::Job& job) {
  return job.owner().empty() ? std::string(kAdminUser) : job.owner();
}

// A submission. The store assigns the id and the submit order.
struct NewJob {
  v1::JobSpec spec;
  // Idempotency key ("" = none): a second CreateJob with the same key returns the first job.
  std::string client_request_id;
  // The submitting user (v1::Job.owner).
  std::string owner;
  // QUEUED, or WAITING for a job whose dependency has not succeeded yet.
  v1::JobState initial_state = v1::JOB_STATE_QUEUED;
  int64_t submit_time_us = 0;
};

struct CreateJobResult {
  v1::Job job;
  bool created = false;  // false: client_request_id matched an existing job
};

// A state change of the current attempt (fenced by expected_attempt).
struct JobStateUpdate {
  std::string job_id;
  int64_t expected_attempt = 0;
  v1::JobState new_state = v1::JOB_STATE_UNSPECIFIED;
  // The job's failure_reason for FAILED; also the attempt's failure_reason when the attempt ends
  // (RESTARTING or a terminal state).
  std::string reason;
  int64_t time_us = 0;
  // The attempt's cause (v1::Attempt.cause) when it ends; "" when it succeeds.
  std::string cause;
};

// The start of the next attempt: the job moves to ASSIGNED with attempt expected_attempt + 1.
struct NewAttempt {
  std::string job_id;
  int64_t expected_attempt = 0;  // the job's current attempt (0 before the first start)
  std::string resume_checkpoint_id;
  int64_t resume_step = 0;
  std::vector<v1::RankPlacement> placements;
  std::string master_addr;
  int32_t master_port = 0;
  int64_t time_us = 0;
  std::vector<v1::InputCheckpoint> inputs;  // checkpoints of the dependency the trainer reads
};

// Control fields of a job that are not its state: a pending cancellation and the checkpoint the
// next attempt resumes from. Unset optionals leave the field as it is.
struct JobControlUpdate {
  std::string job_id;
  int64_t expected_attempt = 0;
  std::optional<int64_t> cancel_requested_time_us;
  std::optional<std::string> cancel_reason;
  std::optional<std::string> next_resume_checkpoint_id;
  // The trainer config of the job's spec (ResumeJob's config_overrides applied).
  std::optional<std::string> config_yaml;
};

struct JobQuery {
  std::vector<v1::JobState> states;  // empty = every state
  std::string owner;                 // "" = every owner; else only that user's jobs
  // Only jobs whose spec has every one of these labels (key -> value); served by an index.
  std::map<std::string, std::string> labels;
  // Only jobs that depend on this job, directly or through one of its checkpoints (the
  // checkpoint's job as it was when the dependent was created); served by an index.
  std::string depends_on_job_id;
  int32_t page_size = 100;  // 1..1000
  std::string page_token;   // "" = first page
};

struct JobPage {
  std::vector<v1::Job> jobs;    // in submit order
  std::string next_page_token;  // "" = no more
};

struct MetricQuery {
  std::string job_id;
  std::optional<int32_t> rank;  // unset = every rank
  // false (the curve): points of an attempt past the step a later attempt resumed from are
  // hidden (DESIGN.md section 5). true: every point ever acknowledged.
  bool include_superseded = false;
};

class JobStore {
 public:
  JobStore() = default;
  virtual ~JobStore() = default;
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // ---- Jobs ----

  // Creates a job, or returns the existing one when new_job.client_request_id was used before
  // with an identical spec by the same owner (AlreadyExists when the spec or the owner differs).
  // InvalidArgument when initial_state is neither QUEUED nor WAITING.
  virtual absl::StatusOr<CreateJobResult> CreateJob(const NewJob& new_job) = 0;

  // Returns the job; NotFound when there is none.
  virtual absl::StatusOr<v1::Job> GetJob(const std::string& job_id) = 0;

  // Returns once every write that returned OK before the call is durable against a crash of the
  // machine (see the contract above). Concurrent calls share the work. Internal when the data
  // could not be flushed.
  virtual absl::Status Sync() = 0;

  // Returns one page of jobs in submit order. InvalidArgument for a bad page size or token.
  virtual absl::StatusOr<JobPage> ListJobs(const JobQuery& query) = 0;

  // Moves the job (and its current attempt, if any) to update.new_state and returns the job.
  // FailedPrecondition when the job's attempt is not update.expected_attempt (fencing) or the
  // transition is illegal (coordinator/job_state_machine.h). Sets start_time_us on the first
  // RUNNING and end_time_us on a terminal state.
  virtual absl::StatusOr<v1::Job> UpdateJobState(const JobStateUpdate& update) = 0;

  // Sets the job's control fields and returns the job. FailedPrecondition when the job's attempt
  // is not update.expected_attempt (fencing); the job's state does not change.
  virtual absl::StatusOr<v1::Job> UpdateJobControl(const JobControlUpdate& update) = 0;

  // Starts the next attempt: records it and moves the job to ASSIGNED. A restart (the job was
  // RESTARTING) increments restart_count. Clears the job's pending cancellation and
  // next_resume_checkpoint_id. FailedPrecondition on a fencing or state refusal.
  virtual absl::StatusOr<v1::Attempt> BeginAttempt(const NewAttempt& attempt) = 0;

  // A started attempt and the job's record after the start.
  struct StartedAttempt {
    v1::Job job;
    v1::Attempt attempt;
  };

  // Starts several attempts in one transaction (one scheduling pass): each is checked and
  // written as BeginAttempt() does, and one that is refused changes nothing and does not stop
  // the others. Returns one result per request, in order. A storage failure fails the whole
  // batch and writes nothing.
  virtual absl::StatusOr<std::vector<absl::StatusOr<StartedAttempt>>> BeginAttempts(
      const std::vector<NewAttempt>& attempts) = 0;

  // Returns every attempt of a job, oldest first (empty for a job never started).
  virtual absl::StatusOr<std::vector<v1::Attempt>> ListAttempts(const std::string& job_id) = 0;

  // ---- Workers ----

  // Inserts or replaces the worker record with worker.id (InvalidArgument when empty).
  virtual absl::Status UpsertWorker(const v1::WorkerInfo& worker) = 0;

  // Returns the worker; NotFound when there is none.
  virtual absl::StatusOr<v1::WorkerInfo> GetWorker(const std::string& worker_id) = 0;

  // Returns every worker, ordered by id.
  virtual absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers() = 0;

  // ---- Checkpoints ----

  // Records a verified checkpoint. Idempotent on info.id (AlreadyExists if the same id comes
  // with other content). FailedPrecondition when info.attempt is not the job's current attempt.
  virtual absl::Status AddCheckpoint(const v1::CheckpointInfo& info) = 0;

  // Returns the checkpoint record; NotFound when there is none.
  virtual absl::StatusOr<v1::CheckpointInfo> GetCheckpoint(const std::string& checkpoint_id) = 0;

  // Returns a job's checkpoints ordered by (step, attempt).
  virtual absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id) = 0;

  // Removes a checkpoint record; OK when it is already gone (idempotent retention).
  virtual absl::Status DeleteCheckpoint(const std::string& checkpoint_id) = 0;

  // ---- Audit ----

  // Appends one entry to the audit log (InvalidArgument when it names no job or no actor).
  virtual absl::Status AppendAudit(const v1::AuditEntry& entry) = 0;

  // The newest `limit` (>= 1) entries about `job_id`, oldest first; none for an unknown job.
  virtual absl::StatusOr<std::vector<v1::AuditEntry>> ListAudit(const std::string& job_id,
                                                                int limit) = 0;

  // ---- Metrics ----

  // Appends points of one attempt of one job; returns how many (point, name) values were new.
  // Idempotent on (job, attempt, rank, step, name): a resent value is ignored (first write
  // wins). FailedPrecondition, writing nothing, when `attempt` is not the job's current attempt
  // or a point names another job or attempt.
  virtual absl::StatusOr<int64_t> AppendMetricPoints(
      const std::string& job_id, int64_t attempt, const std::vector<v1::MetricPoint>& points) = 0;

  // Returns the metric history ordered by (step, attempt, rank), one MetricPoint per
  // (attempt, rank, step) with every name recorded for it. See MetricQuery for hiding.
  virtual absl::StatusOr<std::vector<v1::MetricPoint>> ListMetricPoints(
      const MetricQuery& query) = 0;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_STORE_H_
