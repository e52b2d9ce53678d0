// WorkerAgent: the testable core of peco-worker (docs/SERVICE.md "Attempts on a worker",
// DESIGN.md section 2). It owns everything the daemon does except flags, signals, the gRPC
// channel and the metrics endpoint:
//
//  - registration (the worker id is kept across re-registrations and persisted in
//    `<work_dir>/worker.id`) and the heartbeat exchange: running attempts, free devices and
//    finished AttemptResults out; assignments, cancellations and stale attempts in;
//  - one TrainerSupervisor per attempt it runs, in `<work_dir>/jobs/<job>/attempt-<n>/`
//    (config.yaml, run/, logs/, resume/);
//  - the progress relay: each `step` event becomes a MetricPoint, every other event a
//    TrainerEvent, and what the ranks append to their logs LogChunks (LogTailer), buffered
//    (ReportBuffer) and resent until the coordinator acknowledges them;
//  - the checkpoint outbox: rank 0's `checkpoint` events are hard-linked into
//    `<work_dir>/outbox/` at once and uploaded with retry and backoff; FAILED_PRECONDITION (a
//    stale attempt) drops the upload;
//  - outcomes: once every local rank has exited *and* the attempt's uploads have finished, an
//    AttemptResult is repeated in heartbeats until one succeeds.
//
// NOTE [agent driving]: nothing here sleeps or starts threads of its own (the supervisors own
// their reader threads). The daemon calls Tick() from a control loop (heartbeats, reports,
// supervisor polling; never a bulk transfer) and TransferOnce() from a transfer loop (checkpoint
// uploads and resume fetches, which may take minutes), so a long upload never delays a
// heartbeat. Every time-based decision reads the injected Clock: tests use a FakeClock and call
// Tick()/TransferOnce() themselves.
//
// Exit causes (AttemptResult.cause) of the deciding rank: "exit" (an exit code, also used for
// success), "signal" (a signal the worker did not send, other than SIGKILL), "oom" (a SIGKILL
// the worker did not send: the kernel's out-of-memory killer), "stall" (killed for making no
// progress), "launch" (could not start: bad assignment, no free devices, fetch or spawn
// failure), "cancel" (stopped or killed after a cancellation or the worker's shutdown),
// "upload" (the trainers succeeded but the coordinator refused the final checkpoint for good:
// a retryable failure, since dependents must not silently read an older checkpoint).
//
// Usage (the daemon):
//   WorkerAgent agent(options, &client, &launcher, RealClock::Get(), &metrics);
//   RETURN_IF_ERROR(agent.Init());
//   control thread:  while (!stop) { agent.Tick(); sleep(tick); }
//   transfer thread: while (!stop) { if (!agent.TransferOnce()) sleep(tick); }
//   on SIGTERM:      agent.BeginShutdown(grace); ... until agent.ShutdownComplete() or deadline.
//
// Ownership: `client`, `launcher`, `clock` and `metrics` (nullable) are borrowed and must outlive
// the agent. The agent owns its supervisors; destroying it SIGKILLs every trainer still running.
// Thread-safety: Tick() and TransferOnce() may run concurrently with each other, each from one
// thread at a time; every other method may be called from any thread. Coordinator calls are
// never made with the agent's lock held.
#ifndef PECO_WORKER_WORKER_AGENT_H_
#define PECO_WORKER_WORKER_AGENT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/process_launcher.h"
#include "peco/v1/worker_service.pb.h"
#include "worker/checkpoint_outbox.h"
#include "worker/coordinator_client.h"
#include "worker/coordinator_session.h"
#include "worker/device_ledger.h"
#include "worker/report_buffer.h"
#include "worker/trainer_supervisor.h"
#include "worker/worker_metrics.h"

