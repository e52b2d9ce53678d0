// Runs one attempt of one job's local ranks as `peco-train` processes and decides its outcome.
//
// For each local rank the supervisor launches
//   <trainer_command...> <kind> --config <file> --output_dir <dir> [--resume <dir>]
// with torchrun's environment (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE) plus PECO_JOB_ID and PECO_ATTEMPT. A reader thread per rank parses the
// rank's stdout (newline-delimited JSON events, docs/TRAINER.md) and forwards each event,
// tagged (job, attempt, rank), to a TrainerEventSink. Lines that are not JSON objects are
// counted, forwarded to the sink's OnUnparsedLine and appended to the rank's log; never fatal.
//
// NOTE [supervisor time]: every time-based decision (stall detection, the SIGKILL deadline
// after Cancel, giving up on a dead rank's pipe) happens in Poll(), which the daemon calls
// periodically and which reads the injected Clock. Tests drive a FakeClock and call Poll(), so
// no test depends on wall-clock timing.
//
// The gang fails together: when one rank exits unsuccessfully or stalls, the other ranks are
// SIGKILLed at once (survivors of a broken gang cannot make progress; the restart point is the
// last verified checkpoint, not their state).
//
// Outcome, once every rank has exited and its stdout is drained:
//   SUCCEEDED  every rank exited 0 after a `completed` event;
//   STOPPED    every rank exited 0 after `completed` or `stopped`, at least one `stopped`
//              (the normal result of Cancel());
//   FAILED     otherwise, with a reason and whether a restart may help: exit code 2 (bad
//              configuration) and 3 (non-finite loss) are not retryable; other exit codes,
//              signals, stalls and exit 0 without a final event are. After Cancel() nothing
//              is retryable (the caller asked for the stop): a rank SIGKILLed because it
//              outlived the grace period, or one that exited non-zero, fails for good.
#ifndef PECO_WORKER_TRAINER_SUPERVISOR_H_
#define PECO_WORKER_TRAINER_SUPERVISOR_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/json_line.h"
#include "common/process_launcher.h"

namespace peco::worker {

// Where an event or line came from.
struct TrainerTag {
  std::string job_id;
  int64_t attempt = 0;
  int rank = 0;        // global rank
  int local_rank = 0;  // index among this worker's ranks
};

// One progress event printed by a trainer rank.
struct TrainerEvent {
  TrainerTag tag;
  std::string type;  // the "event" field: start, step, checkpoint, completed, stopped, error...
  std::string json;  // the line as printed (without the newline)
  absl::Time received;
  // Top-level scalar fields; nested objects and lists are only in `json`.
  JsonFields fields;

  // A field converted to the requested type, or std::nullopt when it is absent or does not
  // convert.
  std::optional<std::string> String(absl::string_view key) const { return fields.String(key); }
  std::optional<double> Number(absl::string_view key) const { return fields.Number(key); }
  std::optional<int64_t> Int(absl::string_view key) const { return fields.Int(key); }
  std::optional<bool> Bool(absl::string_view key) const { return fields.Bool(key); }
};

// Parses one stdout line. Returns std::nullopt unless the line is a JSON object with a string
// "event" field. `tag` and `received` are copied into the result.
std::optional<TrainerEvent> ParseTrainerEventLine(absl::string_view line, const TrainerTag& tag,
                                                  absl::Time received);

// Receives what the trainers print.
//
// Thread-safety: called from the supervisor's reader threads, but never concurrently (the
// supervisor serialises the calls). Events of one rank arrive in the order printed; events of
// different ranks interleave. Implementations must not block for long (a rank whose pipe is
// not read stalls) and may call the supervisor's const accessors and Cancel(), nothing else.
class TrainerEventSink {
 public:
  TrainerEventSink() = default;
  TrainerEventSink(const TrainerEventSink&) = delete;
  TrainerEventSink& operator=(const TrainerEventSink&) = delete;
  virtual ~TrainerEventSink() = default;

