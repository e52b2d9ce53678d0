#include "worker/trainer_supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "service/job_kinds.h"
#include "worker/trainer_environment.h"

extern char** environ;

namespace peco::worker {
namespace {

// Longest stdout line kept whole; longer ones are cut and counted as unparsed.
constexpr size_t kMaxLineBytes = 1 << 20;

}  // namespace

// One local rank. `tag`, `process`, `reader` and `log` are set in Start() and constant
// afterwards (`log` is written only by the reader thread); the rest is guarded by the
// supervisor's mu_.
struct TrainerSupervisor::Rank {
  TrainerTag tag;
  std::unique_ptr<Process> process;
  std::thread reader;
  std::FILE* log = nullptr;

  RankStatus status;
  bool eof = false;
  bool killed = false;
  bool finished_cleanly = false;  // printed `completed` or `stopped`
  bool completed = false;
  absl::Time exited_at = absl::InfinitePast();
  std::optional<absl::Time> last_step_time;
};

std::optional<TrainerEvent> ParseTrainerEventLine(absl::string_view line, const TrainerTag& tag,
                                                  absl::Time received) {
  std::optional<JsonFields> fields = ParseJsonObjectLine(line);
  if (!fields) return std::nullopt;
  std::optional<std::string> type = fields->String("event");
  if (!type || type->empty()) return std::nullopt;
  TrainerEvent event;
  event.type = *type;
  event.fields = *std::move(fields);
  event.json = std::string(absl::StripAsciiWhitespace(line));
  event.tag = tag;
  event.received = received;
  return event;
}

const char* AttemptResultName(AttemptOutcome::Result result) {
  switch (result) {
    case AttemptOutcome::Result::kSucceeded:
      return "SUCCEEDED";
    case AttemptOutcome::Result::kStopped:
      return "STOPPED";
    case AttemptOutcome::Result::kFailed:
      return "FAILED";
  }
  return "FAILED";
}

absl::Status TrainerSupervisorOptions::Validate() const {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("supervisor options: ", field, ": ", why));
  };
  if (trainer_command.empty() || trainer_command[0].empty()) {
    return bad("trainer_command", "must name a program");
  }
  if (job_id.empty()) return bad("job_id", "must not be empty");
  if (attempt < 0) return bad("attempt", "must be >= 0");
  if (!service::JobKindFromName(kind).has_value()) {
    return bad("kind", absl::StrCat("'", kind, "' is not one of ", service::KnownJobKindNames()));
  }
  if (config_path.empty()) return bad("config_path", "must not be empty");
  if (output_dir.empty()) return bad("output_dir", "must not be empty");
  if (master_addr.empty()) return bad("master_addr", "must not be empty");
  if (master_port < 1 || master_port > 65535) return bad("master_port", "must be in [1, 65535]");
  if (world_size < 1) return bad("world_size", "must be >= 1");
  if (ranks.empty()) return bad("ranks", "must list at least one rank");
  std::set<int> seen;
  for (int rank : ranks) {
    if (rank < 0 || rank >= world_size) {
      return bad("ranks", absl::StrCat("rank ", rank, " is outside [0, ", world_size, ")"));
    }
    if (!seen.insert(rank).second) return bad("ranks", absl::StrCat("rank ", rank, " repeats"));
  }
  for (const std::string& entry : config_overrides) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos || eq == 0) {
      return bad("config_overrides", absl::StrCat("'", entry, "' is not field=value"));
    }
  }
  for (const std::string& entry : extra_env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=') {
      return bad("extra_env", absl::StrCat("'", entry, "' is not NAME=value"));
    }
  }
  if (startup_timeout <= absl::ZeroDuration()) return bad("startup_timeout", "must be > 0");
  if (stall_timeout_floor <= absl::ZeroDuration()) {
    return bad("stall_timeout_floor", "must be > 0");
  }
  if (!(stall_timeout_factor >= 1.0)) return bad("stall_timeout_factor", "must be >= 1");
  if (step_interval_window < 1) return bad("step_interval_window", "must be >= 1");
  if (stack_dump_grace < absl::ZeroDuration()) return bad("stack_dump_grace", "must be >= 0");
  if (drain_timeout < absl::ZeroDuration()) return bad("drain_timeout", "must be >= 0");
  return absl::OkStatus();
}

