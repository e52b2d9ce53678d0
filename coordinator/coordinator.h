// Coordinator: the control plane's core, with no gRPC in it (the services in job_service.h and
// worker_service.h are thin adapters). It turns user requests, worker heartbeats and reports
// into durable state (JobStore), placements (Schedule(), scheduler_policy.h) and checkpoints
// (CheckpointFileStore), and publishes every change to the JobEventHub for watchers.
//
// NOTE [what lives where]
//  - Durable (JobStore): jobs, attempts and their placements, workers, checkpoint records,
//    metric points. Everything a worker needs (its assignments, cancellations, which attempts are
//    stale) is derived from it, so a restarted coordinator rebuilds the same answers.
//  - In memory: when each worker last heartbeated (Recover() gives every known worker a fresh
//    timeout, so a coordinator restart does not look like a lost cluster), caches of the active
//    attempts and of the jobs waiting to be placed (rebuilt by Recover(), updated from what
//    every store write returns), and when each restarting job became schedulable.
//
// NOTE [attempt outcomes]
//  A job ends with the result of the worker that runs its rank 0 (it writes the final
//  checkpoint); a failure reported by any worker of the gang fails the attempt at once. A failed
//  attempt restarts (RESTARTING, then a new attempt from the newest checkpoint that verifies)
//  when the failure is retryable and restart_count < max_restarts; otherwise the job FAILS. A
//  cancellation requested by the user wins over everything except success: the job becomes
//  CANCELLED once the gang has stopped, its worker is lost, or the cancel grace period plus one
//  worker timeout has passed.
//
// NOTE [durability]
//  Store writes are durable against a machine crash only after JobStore::Sync() (group commit:
//  coordinator/sqlite_job_store.h). Every public method that changes state calls it after
//  releasing the lock and before returning OK, so nothing the coordinator acknowledges (a
//  submitted job, a result, a committed checkpoint) or hands out (an assignment, a
//  cancellation) can be lost; reads (GetJob, WatchJob) may show a change up to one flush before
//  it is durable. Tick() does not wait: what it wrote reaches a worker only through a heartbeat,
//  which syncs first.
//
// NOTE [worker identity]
//  Results are taken only from a worker the attempt is placed on (success and stops only from the
//  one running rank 0), whatever the credential. A caller bound to a worker id (an issued worker
//  token) additionally: registers and heartbeats only as that id; reports metric points, events
//  and log lines only of the ranks placed on it; uploads only rank 0's checkpoint of an attempt
//  whose rank 0 runs on it, at a step not before the attempt's resume point; fetches only the
//  resume checkpoint and inputs of its own attempts. Anything else is PERMISSION_DENIED naming
//  the worker and the attempt, and changes nothing.
//
// Thread-safety: every public method is thread-safe. One mutex serialises the methods that
// change state; reads go to the store directly. Tick() is called periodically by the daemon
// (every few hundred milliseconds) and by tests after advancing a FakeClock.
//
// Ownership: every pointer passed to the constructor is borrowed and must outlive the
// coordinator; `metrics` may be null.
#ifndef PECO_COORDINATOR_COORDINATOR_H_
#define PECO_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/attempt_outcome.h"
#include "coordinator/checkpoint_file_store.h"
#include "coordinator/checkpoint_ingest.h"
#include "coordinator/cluster_view.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_access.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/job_progress_cache.h"
#include "coordinator/job_store.h"
#include "coordinator/scheduler_policy.h"
#include "coordinator/spec_validator.h"
#include "peco/v1/job_service.pb.h"
#include "peco/v1/worker_service.pb.h"

namespace peco::coordinator {

struct CoordinatorOptions {
  // How often workers heartbeat (sent to them at registration).
  absl::Duration heartbeat_interval = absl::Seconds(2);
  // A worker silent for longer is lost: its attempts fail and restart elsewhere.
  absl::Duration worker_timeout = absl::Seconds(15);
  // Time a cancelled trainer gets to write its final checkpoint before it is killed.
  absl::Duration cancel_grace = absl::Seconds(60);
  // Committed checkpoints kept per job, newest by step, besides every final checkpoint.
  int keep_checkpoints = 3;
  // max_restarts of a spec that does not set it.
  int default_max_restarts = 5;
  // Ended jobs whose latest progress stays cached in memory (ListJobs shows it); older ones are
  // forgotten, oldest first, and GetJob reads their progress back from the store. Bounds the
  // coordinator's memory however many jobs it has run.
  int max_cached_ended_progress = 10000;
  // The most devices one worker may register (a worker claiming more is refused: a fake worker
  // with huge capacity would attract every job).
  int max_worker_gpus = 64;
  int max_worker_cpu_slots = 4096;
  // The most jobs one user (not an admin) may have waiting to start (QUEUED or WAITING); a
  // submission beyond it is ResourceExhausted. 0 = no limit.
  int max_pending_jobs_per_user = 1000;
  SchedulerOptions scheduler;
  SpecLimits spec_limits;