  // Receives one parsed event.
  virtual void OnEvent(const TrainerEvent& event) = 0;
  // Receives a stdout line that is not a JSON event (already counted and logged).
  virtual void OnUnparsedLine(const TrainerTag& tag, absl::string_view line) {}
};

struct TrainerSupervisorOptions {
  // Program (and leading arguments) that runs one rank; the per-attempt arguments are
  // appended. Tests use {"/bin/sh", "-c", SCRIPT, "peco-train"}.
  std::vector<std::string> trainer_command = {"peco-train"};
  std::string job_id;
  int64_t attempt = 0;
  // contrastive, tokenizer, pretrain, finetune or linear_probe.
  std::string kind;
  std::string config_path;
  std::string output_dir;
  // Run directory to resume from (`--resume`); empty starts fresh.
  std::string resume_dir;
  // Config overrides "dotted.field=value", each passed as `--set` (for example the directory of
  // a fetched dependency checkpoint: `tokenizer.checkpoint=/work/.../inputs/ID`).
  std::vector<std::string> config_overrides;
  // Directories the ranks may read (`--allowed_roots`: peco-train resolves every path its config
  // reads and refuses one outside them); empty leaves the ranks unconfined.
  std::vector<std::string> allowed_roots;
  // Directory the ranks start in; empty keeps the daemon's.
  std::string working_dir;
  // Each rank's stderr (and the non-JSON stdout lines) go to
  // <log_dir>/attempt-<attempt>-rank-<rank>.log; empty leaves stderr as the daemon's.
  std::string log_dir;

  // Rendezvous (torchrun conventions).
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int world_size = 1;
  // Global ranks run by this worker, in local-rank order; distinct, each < world_size.
  std::vector<int> ranks = {0};
  // Extra "NAME=value" environment entries for every rank (after the ones above).
  std::vector<std::string> extra_env;

  // Stall detection: a rank that prints no step or checkpoint event for longer than its
  // timeout is stalled. Before its first step the timeout is `startup_timeout` (data loading,
  // model building); afterwards max(stall_timeout_floor, stall_timeout_factor * median of the
  // recent intervals between step events of all ranks).
  absl::Duration startup_timeout = absl::Minutes(10);
  absl::Duration stall_timeout_floor = absl::Minutes(5);
  double stall_timeout_factor = 10.0;
  // How many recent step intervals the median is taken over.
  int step_interval_window = 64;
  // A stalled gang is first sent SIGQUIT (peco-train then writes every thread's stack to its
  // log, common/stack_dump.h) and SIGKILLed this long after; zero kills at once.
  absl::Duration stack_dump_grace = absl::Seconds(3);
  // How long after a rank has exited its stdout may stay open (a leftover grandchild outside
  // its process group) before the supervisor stops waiting for it.
  absl::Duration drain_timeout = absl::Seconds(30);

  // Returns InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Final result of an attempt.
struct AttemptOutcome {
  enum class Result { kSucceeded, kStopped, kFailed };
  Result result = Result::kFailed;
  // Why it failed ("rank 1 exited with exit code 1: <error message>"); empty otherwise.
  std::string reason;
  // Whether restarting the gang (from its last checkpoint) may help. False unless kFailed.
  bool retryable = false;
  // Global rank whose failure decided the outcome; -1 when none.
  int failed_rank = -1;
  // Whether Cancel() was called before the outcome was known.
  bool cancel_requested = false;
};

// Returns "SUCCEEDED", "STOPPED" or "FAILED".
const char* AttemptResultName(AttemptOutcome::Result result);

// What the supervisor knows about one rank (for heartbeats and metrics).
struct RankStatus {
  TrainerTag tag;
  pid_t pid = -1;
  bool running = false;            // launched and not yet reaped
  std::optional<ExitStatus> exit;  // once reaped
  int64_t last_step = -1;          // from the last step event; -1 before the first
  absl::Time last_progress;        // launch time until the first step/checkpoint/heartbeat event
  std::string last_event;          // type of the last event
  std::string error_message;       // message of the last `error` event
  int64_t events = 0;
  int64_t unparsed_lines = 0;
  bool stalled = false;
};

// Supervises one attempt. Create, Start(), call Poll() periodically until it returns true,
// then read outcome(); Cancel() asks for a graceful stop at any time.
//
//   TrainerSupervisor supervisor(options, &launcher, RealClock::Get(), &sink);
//   RETURN_IF_ERROR(supervisor.Start());
//   while (!supervisor.Poll()) absl::SleepFor(absl::Milliseconds(200));
//   AttemptOutcome outcome = *supervisor.outcome();
//
// Ownership: `launcher`, `clock` and `sink` are borrowed and must outlive the supervisor.
// The supervisor owns the processes and reader threads; destroying it SIGKILLs every rank
// still running and joins the threads.
// Thread-safety: all methods may be called from any thread; Poll() and Start() are meant for
// one driving thread. The sink is never called with the supervisor's lock held.
class TrainerSupervisor {
 public:
  TrainerSupervisor(TrainerSupervisorOptions options, ProcessLauncher* launcher, Clock* clock,
                    TrainerEventSink* sink);
  TrainerSupervisor(const TrainerSupervisor&) = delete;
  TrainerSupervisor& operator=(const TrainerSupervisor&) = delete;
  ~TrainerSupervisor();