TrainerSupervisor::TrainerSupervisor(TrainerSupervisorOptions options, ProcessLauncher* launcher,
                                     Clock* clock, TrainerEventSink* sink)
    : options_(std::move(options)), launcher_(launcher), clock_(clock), sink_(sink) {}

TrainerSupervisor::~TrainerSupervisor() {
  std::vector<std::unique_ptr<Rank>> ranks;
  {
    absl::MutexLock lock(&mu_);
    KillAllLocked();
    ranks.swap(ranks_);
  }
  if (wake_write_fd_ >= 0) ::close(wake_write_fd_);  // wakes every reader
  for (auto& rank : ranks) {
    if (rank->reader.joinable()) rank->reader.join();
  }
  for (auto& rank : ranks) {
    if (rank->log != nullptr) std::fclose(rank->log);
    rank->process.reset();  // reaps (SIGKILLing first if still running)
  }
  if (wake_read_fd_ >= 0) ::close(wake_read_fd_);
}

std::string TrainerSupervisor::LogPath(int rank) const {
  if (options_.log_dir.empty()) return "";
  return absl::StrCat(options_.log_dir, "/attempt-", options_.attempt, "-rank-", rank, ".log");
}

absl::Status TrainerSupervisor::Start() {
  RETURN_IF_ERROR(options_.Validate());
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  if (started_) return absl::FailedPreconditionError("supervisor already started");
  started_ = true;
  const std::string job = absl::StrCat("job ", options_.job_id, " attempt ", options_.attempt);
  if (!options_.log_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(options_.log_dir, error);
    if (error) {
      outcome_ = AttemptOutcome{AttemptOutcome::Result::kFailed,
                                "cannot create log directory " + options_.log_dir, true};
      return absl::FailedPreconditionError(absl::StrCat(job, ": cannot create log directory ",
                                                        options_.log_dir, ": ", error.message()));
    }
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    outcome_ = AttemptOutcome{AttemptOutcome::Result::kFailed, "pipe failed", true};
    return absl::InternalError(absl::StrCat(job, ": pipe failed"));
  }
  wake_read_fd_ = fds[0];
  wake_write_fd_ = fds[1];

  const int local_world_size = static_cast<int>(options_.ranks.size());
  for (int local = 0; local < local_world_size; ++local) {
    const int global = options_.ranks[local];
    LaunchSpec spec;
    spec.argv = options_.trainer_command;
    spec.argv.insert(spec.argv.end(), {options_.kind, "--config", options_.config_path,
                                       "--output_dir", options_.output_dir});
    if (!options_.resume_dir.empty()) {
      spec.argv.insert(spec.argv.end(), {"--resume", options_.resume_dir});
    }
    for (const std::string& entry : options_.config_overrides) {
      spec.argv.insert(spec.argv.end(), {"--set", entry});
    }
    if (!options_.allowed_roots.empty()) {
      spec.argv.insert(spec.argv.end(),
                       {"--allowed_roots", absl::StrJoin(options_.allowed_roots, ",")});
    }
    // Not the worker's whole environment: what trainers need from it, then the explicit values.
    spec.inherit_environment = false;
    spec.env = InheritedTrainerEnvironment(environ);
    spec.env.insert(
        spec.env.end(),
        {
            absl::StrCat("MASTER_ADDR=", options_.master_addr),
            absl::StrCat("MASTER_PORT=", options_.master_port),
            absl::StrCat("RANK=", global),
            absl::StrCat("WORLD_SIZE=", options_.world_size),
            absl::StrCat("LOCAL_RANK=", local),
            absl::StrCat("LOCAL_WORLD_SIZE=", local_world_size),
            absl::StrCat("PECO_JOB_ID=", options_.job_id),
            absl::StrCat("PECO_ATTEMPT=", options_.attempt),
            // Jobs share this worker's cores: trainers wait passively (trainer/engine/runtime.h).
            "PECO_SHARED_CORES=1",
        });
    spec.env.insert(spec.env.end(), options_.extra_env.begin(), options_.extra_env.end());
    spec.working_dir = options_.working_dir;
    if (!options_.log_dir.empty()) spec.stderr_path = LogPath(global);

    absl::StatusOr<std::unique_ptr<Process>> process = launcher_->Launch(spec);
    if (!process.ok()) {
      KillAllLocked();
      std::string reason =
          absl::StrCat("launching rank ", global, ": ", process.status().message());
      AttemptOutcome failed;
      failed.reason = reason;
      failed.retryable = true;
      failed.failed_rank = global;
      outcome_ = failed;
      return absl::Status(process.status().code(), absl::StrCat(job, ": ", reason));
    }
    auto rank = std::make_unique<Rank>();
    rank->tag = TrainerTag{options_.job_id, options_.attempt, global, local};
    rank->process = *std::move(process);
    if (!options_.log_dir.empty()) rank->log = std::fopen(LogPath(global).c_str(), "a");
    rank->status.tag = rank->tag;
    rank->status.pid = rank->process->pid();
    rank->status.running = true;
    rank->status.last_progress = now;
    Rank* raw = rank.get();
    ranks_.push_back(std::move(rank));
    raw->reader = std::thread([this, raw] { ReadLoop(raw); });
  }
  return absl::OkStatus();
}