  // Returns InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Who a WorkerService call comes from (auth.h, Caller::bound_worker_id): the worker id an issued
// worker token is bound to, or empty for the primary worker token, which is trusted as any
// worker. A bound caller acts only as that worker and only on the attempts placed on it
// (NOTE [worker identity]).
struct WorkerCaller {
  std::string bound_worker_id;
};

class Coordinator {
 public:
  Coordinator(CoordinatorOptions options, JobStore* store, CheckpointFileStore* checkpoints,
              SpecValidator* validator, Clock* clock, JobEventHub* events,
              CoordinatorMetrics* metrics);
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Loads the workers and active attempts from the store; call once before serving.
  absl::Status Recover();

  // ---- JobService ----
  // Every call acts as `caller` (job_access.h): a user sees and acts on its own jobs, an admin on
  // every job; PermissionDenied otherwise (recorded in the job's audit log, as are submits,
  // cancels and resumes).
  //
  // Errors: InvalidArgument naming the field for a bad spec (nothing is stored), NotFound for a
  // dependency that does not exist, PermissionDenied for a dependency on another user's job,
  // FailedPrecondition for a gang larger than the registered workers could ever host,
  // AlreadyExists for a reused client_request_id with another spec or of another user,
  // ResourceExhausted for a user at max_pending_jobs_per_user (a retry of a submission that
  // was stored still returns its job).
  absl::StatusOr<v1::SubmitJobResponse> SubmitJob(const v1::SubmitJobRequest& request,
                                                  const UserCaller& caller = {});
  // The job, its attempts and its audit log (the newest 100 entries).
  absl::StatusOr<v1::GetJobResponse> GetJob(const v1::GetJobRequest& request,
                                            const UserCaller& caller = {});
  // The caller's jobs (an admin's: every job).
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request,
                                                const UserCaller& caller = {});
  // Idempotent for a job already CANCELLED; FailedPrecondition for one that SUCCEEDED or FAILED.
  absl::StatusOr<v1::CancelJobResponse> CancelJob(const v1::CancelJobRequest& request,
                                                  const UserCaller& caller = {});
  // FailedPrecondition unless the job is FAILED or CANCELLED; InvalidArgument for a checkpoint
  // of another job; FailedPrecondition when the named checkpoint does not verify.
  absl::StatusOr<v1::ResumeJobResponse> ResumeJob(const v1::ResumeJobRequest& request,
                                                  const UserCaller& caller = {});
  absl::StatusOr<v1::ListCheckpointsResponse> ListCheckpoints(
      const v1::ListCheckpointsRequest& request, const UserCaller& caller = {});
  // OK when `caller` may read job `job_id` by `action` ("watch", "logs"): the check of the
  // streaming calls, made before they start. NotFound for an unknown job; PermissionDenied
  // (audited) for another user's.
  absl::Status AuthorizeJobRead(const std::string& job_id, const UserCaller& caller,
                                absl::string_view action);
  absl::StatusOr<v1::ListWorkersResponse> ListWorkers(const v1::ListWorkersRequest& request);
  // The job's history for a watcher: its state changes (from the job and attempt records) and
  // its metric curve (superseded points hidden). The last event is the job's current state.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> JobHistory(const std::string& job_id);
  // Returns the record of a committed checkpoint after verifying every file against its
  // manifest (DataLoss naming the file when one does not match); PermissionDenied (audited) when
  // its job is another user's.
  // With `only` (a download of some files), only those files are verified.
  absl::StatusOr<v1::CheckpointInfo> OpenCheckpoint(const std::string& checkpoint_id,
                                                    const UserCaller& caller = {},
                                                    const std::vector<std::string>& only = {});
  // Reads a chunk of one file of a checkpoint opened with OpenCheckpoint().
  absl::StatusOr<std::string> ReadCheckpointChunk(const v1::CheckpointInfo& info,
                                                  const std::string& file_name, int64_t offset,
                                                  int64_t max_bytes);