namespace peco::worker {

struct WorkerAgentOptions {
  // Directory for attempts, the outbox and worker.id. Required.
  std::string work_dir;
  // Id to register with; empty uses `<work_dir>/worker.id` when present, else Init() chooses one
  // ("worker-" and 12 random hex digits) and writes it there before registering, so a retried
  // Register (its answer lost) keeps the id. The coordinator's answer wins if it differs.
  std::string worker_id;
  // Address other ranks reach this machine at (advertised; rank 0's c10d store listens here).
  std::string host = "127.0.0.1";
  // Devices this worker offers.
  int gpus = 0;
  int cpu_slots = 1;
  // Ports the coordinator may pick MASTER_PORT from when rank 0 runs here (inclusive).
  int first_port = 29500;
  int last_port = 29599;
  // Program (and leading arguments) that runs one rank (TrainerSupervisorOptions).
  std::vector<std::string> trainer_command = {"peco-train"};
  // Directories trainers may read besides the work directory (which holds the checkpoints
  // fetched for them); peco-train checks the resolved paths (`--allowed_roots`). Empty leaves
  // trainers unconfined.
  std::vector<std::string> allowed_roots;

  // Heartbeat period; zero uses the coordinator's heartbeat_interval_ms (5 s if it sends none).
  absl::Duration heartbeat_interval = absl::ZeroDuration();
  // Backoff between failed Register calls (doubling up to the maximum).
  absl::Duration register_initial_backoff = absl::Seconds(1);
  absl::Duration register_max_backoff = absl::Seconds(30);
  // How long to wait before resending reports after a failed ReportProgress.
  absl::Duration report_retry_interval = absl::Seconds(2);
  // Progress reports kept while the coordinator does not acknowledge them (oldest dropped).
  int report_buffer_capacity = 100000;
  // Reports per ReportProgress stream.
  int report_batch_size = 1000;
  // Backoff between tries of a checkpoint upload (doubling up to the maximum).
  absl::Duration upload_initial_backoff = absl::Seconds(1);
  absl::Duration upload_max_backoff = absl::Minutes(1);
  // Tries of a resume fetch that fails with a retryable code before the attempt fails.
  int fetch_max_tries = 5;
  // Tries of a checkpoint upload that fails with a retryable code (an unreachable coordinator,
  // a transfer past its timeout) before it is dropped: the attempt's result then goes out
  // instead of waiting forever, and a dropped final checkpoint fails the attempt retryably.
  int upload_max_tries = 30;

  // Passed to every TrainerSupervisor (see TrainerSupervisorOptions).
  absl::Duration startup_timeout = absl::Minutes(10);
  absl::Duration stall_timeout_floor = absl::Minutes(5);
  double stall_timeout_factor = 10.0;
  // SIGQUIT to a stalled trainer (a stack dump in its log), SIGKILL this long after.
  absl::Duration stack_dump_grace = absl::Seconds(3);
  absl::Duration drain_timeout = absl::Seconds(30);

  // Receives one readable line per notable event (registration, assignments, exits, uploads).
  // Called from the agent's driving threads and the trainers' reader threads, possibly at the
  // same time: it must be thread-safe. Empty: a line on stderr.
  std::function<void(absl::string_view)> log;

  // Returns InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// What the agent knows about one attempt (for tests and status pages).
struct AgentAttemptStatus {
  std::string job_id;
  int64_t attempt = 0;
  std::vector<int> ranks;
  // "fetching" (resume checkpoint), "running", "finishing" (uploads pending) or "done" (result
  // waiting for a successful heartbeat).
  std::string phase;
  std::string resume_dir;
  std::optional<v1::AttemptResult> result;
};

class WorkerAgent : private TrainerEventSink {
 public:
  WorkerAgent(WorkerAgentOptions options, CoordinatorClient* client, ProcessLauncher* launcher,
              Clock* clock, WorkerMetrics* metrics);
  WorkerAgent(const WorkerAgent&) = delete;
  WorkerAgent& operator=(const WorkerAgent&) = delete;
  ~WorkerAgent() override;

  // Validates the options, creates the work directory and reads a persisted worker id. Call once
  // before anything else. Errors: the options' InvalidArgument; Internal when the work
  // directory cannot be created or worker.id cannot be read.
  absl::Status Init();