void TrainerSupervisor::ReadLoop(Rank* rank) {
  const int fd = rank->process->stdout_fd();
  std::string buffer;
  bool discarding = false;  // inside an over-long line
  char chunk[64 * 1024];
  while (true) {
    pollfd fds[2] = {{fd, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    int ready = ::poll(fds, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) return;  // the supervisor is going away
    if (fds[0].revents == 0) continue;
    ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buffer.find('\n', start)) != std::string::npos; start = nl + 1) {
      if (discarding) {
        discarding = false;
        continue;
      }
      HandleLine(rank, absl::string_view(buffer).substr(start, nl - start));
    }
    buffer.erase(0, start);
    if (buffer.size() > kMaxLineBytes) {
      if (!discarding) HandleLine(rank, absl::string_view(buffer).substr(0, 200));
      discarding = true;
      buffer.clear();
    }
  }
  if (!buffer.empty() && !discarding) HandleLine(rank, buffer);
  absl::MutexLock lock(&mu_);
  rank->eof = true;
}

void TrainerSupervisor::HandleLine(Rank* rank, absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (absl::StripAsciiWhitespace(line).empty()) return;
  const absl::Time now = clock_->Now();
  std::optional<TrainerEvent> event = ParseTrainerEventLine(line, rank->tag, now);
  {
    absl::MutexLock lock(&mu_);
    RankStatus& status = rank->status;
    if (!event) {
      ++status.unparsed_lines;
    } else {
      ++status.events;
      status.last_event = event->type;
      if (event->type == trainer_protocol::kEventStep) {
        if (std::optional<int64_t> step = event->Int("step")) status.last_step = *step;
        status.last_progress = now;
        if (rank->last_step_time) {
          step_intervals_.push_back(now - *rank->last_step_time);
          while (step_intervals_.size() > static_cast<size_t>(options_.step_interval_window)) {
            step_intervals_.pop_front();
          }
        }
        rank->last_step_time = now;
      } else if (event->type == trainer_protocol::kEventCheckpoint ||
                 event->type == trainer_protocol::kEventHeartbeat) {
        // A heartbeat: work between steps (an evaluation) that is moving.
        status.last_progress = now;
      } else if (event->type == trainer_protocol::kEventCompleted ||
                 event->type == trainer_protocol::kEventStopped) {
        rank->finished_cleanly = true;
        rank->completed = event->type == trainer_protocol::kEventCompleted;
      } else if (event->type == trainer_protocol::kEventError) {
        status.error_message = event->String("message").value_or("");
      }
    }
  }
  if (!event && rank->log != nullptr) {
    std::string text = absl::StrCat("peco-worker: non-JSON stdout line: ", line, "\n");
    std::fwrite(text.data(), 1, text.size(), rank->log);
    std::fflush(rank->log);
  }
  absl::MutexLock sink_lock(&sink_mu_);
  if (event) {
    sink_->OnEvent(*event);
  } else {
    sink_->OnUnparsedLine(rank->tag, line);
  }
}