  // The log file of global rank `rank` (see TrainerSupervisorOptions::log_dir); empty when
  // log_dir is.
  std::string LogPath(int rank) const;

  // Validates the options and launches every local rank. On a launch failure the ranks
  // already started are killed, the outcome becomes FAILED (retryable) and the launch error is
  // returned. Errors: the options' InvalidArgument; FailedPrecondition when called twice or
  // when the log directory cannot be used; the launcher's errors, with context.
  absl::Status Start();

  // Reaps exited ranks, detects stalls, enforces the Cancel() deadline, and decides the
  // outcome once every rank has exited and been drained. Returns true once the outcome is
  // known (whenever outcome() has a value, including after a failed Start()).
  bool Poll();

  // Asks every running rank to stop: SIGTERM now (trainers write a final checkpoint and print
  // `stopped`), SIGKILL from the first Poll() at or after now + `grace`. A second call can only
  // bring the deadline forward. No effect before Start() or once the outcome is known.
  void Cancel(absl::Duration grace);

  // Returns the outcome once known.
  std::optional<AttemptOutcome> outcome() const;

  // Returns a snapshot of every rank, in local-rank order.
  std::vector<RankStatus> GetRankStatuses() const;

  // Returns the stall timeout that applies now to a rank that has already made a step.
  absl::Duration CurrentStallTimeout() const;

 private:
  struct Rank;
  enum class Cause { kNone, kExit, kStall, kCancelKill, kInternal };

  void ReadLoop(Rank* rank);
  void HandleLine(Rank* rank, absl::string_view line);
  // Records the first failure of the gang and SIGKILLs every running rank (a stall: SIGQUITs
  // them, and Poll() kills them after options_.stack_dump_grace).
  void FailGangLocked(Rank* rank, Cause cause, std::string detail)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KillAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration StallTimeoutLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  AttemptOutcome DecideLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Const after construction.
  const TrainerSupervisorOptions options_;
  ProcessLauncher* const launcher_;
  Clock* const clock_;
  TrainerEventSink* const sink_;

  // Serialises sink calls; never held together with mu_.
  absl::Mutex sink_mu_;

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // Ranks are created in Start() and never removed; the vector does not change after Start().
  std::vector<std::unique_ptr<Rank>> ranks_ ABSL_GUARDED_BY(mu_);
  std::deque<absl::Duration> step_intervals_ ABSL_GUARDED_BY(mu_);
  bool cancel_requested_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time cancel_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  Cause failure_cause_ ABSL_GUARDED_BY(mu_) = Cause::kNone;
  int failure_index_ ABSL_GUARDED_BY(mu_) = -1;  // local index of the failed rank
  std::string failure_detail_ ABSL_GUARDED_BY(mu_);
  // When the ranks of a stalled gang, asked for their stacks, are killed.
  absl::Time kill_after_dump_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::optional<AttemptOutcome> outcome_ ABSL_GUARDED_BY(mu_);

  // Readers poll this pipe's read end; closing the write end (destructor) wakes them all.
  int wake_read_fd_ = -1;
  int wake_write_fd_ = -1;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_TRAINER_SUPERVISOR_H_