  // ---- WorkerService ----
  // InvalidArgument naming the field for bad devices (more than max_worker_gpus/cpu_slots) or
  // ports. A bound caller is registered under its bound id whatever id it asks for (the answer
  // says which).
  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request,
                                                const WorkerCaller& caller = {});
  // NotFound for an unknown worker id (the worker registers again); PermissionDenied when a
  // bound caller heartbeats as another worker. Results of attempts not placed on the worker are
  // ignored (logged).
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request,
                                                  const WorkerCaller& caller = {});
  // Stores metric points and publishes events; reports of an old attempt, or (bound caller) of a
  // rank not placed on the caller, are counted as refused, not errors. Errors only for
  // malformed reports or storage failures.
  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const std::vector<v1::ReportProgressRequest>& reports, const WorkerCaller& caller = {});
  // PermissionDenied when a bound caller may not write this attempt's log (NOTE [worker
  // identity]); the attempt may have ended (its last lines are kept).
  absl::Status CheckLogChunk(const v1::LogChunk& chunk, const WorkerCaller& caller);
  // FailedPrecondition when the header's attempt is not the job's current one or the step is
  // before its resume point; InvalidArgument for a header of another rank than 0;
  // PermissionDenied when a bound caller does not run the attempt's rank 0.
  absl::StatusOr<CheckpointUpload> BeginCheckpointUpload(const v1::CheckpointHeader& header,
                                                         const WorkerCaller& caller = {});
  // OpenCheckpoint for a worker's fetch: a bound caller must be `worker_id` and the checkpoint
  // the resume checkpoint or an input of an attempt placed on it (PermissionDenied otherwise).
  absl::StatusOr<v1::CheckpointInfo> OpenCheckpointForWorker(const std::string& checkpoint_id,
                                                             const std::string& worker_id,
                                                             const WorkerCaller& caller);
  absl::Status AppendCheckpointChunk(const CheckpointUpload& upload,
                                     const v1::CheckpointChunk& chunk);
  // Verifies, commits, records the checkpoint and applies retention. The upload is over
  // whatever this returns.
  absl::StatusOr<v1::CheckpointInfo> CommitCheckpointUpload(const CheckpointUpload& upload,
                                                            const v1::CheckpointManifest& manifest);
  void AbortCheckpointUpload(const CheckpointUpload& upload);

  // ---- Periodic work ----
  // Declares silent workers lost, forces overdue cancellations, runs a scheduling pass and
  // refreshes the gauges. Returns true when the pass stopped at
  // SchedulerOptions::max_placements_per_pass: the caller should tick again soon.
  bool Tick();

  const CoordinatorOptions& options() const { return options_; }

 private:
  // The public mutating methods are these followed by JobStore::Sync() (NOTE [durability]).
  absl::StatusOr<v1::SubmitJobResponse> SubmitJobUnsynced(const v1::SubmitJobRequest& request,
                                                          const UserCaller& caller);
  absl::StatusOr<v1::CancelJobResponse> CancelJobUnsynced(const v1::CancelJobRequest& request,
                                                          const UserCaller& caller);
  absl::StatusOr<v1::ResumeJobResponse> ResumeJobUnsynced(const v1::ResumeJobRequest& request,
                                                          const UserCaller& caller);
  // CheckJobAccess(job, caller); a refusal is recorded in the audit log as `action`.
  absl::Status CheckAccessAudited(const v1::Job& job, const UserCaller& caller,
                                  absl::string_view action);
  // ResourceExhausted when `caller` (not an admin) has max_pending_jobs_per_user jobs waiting to
  // start and `request_id` is none of theirs (a retry is let through to be answered).
  absl::Status CheckPendingQuota(const UserCaller& caller, const std::string& request_id);
  // The job a fork's init_from names (directly or through its checkpoint), once `caller` may
  // read it (PermissionDenied, audited, before anything is read or hashed). NotFound naming the
  // field.
  absl::StatusOr<v1::Job> InitFromJob(const v1::Dependency& from, const UserCaller& caller);
  // The checkpoint a fork starts from (JobSpec.init_from): the one named (its digests verified),
  // or the newest verified checkpoint of the job named. NotFound or FailedPrecondition naming
  // the field. Reads checkpoints: never under mu_; call after InitFromJob.
  absl::StatusOr<v1::CheckpointInfo> ResolveInitFrom(const v1::Dependency& from);
  // Audit() of a state-changing call on `job_id` once it returned `outcome`, unless there is
  // nothing to record (no such job) or the refusal is recorded already (PermissionDenied).
  void AuditChange(const UserCaller& caller, absl::string_view action, const std::string& job_id,
                   const absl::Status& outcome, absl::string_view detail);
  // Appends `action` by `caller` on `job_id` with `outcome` to the audit log; a failure to write
  // it is logged (the call's answer does not change).
  void Audit(const UserCaller& caller, absl::string_view action, const std::string& job_id,
             const absl::Status& outcome, absl::string_view detail = "");
  absl::StatusOr<v1::RegisterResponse> RegisterUnsynced(const v1::RegisterRequest& request,
                                                        const WorkerCaller& caller);
  // Sets *changed when it wrote to the store.
  absl::StatusOr<v1::HeartbeatResponse> HeartbeatUnsynced(const v1::HeartbeatRequest& request,
                                                          const WorkerCaller& caller,
                                                          bool* changed);
  absl::StatusOr<v1::ReportProgressResponse> ReportProgressUnsynced(
      const std::vector<v1::ReportProgressRequest>& reports, const WorkerCaller& caller);
  // Whether `caller` may report for `rank` of the current attempt `attempt` of `job_id` (true for
  // an unbound caller).
  bool MayReportLocked(const WorkerCaller& caller, const std::string& job_id, int64_t attempt,
                       int32_t rank) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns `result` once the store has made everything written so far durable; a failed
  // result acknowledges nothing and is returned as it is.
  template <typename T>
  absl::StatusOr<T> Synced(absl::StatusOr<T> result) {
    if (!result.ok()) return result;
    if (absl::Status synced = store_->Sync(); !synced.ok()) return synced;
    return result;
  }

  // Moves a job to `state`, publishes the change and keeps the caches in step.
  // `cause` is recorded on the attempt when the change ends it (v1::Attempt.cause).
  absl::StatusOr<v1::Job> TransitionLocked(const v1::Job& job, v1::JobState state,
                                           const std::string& reason, const std::string& cause = "")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the current attempt of `job_id` (NOTE [attempt outcomes]; the decision is
  // DecideAttemptOutcome's, attempt_outcome.h). `restart_reason` labels
  // the restart metric (worker_lost, trainer_failed); `cause` is recorded on the attempt.
  absl::Status EndAttemptLocked(const std::string& job_id, int64_t attempt, AttemptEnd end,
                                bool retryable, const std::string& reason,
                                const std::string& restart_reason, const std::string& cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Where each restarting job resumes: job id -> (checkpoint id, step); ("", 0) = from scratch.
  using ResumePoints = std::map<std::string, std::pair<std::string, int64_t>>;

  // One scheduling pass. A RESTARTING job that resumes from its newest checkpoint is placed only
  // when `resume_points` has its entry (ChooseResumePoints(), run without the lock).
  absl::Status ScheduleLocked(const ResumePoints& resume_points) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The next attempt of `job` on `placement`, ready for the store (its resume point, its inputs
  // from dependency_inputs.h, its rendezvous port); nullopt when the job failed instead (its
  // dependency left no checkpoint). `ports_taken` holds the rendezvous ports
  // chosen earlier in the same pass, per rank-0 worker; the chosen one is added.
  absl::StatusOr<std::optional<NewAttempt>> PrepareAttemptLocked(
      const v1::Job& job, const Placement& placement, const ResumePoints& resume_points,
      std::map<std::string, std::set<int32_t>>* ports_taken) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts `attempts` in one store transaction and records every one that started (caches,
  // metrics, events). Returns the first refusal, if any.
  absl::Status StartAttemptsLocked(const std::vector<NewAttempt>& attempts)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The newest checkpoint of every RESTARTING job without a named one that verifies. Reads
  // checkpoints whole: call without mu_.
  ResumePoints ChooseResumePoints() ABSL_LOCKS_EXCLUDED(mu_);
  void SweepWorkersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForceOverdueCancellationsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves an ASSIGNED attempt to RUNNING when a report or heartbeat shows it runs. Returns
  // whether it tried (the store may have been written).
  bool MarkRunningLocked(const std::string& job_id, int64_t attempt)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings the in-memory views (pending_, the cluster view's active attempts) in step with
  // `job`, the store's record of it after a write.
  void RefreshActiveLocked(const v1::Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishState(const v1::Job& job, const std::string& reason);
  int MaxRestarts(const v1::Job& job) const;
  int64_t NowMicros() const;

  const CoordinatorOptions options_;
  JobStore* const store_;
  SpecValidator* const validator_;
  Clock* const clock_;
  JobEventHub* const events_;
  CoordinatorMetrics* const metrics_;

  absl::Mutex mu_;
  // Workers, active attempts, devices held and ports used (cluster_view.h).
  ClusterView cluster_ ABSL_GUARDED_BY(mu_);
  // Jobs a scheduling pass considers (QUEUED, WAITING, RESTARTING), as the store has them:
  // passes read this instead of scanning the store's job table.
  std::map<std::string, v1::Job> pending_ ABSL_GUARDED_BY(mu_);
  // Upload sessions, checkpoint records, retention and verified reads (checkpoint_ingest.h).
  CheckpointIngest ingest_;
  // Latest progress per job (Job.progress); its own lock so reads never wait for mu_.
  JobProgressCache progress_;
  // Whether the last scheduling pass stopped at max_placements_per_pass.
  bool last_pass_capped_ ABSL_GUARDED_BY(mu_) = false;
  // When a RESTARTING job became schedulable.
  std::map<std::string, absl::Time> pending_since_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_COORDINATOR_H_