void TrainerSupervisor::KillAllLocked() {
  for (auto& rank : ranks_) {
    if (!rank->status.running) continue;
    rank->process->Signal(SIGKILL).IgnoreError();  // ESRCH is already success; nothing else helps
    rank->killed = true;
  }
}

void TrainerSupervisor::FailGangLocked(Rank* rank, Cause cause, std::string detail) {
  if (failure_cause_ == Cause::kNone) {
    failure_cause_ = cause;
    failure_index_ = rank->tag.local_rank;
    failure_detail_ = std::move(detail);
  }
  if (cause == Cause::kStall && options_.stack_dump_grace > absl::ZeroDuration()) {
    for (auto& r : ranks_) {
      if (r->status.running) r->process->Signal(SIGQUIT).IgnoreError();
    }
    kill_after_dump_ = clock_->Now() + options_.stack_dump_grace;
    return;
  }
  KillAllLocked();
}

absl::Duration TrainerSupervisor::StallTimeoutLocked() const {
  absl::Duration timeout = options_.stall_timeout_floor;
  if (!step_intervals_.empty()) {
    std::vector<absl::Duration> sorted(step_intervals_.begin(), step_intervals_.end());
    auto middle = sorted.begin() + sorted.size() / 2;
    std::nth_element(sorted.begin(), middle, sorted.end());
    timeout = std::max(timeout, *middle * options_.stall_timeout_factor);
  }
  return timeout;
}

absl::Duration TrainerSupervisor::CurrentStallTimeout() const {
  absl::MutexLock lock(&mu_);
  return StallTimeoutLocked();
}

bool TrainerSupervisor::Poll() {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  if (outcome_) return true;
  if (!started_) return false;

  for (auto& rank : ranks_) {
    if (!rank->status.running) continue;
    absl::StatusOr<std::optional<ExitStatus>> exit = rank->process->Poll();
    if (exit.ok() && !exit->has_value()) continue;
    rank->status.running = false;
    rank->exited_at = now;
    // Whatever the rank left in its process group goes with it (and releases its stdout).
    rank->process->Signal(SIGKILL).IgnoreError();
    if (!exit.ok()) {
      FailGangLocked(rank.get(), Cause::kInternal, std::string(exit.status().message()));
      continue;
    }
    rank->status.exit = **exit;
    if (!(*exit)->success()) FailGangLocked(rank.get(), Cause::kExit, "");
  }

  if (now >= kill_after_dump_) {
    KillAllLocked();
    kill_after_dump_ = absl::InfiniteFuture();
  }

  if (cancel_requested_ && now >= cancel_deadline_) {
    for (auto& rank : ranks_) {
      if (rank->status.running && !rank->killed) {
        FailGangLocked(rank.get(), Cause::kCancelKill, "");
      }
    }
  }

  if (!cancel_requested_ && failure_cause_ == Cause::kNone) {
    const absl::Duration stall_timeout = StallTimeoutLocked();
    for (auto& rank : ranks_) {
      if (!rank->status.running) continue;
      const bool stepped = rank->last_step_time.has_value();
      const absl::Duration timeout = stepped ? stall_timeout : options_.startup_timeout;
      const absl::Duration quiet = now - rank->status.last_progress;
      if (quiet <= timeout) continue;
      rank->status.stalled = true;
      FailGangLocked(
          rank.get(), Cause::kStall,
          stepped ? absl::StrCat("no step or checkpoint event for ", FormatDuration(quiet),
                                 " (stall timeout ", FormatDuration(timeout), ")")
                  : absl::StrCat("no step event ", FormatDuration(quiet),
                                 " after launch (startup timeout ", FormatDuration(timeout), ")"));
      break;
    }
  }

  for (const auto& rank : ranks_) {
    if (rank->status.running) return false;
    if (!rank->eof && now - rank->exited_at < options_.drain_timeout) return false;
  }
  outcome_ = DecideLocked();
  return true;
}