  // One control step: registers when needed (with backoff), launches attempts whose resume
  // checkpoint arrived, polls the supervisors, turns finished attempts into results, sends
  // buffered reports, heartbeats when due and applies the response. After BeginShutdown() it no
  // longer registers or heartbeats.
  void Tick();

  // One transfer step: fetches one due resume checkpoint and uploads one due checkpoint. Returns
  // whether it transferred anything (the daemon sleeps when not).
  bool TransferOnce();

  // Stops the worker gracefully: no more heartbeats or registrations, every attempt is
  // cancelled with `grace` before SIGKILL (trainers write a final checkpoint), pending uploads
  // and reports continue. Callable from any thread; a second call changes nothing.
  void BeginShutdown(absl::Duration grace);

  // Returns true after BeginShutdown() once every trainer has exited and every upload and report
  // has been sent or dropped.
  bool ShutdownComplete() const;

  // Returns the worker id (known from Init() on).
  std::string worker_id() const;
  // Returns whether the last Register succeeded and no heartbeat has since been answered
  // NOT_FOUND.
  bool registered() const;
  // Returns every attempt the agent holds, ordered by (job, attempt).
  std::vector<AgentAttemptStatus> attempts() const;
  // Returns the devices not held by running attempts.
  v1::WorkerDevices free_devices() const;
  // Returns the number of buffered reports and of queued checkpoint uploads.
  size_t buffered_reports() const { return reports_.size(); }
  int pending_uploads() const { return outbox_.Pending(); }

 private:
  struct Attempt;
  using AttemptKey = std::pair<std::string, int64_t>;  // (job id, attempt number)

  // TrainerEventSink (called on supervisor reader threads).
  void OnEvent(const TrainerEvent& event) override;

  void Log(absl::string_view message) const;
  void TryRegister(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  void TryHeartbeat(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  void FlushReports(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  void ApplyAssignment(const v1::Assignment& assignment, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyCancellation(const v1::Cancellation& cancellation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Kills the attempts in `stale` at once and forgets them: no result, no reports, no uploads.
  void KillStale(const google::protobuf::RepeatedPtrField<v1::RunningRanks>& stale)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Starts the attempt's ranks (its resume checkpoint, if any, is in place).
  void LaunchLocked(Attempt& attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends an attempt that never ran its trainers.
  void FailBeforeLaunchLocked(Attempt& attempt, std::string reason, bool retryable,
                              const std::string& cause) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Polls supervisors and moves attempts through running -> finishing -> done.
  void AdvanceAttemptsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::AttemptResult BuildResultLocked(const Attempt& attempt) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds what the attempt's ranks appended to their logs to the reports; `at_end` (every rank
  // has exited) sends everything, unfinished last lines included.
  void RelayLogsLocked(Attempt& attempt, bool at_end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseDevicesLocked(Attempt& attempt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<v1::RunningRanks> RunningLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::WorkerDevices FreeDevicesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::WorkerInfo WorkerInfoLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool FetchOnce(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  bool UploadOnce(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  void UpdateMetrics() ABSL_LOCKS_EXCLUDED(mu_);
  std::string AttemptDir(const std::string& job_id, int64_t attempt) const;

  // Const after construction (and after Init() for options_.worker_id).
  WorkerAgentOptions options_;
  CoordinatorClient* const client_;
  ProcessLauncher* const launcher_;
  Clock* const clock_;
  WorkerMetrics* const metrics_;

  // Internally synchronised.
  ReportBuffer reports_;
  CheckpointOutbox outbox_;

  mutable absl::Mutex mu_;
  // The coordinator session (id, registration, heartbeat schedule) and the free devices; both
  // set up by Init().
  std::optional<CoordinatorSession> session_ ABSL_GUARDED_BY(mu_);
  std::optional<DeviceLedger> devices_ ABSL_GUARDED_BY(mu_);
  bool reports_failing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_report_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration shutdown_grace_ ABSL_GUARDED_BY(mu_);
  std::map<AttemptKey, std::unique_ptr<Attempt>> attempts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::worker

#endif  // PECO_WORKER_WORKER_AGENT_H_