AttemptOutcome TrainerSupervisor::DecideLocked() const {
  AttemptOutcome outcome;
  outcome.cancel_requested = cancel_requested_;
  if (failure_cause_ != Cause::kNone) {
    const Rank& rank = *ranks_[failure_index_];
    const int id = rank.tag.rank;
    outcome.result = AttemptOutcome::Result::kFailed;
    outcome.failed_rank = id;
    outcome.retryable = true;
    switch (failure_cause_) {
      case Cause::kExit: {
        const ExitStatus& exit = *rank.status.exit;
        outcome.reason = exit.exited()
                             ? absl::StrCat("rank ", id, " exited with ", exit.ToString())
                             : absl::StrCat("rank ", id, " was killed by ", exit.ToString());
        if (exit.exit_code == trainer_protocol::kExitInvalidConfig) {
          absl::StrAppend(&outcome.reason, " (invalid configuration)");
          outcome.retryable = false;
        } else if (exit.exit_code == trainer_protocol::kExitNonFiniteLoss) {
          absl::StrAppend(&outcome.reason, " (non-finite loss)");
          outcome.retryable = false;
        }
        break;
      }
      case Cause::kStall:
        outcome.reason = absl::StrCat("rank ", id, " stalled: ", failure_detail_);
        break;
      case Cause::kCancelKill:
        outcome.reason =
            absl::StrCat("rank ", id, " did not stop within the cancel grace period; killed");
        break;
      case Cause::kInternal:
      case Cause::kNone:
        outcome.reason = absl::StrCat("rank ", id, ": ", failure_detail_);
        break;
    }
    if (!rank.status.error_message.empty()) {
      absl::StrAppend(&outcome.reason, ": ", rank.status.error_message);
    }
    if (cancel_requested_) outcome.retryable = false;
    return outcome;
  }
  bool all_completed = true;
  for (const auto& rank : ranks_) {
    if (!rank->finished_cleanly) {
      outcome.result = AttemptOutcome::Result::kFailed;
      outcome.failed_rank = rank->tag.rank;
      outcome.reason = absl::StrCat(
          "rank ", rank->tag.rank, " exited with exit code 0 without a completed or stopped event");
      outcome.retryable = !cancel_requested_;
      return outcome;
    }
    all_completed = all_completed && rank->completed;
  }
  outcome.result =
      all_completed ? AttemptOutcome::Result::kSucceeded : AttemptOutcome::Result::kStopped;
  return outcome;
}

void TrainerSupervisor::Cancel(absl::Duration grace) {
  const absl::Time deadline = clock_->Now() + grace;
  absl::MutexLock lock(&mu_);
  if (outcome_ || !started_) return;
  cancel_deadline_ = std::min(cancel_deadline_, deadline);
  if (cancel_requested_) return;
  cancel_requested_ = true;
  for (auto& rank : ranks_) {
    if (rank->status.running) rank->process->Signal(SIGTERM).IgnoreError();
  }
}

std::optional<AttemptOutcome> TrainerSupervisor::outcome() const {
  absl::MutexLock lock(&mu_);
  return outcome_;
}

std::vector<RankStatus> TrainerSupervisor::GetRankStatuses() const {
  absl::MutexLock lock(&mu_);
  std::vector<RankStatus> result;
  for (const auto& rank : ranks_) result.push_back(rank->status);
  return result;
}

}  // namespace peco::worker
