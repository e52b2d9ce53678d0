#include "worker/worker_agent.h"

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <random>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "service/job_kinds.h"
#include "worker/attempt_result.h"
#include "worker/coordinator_session.h"
#include "worker/device_ledger.h"
#include "worker/event_relay.h"
#include "worker/log_tailer.h"

namespace peco::worker {
namespace fs = std::filesystem;
namespace {

constexpr char kWorkerIdFile[] = "worker.id";

// Job ids become directory names: no separators, no dot names.
// "worker-" and 12 random hex digits, as the coordinator names workers that bring no id.
std::string NewWorkerId() {
  std::random_device random;
  std::uniform_int_distribution<uint32_t> digit(0, 15);
  std::string id = "worker-";
  for (int i = 0; i < 12; ++i) id.push_back("0123456789abcdef"[digit(random)]);
  return id;
}

bool IsSafeId(absl::string_view id) {
  if (id.empty() || id == "." || id == ".." || id.size() > 200) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

// Codes after which the same call may succeed later.
bool IsTransient(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

std::string AttemptName(absl::string_view job_id, int64_t attempt) {
  return absl::StrCat("job ", job_id, " attempt ", attempt);
}

}  // namespace

// One attempt this worker holds, from its assignment until its result was delivered.
struct WorkerAgent::Attempt {
  enum class Phase { kFetching, kRunning, kFinishing, kDone };

  v1::Assignment assignment;
  std::string dir;
  Phase phase = Phase::kRunning;
  std::unique_ptr<TrainerSupervisor> supervisor;
  bool launch_failed = false;
  bool coordinator_cancelled = false;
  bool shutdown_cancelled = false;
  // Checkpoints fetched by the transfer loop before the launch: the resume checkpoint and the
  // dependency's inputs. A fetch with an empty config_field is the resume checkpoint.
  struct Fetch {
    std::string checkpoint_id;
    std::string config_field;
    std::string dest;
    bool done = false;
  };
  std::vector<Fetch> fetches;
  bool fetch_busy = false;
  int fetch_failures = 0;
  absl::Time next_fetch = absl::InfinitePast();
  std::string resume_dir;  // set once the resume checkpoint is fetched

  bool AllFetched() const {
    for (const Fetch& fetch : fetches) {
      if (!fetch.done) return false;
    }
    return true;
  }
  // Devices reserved while the trainers run.
  bool holds_devices = false;
  HeldDevices devices;
  // Latest step per global rank (a non-step event is reported at its rank's latest step).
  std::map<int, int64_t> last_step;
  // Set when the phase becomes kFinishing.
  std::optional<v1::AttemptResult> result;
  // Why the final checkpoint was refused for good ("" = it was not): the attempt cannot have
  // succeeded, or its dependents would read an older checkpoint.
  std::string final_checkpoint_refused;
  // One per local rank: its log, relayed with the reports.
  std::vector<LogTailer> logs;

  const std::string& job_id() const { return assignment.job_id(); }
  int64_t number() const { return assignment.attempt(); }
  std::string name() const { return AttemptName(job_id(), number()); }
};

absl::Status WorkerAgentOptions::Validate() const {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("worker options: ", field, ": ", why));
  };
  if (work_dir.empty()) return bad("work_dir", "must not be empty");
  if (!worker_id.empty() && !IsSafeId(worker_id)) {
    return bad("worker_id", absl::StrCat("'", worker_id, "' must match [A-Za-z0-9._-]+"));
  }
  if (host.empty()) return bad("host", "must not be empty");
  if (gpus < 0) return bad("gpus", "must be >= 0");
  if (cpu_slots < 0) return bad("cpu_slots", "must be >= 0");
  if (gpus == 0 && cpu_slots == 0) return bad("cpu_slots", "must be >= 1 when gpus is 0");
  if (first_port < 1 || first_port > 65535) return bad("first_port", "must be in [1, 65535]");
  if (last_port < first_port || last_port > 65535) {
    return bad("last_port", "must be in [first_port, 65535]");
  }
  if (trainer_command.empty() || trainer_command[0].empty()) {
    return bad("trainer_command", "must name a program");
  }
  if (heartbeat_interval < absl::ZeroDuration()) return bad("heartbeat_interval", "must be >= 0");
  if (register_initial_backoff <= absl::ZeroDuration()) {
    return bad("register_initial_backoff", "must be > 0");
  }
  if (register_max_backoff < register_initial_backoff) {
    return bad("register_max_backoff", "must be >= register_initial_backoff");
  }
  if (report_retry_interval <= absl::ZeroDuration()) {
    return bad("report_retry_interval", "must be > 0");
  }
  if (report_buffer_capacity < 1) return bad("report_buffer_capacity", "must be >= 1");
  if (report_batch_size < 1) return bad("report_batch_size", "must be >= 1");
  if (upload_initial_backoff <= absl::ZeroDuration()) {
    return bad("upload_initial_backoff", "must be > 0");
  }
  if (upload_max_backoff < upload_initial_backoff) {
    return bad("upload_max_backoff", "must be >= upload_initial_backoff");
  }
  if (fetch_max_tries < 1) return bad("fetch_max_tries", "must be >= 1");
  if (upload_max_tries < 1) return bad("upload_max_tries", "must be >= 1");
  if (startup_timeout <= absl::ZeroDuration()) return bad("startup_timeout", "must be > 0");
  if (stall_timeout_floor <= absl::ZeroDuration()) {
    return bad("stall_timeout_floor", "must be > 0");
  }
  if (!(stall_timeout_factor >= 1.0)) return bad("stall_timeout_factor", "must be >= 1");
  if (stack_dump_grace < absl::ZeroDuration()) return bad("stack_dump_grace", "must be >= 0");
  if (drain_timeout < absl::ZeroDuration()) return bad("drain_timeout", "must be >= 0");
  return absl::OkStatus();
}

WorkerAgent::WorkerAgent(WorkerAgentOptions options, CoordinatorClient* client,
                         ProcessLauncher* launcher, Clock* clock, WorkerMetrics* metrics)
    : options_(std::move(options)),
      client_(client),
      launcher_(launcher),
      clock_(clock),
      metrics_(metrics),
      reports_(static_cast<size_t>(std::max(options_.report_buffer_capacity, 1))),
      outbox_((fs::path(options_.work_dir) / "outbox").string(), options_.upload_initial_backoff,
              options_.upload_max_backoff) {}

WorkerAgent::~WorkerAgent() {
  std::vector<std::unique_ptr<TrainerSupervisor>> supervisors;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, attempt] : attempts_) {
      if (attempt->supervisor != nullptr) supervisors.push_back(std::move(attempt->supervisor));
    }
  }
  // Destroyed without the lock: a supervisor joins reader threads that may be waiting for it.
  supervisors.clear();
}

void WorkerAgent::Log(absl::string_view message) const {
  if (options_.log) {
    options_.log(message);
    return;
  }
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::Now(), absl::LocalTimeZone()),
                   " peco-worker: ", message, "\n");
  std::fwrite(line.data(), 1, line.size(), stderr);
}

absl::Status WorkerAgent::Init() {
  RETURN_IF_ERROR(options_.Validate());
  std::error_code error;
  fs::create_directories(options_.work_dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create work_dir ", options_.work_dir, ": ", error.message()));
  }
  // Configs, checkpoints and logs of every job live below: nobody but this user may look.
  fs::permissions(options_.work_dir, fs::perms::owner_all, fs::perm_options::replace, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot make work_dir ", options_.work_dir,
                                            " private (0700): ", error.message()));
  }
  std::string id = options_.worker_id;
  if (id.empty()) {
    const std::string path = (fs::path(options_.work_dir) / kWorkerIdFile).string();
    absl::StatusOr<std::string> stored = ReadFileToString(path);
    if (stored.ok()) {
      id = std::string(absl::StripAsciiWhitespace(*stored));
      if (!id.empty() && !IsSafeId(id)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": '", id, "' is not a worker id ([A-Za-z0-9._-]+)"));
      }
    } else if (!absl::IsNotFound(stored.status())) {
      return stored.status();
    }
    if (id.empty()) {
      // Chosen here and kept before the first Register, so that a Register whose answer is
      // lost is retried under the same id instead of leaving a second worker behind.
      id = NewWorkerId();
      RETURN_IF_ERROR(WriteFileAtomic(path, id + "\n"));
      Log(absl::StrCat("chose worker id ", id, " (kept in ", path, ")"));
    }
  }
  absl::MutexLock lock(&mu_);
  CoordinatorSession::Options session;
  session.register_initial_backoff = options_.register_initial_backoff;
  session.register_max_backoff = options_.register_max_backoff;
  session.heartbeat_interval = options_.heartbeat_interval;
  session_.emplace(session, id);
  devices_.emplace(options_.gpus, options_.cpu_slots);
  return absl::OkStatus();
}

std::string WorkerAgent::AttemptDir(const std::string& job_id, int64_t attempt) const {
  return (fs::path(options_.work_dir) / "jobs" / job_id / absl::StrCat("attempt-", attempt))
      .string();
}

// ---------------------------------------------------------------------------------------------
// Control loop.

void WorkerAgent::Tick() {
  const absl::Time now = clock_->Now();
  bool shutting_down;
  bool registered;
  {
    absl::MutexLock lock(&mu_);
    shutting_down = shutting_down_;
    if (!session_.has_value()) return;  // Init() has not run
    registered = session_->registered();
  }
  if (!shutting_down && !registered) TryRegister(now);
  {
    absl::MutexLock lock(&mu_);
    AdvanceAttemptsLocked(now);
  }
  FlushReports(now);
  if (!shutting_down) TryHeartbeat(now);
  UpdateMetrics();
}

v1::WorkerDevices WorkerAgent::FreeDevicesLocked() const {
  return devices_.has_value() ? devices_->Free() : v1::WorkerDevices();
}

v1::WorkerInfo WorkerAgent::WorkerInfoLocked() const {
  v1::WorkerInfo info;
  info.set_id(session_->worker_id());
  info.set_host(options_.host);
  info.mutable_devices()->set_gpus(options_.gpus);
  info.mutable_devices()->set_cpu_slots(options_.cpu_slots);
  info.mutable_ports()->set_first(options_.first_port);
  info.mutable_ports()->set_last(options_.last_port);
  info.set_state(shutting_down_ ? v1::WORKER_STATE_DRAINING : v1::WORKER_STATE_ALIVE);
  *info.mutable_free_devices() = FreeDevicesLocked();
  return info;
}

std::vector<v1::RunningRanks> WorkerAgent::RunningLocked() const {
  std::vector<v1::RunningRanks> running;
  for (const auto& [key, attempt] : attempts_) {
    if (attempt->phase == Attempt::Phase::kDone) continue;  // reported in `finished` instead
    v1::RunningRanks ranks;
    ranks.set_job_id(key.first);
    ranks.set_attempt(key.second);
    *ranks.mutable_ranks() = attempt->assignment.ranks();
    running.push_back(std::move(ranks));
  }
  return running;
}

void WorkerAgent::TryRegister(absl::Time now) {
  v1::RegisterRequest request;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ || !session_->RegisterDue(now)) return;
    *request.mutable_worker() = WorkerInfoLocked();
    for (v1::RunningRanks& ranks : RunningLocked()) *request.add_running() = std::move(ranks);
  }
  absl::StatusOr<v1::RegisterResponse> response = client_->Register(request);
  if (!response.ok()) {
    CoordinatorSession::RegisterRetry retry;
    {
      absl::MutexLock lock(&mu_);
      retry = session_->OnRegisterFailed(now);
    }
    if (retry.worth_logging) {
      Log(absl::StrCat("registering with the coordinator failed (try ", retry.failures,
                       "): ", response.status().ToString(), "; retrying in ",
                       absl::FormatDuration(retry.backoff)));
    }
    return;
  }
  std::string id;
  absl::Duration interval;
  {
    absl::MutexLock lock(&mu_);
    if (session_->OnRegistered(*response, now) && options_.worker_id.empty()) {
      // Persisted so that a restarted worker registers under the same id.
      const std::string path = (fs::path(options_.work_dir) / kWorkerIdFile).string();
      absl::Status written = WriteFileAtomic(path, session_->worker_id() + "\n");
      if (!written.ok()) Log(absl::StrCat("cannot persist the worker id: ", written.ToString()));
    }
    id = session_->worker_id();
    interval = session_->heartbeat_interval();
  }
  Log(absl::StrCat("registered as ", id, " (", request.running_size(),
                   " running attempts; heartbeat every ", absl::FormatDuration(interval), ")"));
  KillStale(response->stale());
}

void WorkerAgent::TryHeartbeat(absl::Time now) {
  v1::HeartbeatRequest request;
  std::vector<AttemptKey> sent;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ || !session_->TakeHeartbeatTurn(now)) return;
    request.set_worker_id(session_->worker_id());
    for (v1::RunningRanks& ranks : RunningLocked()) *request.add_running() = std::move(ranks);
    *request.mutable_free_devices() = FreeDevicesLocked();
    for (const auto& [key, attempt] : attempts_) {
      if (attempt->phase != Attempt::Phase::kDone) continue;
      *request.add_finished() = *attempt->result;
      sent.push_back(key);
    }
  }
  absl::StatusOr<v1::HeartbeatResponse> response = client_->Heartbeat(request);
  if (!response.ok()) {
    const bool not_found = absl::IsNotFound(response.status());
    if (metrics_ != nullptr) metrics_->CountHeartbeat(not_found ? "not_found" : "error");
    bool first_failure;
    {
      absl::MutexLock lock(&mu_);
      first_failure = session_->OnHeartbeatFailed(response.status());
    }
    if (not_found) {
      Log(absl::StrCat("the coordinator does not know worker ", request.worker_id(),
                       "; registering again with ", request.running_size(), " running attempts"));
      TryRegister(now);
    } else if (first_failure) {
      Log(absl::StrCat("heartbeat failed: ", response.status().ToString(),
                       "; trainers keep running, reports are buffered, retrying"));
    }
    return;
  }
  if (metrics_ != nullptr) metrics_->CountHeartbeat("ok");
  std::vector<std::unique_ptr<TrainerSupervisor>> finished;
  std::vector<std::string> delivered;
  {
    absl::MutexLock lock(&mu_);
    if (session_->OnHeartbeatSucceeded()) delivered.push_back("heartbeats succeed again");
    for (const AttemptKey& key : sent) {
      auto it = attempts_.find(key);
      if (it == attempts_.end() || it->second->phase != Attempt::Phase::kDone) continue;
      delivered.push_back(
          absl::StrCat("reported ", it->second->name(), ": ",
                       v1::AttemptResult::Result_Name(it->second->result->result())));
      if (it->second->supervisor != nullptr) finished.push_back(std::move(it->second->supervisor));
      attempts_.erase(it);
    }
  }
  finished.clear();  // exited already; joins their reader threads without the lock
  for (const std::string& line : delivered) Log(line);
  KillStale(response->stale());
  absl::MutexLock lock(&mu_);
  for (const v1::Cancellation& cancellation : response->cancellations()) {
    ApplyCancellation(cancellation);
  }
  for (const v1::Assignment& assignment : response->assignments()) {
    ApplyAssignment(assignment, now);
  }
}

void WorkerAgent::KillStale(const google::protobuf::RepeatedPtrField<v1::RunningRanks>& stale) {
  std::vector<std::unique_ptr<TrainerSupervisor>> doomed;
  std::vector<AttemptKey> keys;
  {
    absl::MutexLock lock(&mu_);
    for (const v1::RunningRanks& ranks : stale) {
      auto it = attempts_.find({ranks.job_id(), ranks.attempt()});
      if (it == attempts_.end()) continue;
      ReleaseDevicesLocked(*it->second);
      if (it->second->supervisor != nullptr) doomed.push_back(std::move(it->second->supervisor));
      keys.push_back(it->first);
      attempts_.erase(it);
    }
  }
  // Destroying a supervisor SIGKILLs its ranks and joins its readers (which may be waiting for
  // mu_ in OnEvent), so it happens without the lock; afterwards no event of these attempts can
  // arrive, and what they left is dropped.
  doomed.clear();
  for (const AttemptKey& key : keys) {
    outbox_.DropAttempt(key.first, key.second);
    reports_.DropAttempt(key.first, key.second);
    if (metrics_ != nullptr) metrics_->RemoveJob(key.first);
    Log(absl::StrCat("killed stale ", AttemptName(key.first, key.second)));
  }
}

void WorkerAgent::ApplyCancellation(const v1::Cancellation& cancellation) {
  auto it = attempts_.find({cancellation.job_id(), cancellation.attempt()});
  if (it == attempts_.end()) return;
  Attempt& attempt = *it->second;
  attempt.coordinator_cancelled = true;
  const absl::Duration grace = absl::Milliseconds(std::max<int64_t>(cancellation.deadline_ms(), 0));
  Log(absl::StrCat("cancelling ", attempt.name(), " (SIGKILL after ", absl::FormatDuration(grace),
                   ")", cancellation.reason().empty() ? "" : ": ", cancellation.reason()));
  switch (attempt.phase) {
    case Attempt::Phase::kFetching: {
      v1::AttemptResult result;
      result.set_job_id(attempt.job_id());
      result.set_attempt(attempt.number());
      result.set_result(v1::AttemptResult::RESULT_STOPPED);
      result.set_reason("cancelled before the trainers started");
      result.set_cause("cancel");
      result.set_last_step(-1);
      attempt.result = result;
      ReleaseDevicesLocked(attempt);
      attempt.phase = Attempt::Phase::kFinishing;
      if (metrics_ != nullptr) metrics_->CountTrainerExit("cancel");
      break;
    }
    case Attempt::Phase::kRunning:
      attempt.supervisor->Cancel(grace);
      break;
    case Attempt::Phase::kFinishing:
    case Attempt::Phase::kDone:
      break;
  }
}

void WorkerAgent::ApplyAssignment(const v1::Assignment& assignment, absl::Time now) {
  const AttemptKey key{assignment.job_id(), assignment.attempt()};
  if (attempts_.count(key) > 0) return;  // a repeated assignment: already ours
  auto owned = std::make_unique<Attempt>();
  Attempt& attempt = *owned;
  attempt.assignment = assignment;
  attempt.assignment.clear_spec();  // kept below only as far as needed
  *attempt.assignment.mutable_spec()->mutable_devices_per_rank() =
      assignment.spec().devices_per_rank();
  attempt.assignment.mutable_spec()->set_kind(assignment.spec().kind());
  attempts_[key] = std::move(owned);

  Log(absl::StrCat("assigned ", attempt.name(), ": ranks [", absl::StrJoin(assignment.ranks(), ","),
                   "] of ", assignment.world_size(), ", master ", assignment.master_addr(), ":",
                   assignment.master_port(),
                   assignment.resume_checkpoint_id().empty()
                       ? ""
                       : absl::StrCat(", resuming from ", assignment.resume_checkpoint_id())));
  if (!IsSafeId(assignment.job_id())) {
    FailBeforeLaunchLocked(attempt, absl::StrCat("invalid job id '", assignment.job_id(), "'"),
                           false, "launch");
    return;
  }
  if (service::JobKindName(assignment.spec().kind()).empty()) {
    FailBeforeLaunchLocked(
        attempt, absl::StrCat("unknown job kind ", static_cast<int>(assignment.spec().kind())),
        false, "launch");
    return;
  }
  if (assignment.ranks().empty()) {
    FailBeforeLaunchLocked(attempt, "assignment lists no ranks", false, "launch");
    return;
  }
  attempt.dir = AttemptDir(assignment.job_id(), assignment.attempt());

  // Devices: a CPU rank takes at least one slot.
  absl::StatusOr<HeldDevices> held =
      devices_->Acquire(assignment.spec().devices_per_rank(), assignment.ranks_size());
  if (!held.ok()) {
    FailBeforeLaunchLocked(attempt,
                           absl::StrCat("not enough free devices on worker ", session_->worker_id(),
                                        ": ", held.status().message()),
                           true, "launch");
    return;
  }
  attempt.devices = *std::move(held);
  attempt.holds_devices = true;

  // A directory left by an earlier worker process for the same attempt would make the trainer
  // refuse its output directory; the attempt starts clean.
  std::error_code error;
  fs::remove_all(attempt.dir, error);
  fs::create_directories(fs::path(attempt.dir) / "logs", error);
  if (error) {
    FailBeforeLaunchLocked(attempt,
                           absl::StrCat("cannot create ", attempt.dir, ": ", error.message()), true,
                           "launch");
    return;
  }
  const absl::Status config = WriteFileSynced((fs::path(attempt.dir) / "config.yaml").string(),
                                              assignment.spec().config_yaml());
  if (!config.ok()) {
    FailBeforeLaunchLocked(attempt, std::string(config.message()), true, "launch");
    return;
  }
  // Ids from the network name directories here (and what is there is removed before a fetch):
  // only plain names are taken, and config fields only as dotted identifiers.
  std::vector<std::string> ids = {assignment.resume_checkpoint_id()};
  for (const v1::InputCheckpoint& input : assignment.inputs()) {
    ids.push_back(input.checkpoint_id());
    const std::string& field = input.config_field();
    const bool identifier = !field.empty() && std::all_of(field.begin(), field.end(), [](char c) {
      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
    });
    if (!identifier) {
      FailBeforeLaunchLocked(
          attempt, absl::StrCat("invalid input config field '", absl::CEscape(field), "'"), false,
          "launch");
      return;
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if ((i > 0 || !ids[i].empty()) && !IsSafeId(ids[i])) {
      FailBeforeLaunchLocked(attempt,
                             absl::StrCat("invalid checkpoint id '", absl::CEscape(ids[i]), "'"),
                             false, "launch");
      return;
    }
  }
  if (!assignment.resume_checkpoint_id().empty()) {
    attempt.fetches.push_back(
        {assignment.resume_checkpoint_id(), "", (fs::path(attempt.dir) / "resume").string()});
  }
  for (const v1::InputCheckpoint& input : assignment.inputs()) {
    attempt.fetches.push_back(
        {input.checkpoint_id(), input.config_field(),
         (fs::path(attempt.dir) / "inputs" / input.checkpoint_id()).string()});
  }
  if (!attempt.fetches.empty()) {
    attempt.phase = Attempt::Phase::kFetching;
    attempt.next_fetch = now;
    return;
  }
  LaunchLocked(attempt);
}

void WorkerAgent::LaunchLocked(Attempt& attempt) {
  const v1::Assignment& assignment = attempt.assignment;
  TrainerSupervisorOptions options;
  options.trainer_command = options_.trainer_command;
  options.job_id = assignment.job_id();
  options.attempt = assignment.attempt();
  options.kind = service::JobKindName(assignment.spec().kind());
  options.config_path = (fs::path(attempt.dir) / "config.yaml").string();
  options.output_dir = (fs::path(attempt.dir) / "run").string();
  options.resume_dir = attempt.resume_dir;
  for (const Attempt::Fetch& fetch : attempt.fetches) {
    if (!fetch.config_field.empty()) {
      options.config_overrides.push_back(absl::StrCat(fetch.config_field, "=", fetch.dest));
    }
  }
  if (!options_.allowed_roots.empty()) {
    options.allowed_roots = options_.allowed_roots;
    options.allowed_roots.push_back(fs::absolute(options_.work_dir).string());
  }
  options.working_dir = attempt.dir;
  options.log_dir = (fs::path(attempt.dir) / "logs").string();
  options.master_addr = assignment.master_addr();
  options.master_port = assignment.master_port();
  options.world_size = assignment.world_size();
  options.ranks.assign(assignment.ranks().begin(), assignment.ranks().end());
  if (options_.gpus > 0) {
    // Ranks pick their device by LOCAL_RANK among the attempt's GPUs (torchrun's convention);
    // a CPU attempt on a GPU machine sees none.
    options.extra_env.push_back(
        absl::StrCat("CUDA_VISIBLE_DEVICES=", absl::StrJoin(attempt.devices.gpus, ",")));
  }
  // Where the other ranks reach this machine (--host): each rank's Gloo device listens on and
  // advertises it, so a gang across machines connects to the right host.
  options.extra_env.push_back(absl::StrCat("PECO_RANK_HOST=", options_.host));
  options.startup_timeout = options_.startup_timeout;
  options.stall_timeout_floor = options_.stall_timeout_floor;
  options.stall_timeout_factor = options_.stall_timeout_factor;
  options.stack_dump_grace = options_.stack_dump_grace;
  options.drain_timeout = options_.drain_timeout;
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    FailBeforeLaunchLocked(attempt, absl::StrCat("invalid assignment: ", valid.message()), false,
                           "launch");
    return;
  }
  attempt.supervisor = std::make_unique<TrainerSupervisor>(std::move(options), launcher_, clock_,
                                                           static_cast<TrainerEventSink*>(this));
  attempt.phase = Attempt::Phase::kRunning;
  for (int rank : assignment.ranks()) {
    attempt.logs.emplace_back(attempt.supervisor->LogPath(rank), assignment.job_id(),
                              assignment.attempt(), rank);
  }
  if (absl::Status started = attempt.supervisor->Start(); !started.ok()) {
    // The supervisor has a FAILED outcome; the next Poll() reports it.
    attempt.launch_failed = true;
    Log(absl::StrCat("launching ", attempt.name(), " failed: ", started.message()));
    return;
  }
  Log(absl::StrCat("started ", attempt.name(), " (", assignment.ranks_size(), " ranks",
                   attempt.resume_dir.empty() ? "" : ", --resume " + attempt.resume_dir, ")"));
}

void WorkerAgent::FailBeforeLaunchLocked(Attempt& attempt, std::string reason, bool retryable,
                                         const std::string& cause) {
  Log(absl::StrCat(attempt.name(), " failed before it started: ", reason));
  v1::AttemptResult result;
  result.set_job_id(attempt.job_id());
  result.set_attempt(attempt.number());
  result.set_result(v1::AttemptResult::RESULT_FAILED);
  result.set_reason(std::move(reason));
  result.set_retryable(retryable);
  result.set_cause(cause);
  result.set_last_step(-1);
  attempt.result = std::move(result);
  ReleaseDevicesLocked(attempt);
  attempt.phase = Attempt::Phase::kFinishing;
  if (metrics_ != nullptr) metrics_->CountTrainerExit(cause);
}

void WorkerAgent::ReleaseDevicesLocked(Attempt& attempt) {
  if (!attempt.holds_devices) return;
  devices_->Release(attempt.devices);
  attempt.devices = HeldDevices();
  attempt.holds_devices = false;
}

void WorkerAgent::AdvanceAttemptsLocked(absl::Time now) {
  for (auto& [key, owned] : attempts_) {
    Attempt& attempt = *owned;
    if (attempt.phase == Attempt::Phase::kFetching && !attempt.fetch_busy && attempt.AllFetched()) {
      LaunchLocked(attempt);
    }
    const bool running = attempt.phase == Attempt::Phase::kRunning;
    const bool ended = running && attempt.supervisor->Poll();
    // Logs go before the exit events, and the result waits until the coordinator has them.
    if (running) RelayLogsLocked(attempt, ended);
    if (ended) {
      attempt.result = BuildResultLocked(attempt);
      ReleaseDevicesLocked(attempt);
      attempt.phase = Attempt::Phase::kFinishing;
      const v1::AttemptResult& result = *attempt.result;
      if (metrics_ != nullptr) metrics_->CountTrainerExit(result.cause());
      Log(absl::StrCat(attempt.name(), " ended: ", v1::AttemptResult::Result_Name(result.result()),
                       " (cause ", result.cause(), ", last step ", result.last_step(), ")",
                       result.reason().empty() ? "" : ": ", result.reason()));
      // Each rank's exit, as a trainer event of the attempt.
      for (const RankStatus& rank : attempt.supervisor->GetRankStatuses()) {
        if (!rank.exit.has_value()) continue;
        v1::ReportProgressRequest report;
        v1::TrainerEvent* event = report.mutable_trainer_event();
        event->set_job_id(attempt.job_id());
        event->set_attempt(attempt.number());
        event->set_rank(rank.tag.rank);
        event->set_type("exit");
        event->set_message(absl::StrCat("rank ", rank.tag.rank, ": ", rank.exit->ToString()));
        event->set_step(std::max<int64_t>(rank.last_step, 0));
        event->set_time_us(absl::ToUnixMicros(now));
        reports_.Add(std::move(report));
      }
    }
    if (attempt.phase == Attempt::Phase::kFinishing && !attempt.fetch_busy &&
        outbox_.Pending(attempt.job_id(), attempt.number()) == 0 &&
        reports_.Pending(attempt.job_id(), attempt.number()) == 0) {
      // Every upload of the attempt was committed or dropped and every report acknowledged: the
      // result may go out (the coordinator takes no points of an attempt that has ended).
      if (!attempt.final_checkpoint_refused.empty() && attempt.result.has_value() &&
          attempt.result->result() == v1::AttemptResult::RESULT_SUCCEEDED) {
        // Success without its final checkpoint is not success: another attempt writes it again.
        attempt.result->set_result(v1::AttemptResult::RESULT_FAILED);
        attempt.result->set_retryable(true);
        attempt.result->set_cause("upload");
        attempt.result->set_reason(attempt.final_checkpoint_refused);
        Log(absl::StrCat(attempt.name(),
                         ": reported as failed: ", attempt.final_checkpoint_refused));
      }
      attempt.phase = Attempt::Phase::kDone;
      if (metrics_ != nullptr) metrics_->RemoveJob(attempt.job_id());
    }
  }
}

void WorkerAgent::RelayLogsLocked(Attempt& attempt, bool at_end) {
  for (LogTailer& log : attempt.logs) {
    // At the end, read to the end of the file (one Poll reads a bounded amount).
    std::vector<v1::LogChunk> chunks;
    do {
      chunks = log.Poll(at_end);
      for (v1::LogChunk& chunk : chunks) {
        v1::ReportProgressRequest report;
        *report.mutable_log_chunk() = std::move(chunk);
        reports_.Add(std::move(report));
      }
    } while (at_end && !chunks.empty());
  }
}

v1::AttemptResult WorkerAgent::BuildResultLocked(const Attempt& attempt) const {
  AttemptEnding ending;
  ending.launch_failed = attempt.launch_failed;
  ending.coordinator_cancelled = attempt.coordinator_cancelled;
  ending.shutdown_cancelled = attempt.shutdown_cancelled;
  return BuildAttemptResult(attempt.job_id(), attempt.number(), *attempt.supervisor->outcome(),
                            attempt.supervisor->GetRankStatuses(), ending);
}

void WorkerAgent::FlushReports(absl::Time now) {
  {
    absl::MutexLock lock(&mu_);
    if (now < next_report_) return;
  }
  // A few batches per tick, so a large backlog does not delay the heartbeat much.
  for (int batches = 0; batches < 8; ++batches) {
    ReportBuffer::Batch batch = reports_.Peek(static_cast<size_t>(options_.report_batch_size));
    if (batch.reports.empty()) break;
    absl::StatusOr<v1::ReportProgressResponse> response = client_->ReportProgress(batch.reports);
    if (!response.ok()) {
      bool first_failure;
      {
        absl::MutexLock lock(&mu_);
        next_report_ = now + options_.report_retry_interval;
        first_failure = !reports_failing_;
        reports_failing_ = true;
      }
      if (first_failure) {
        Log(absl::StrCat("sending progress reports failed: ", response.status().ToString(), "; ",
                         reports_.size(), " buffered, retrying"));
      }
      return;
    }
    reports_.Ack(batch);
    absl::MutexLock lock(&mu_);
    reports_failing_ = false;
  }
}

void WorkerAgent::UpdateMetrics() {
  if (metrics_ == nullptr) return;
  int64_t running = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, attempt] : attempts_) {
      if (attempt->phase != Attempt::Phase::kRunning) continue;
      for (const RankStatus& rank : attempt->supervisor->GetRankStatuses()) running += rank.running;
    }
  }
  metrics_->SetTrainersRunning(running);
  metrics_->SetReportsBuffered(static_cast<int64_t>(reports_.size()));
  metrics_->SetReportsDropped(reports_.dropped());
}

// ---------------------------------------------------------------------------------------------
// Trainer events (reader threads).

void WorkerAgent::OnEvent(const TrainerEvent& event) {
  const TrainerTag& tag = event.tag;
  RelayedEvent relayed;
  {
    absl::MutexLock lock(&mu_);
    auto it = attempts_.find({tag.job_id, tag.attempt});
    if (it == attempts_.end()) return;  // killed as stale: it reports nothing
    Attempt& attempt = *it->second;
    int64_t& last = attempt.last_step[tag.rank];
    relayed = RelayTrainerEvent(event, last, attempt.dir);
    last = relayed.last_step;
  }
  for (v1::ReportProgressRequest& report : relayed.reports) reports_.Add(std::move(report));
  if (metrics_ != nullptr) {
    for (const auto& [name, value] : relayed.rank_values) {
      metrics_->SetRankValue(tag.job_id, tag.rank, name, value);
    }
  }
  const std::string name = AttemptName(tag.job_id, tag.attempt);
  if (!relayed.problem.empty()) Log(absl::StrCat(name, ": ", relayed.problem));
  if (!relayed.checkpoint) return;
  const v1::CheckpointHeader& header = *relayed.checkpoint;
  // Linked now, on the reader thread: the trainer's retention may delete the directory as soon
  // as it writes the next checkpoint.
  absl::Status queued = outbox_.Add(header, relayed.checkpoint_dir);
  Log(queued.ok() ? absl::StrCat(name, ": checkpoint at step ", header.step(),
                                 header.final() ? " (final)" : "", " queued for upload")
                  : absl::StrCat(name, ": cannot queue checkpoint ", relayed.checkpoint_dir, ": ",
                                 queued.ToString()));
}

// ---------------------------------------------------------------------------------------------
// Transfer loop.

bool WorkerAgent::TransferOnce() {
  const absl::Time now = clock_->Now();
  const bool fetched = FetchOnce(now);
  const bool uploaded = UploadOnce(now);
  return fetched || uploaded;
}

bool WorkerAgent::FetchOnce(absl::Time now) {
  AttemptKey key;
  std::string checkpoint_id;
  std::string worker_id;
  std::string dest;
  size_t index = 0;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return false;
    for (auto& [attempt_key, attempt] : attempts_) {
      if (attempt->phase != Attempt::Phase::kFetching || attempt->fetch_busy ||
          attempt->next_fetch > now) {
        continue;
      }
      for (index = 0; index < attempt->fetches.size(); ++index) {
        if (!attempt->fetches[index].done) break;
      }
      if (index == attempt->fetches.size()) continue;
      attempt->fetch_busy = true;
      key = attempt_key;
      checkpoint_id = attempt->fetches[index].checkpoint_id;
      dest = attempt->fetches[index].dest;
      break;
    }
    if (dest.empty()) return false;
    worker_id = session_->worker_id();
  }
  std::error_code ignored;
  fs::remove_all(dest, ignored);  // what an interrupted earlier try left
  fs::create_directories(fs::path(dest).parent_path(), ignored);
  absl::StatusOr<v1::CheckpointInfo> info =
      client_->FetchCheckpoint(checkpoint_id, worker_id, dest);
  absl::MutexLock lock(&mu_);
  auto it = attempts_.find(key);
  if (it == attempts_.end()) return true;  // killed as stale meanwhile
  Attempt& attempt = *it->second;
  attempt.fetch_busy = false;
  if (attempt.phase != Attempt::Phase::kFetching) return true;  // cancelled meanwhile
  Attempt::Fetch& fetch = attempt.fetches[index];
  if (info.ok()) {
    fetch.done = true;
    if (fetch.config_field.empty()) attempt.resume_dir = dest;
    Log(absl::StrCat(attempt.name(), ": fetched checkpoint ", checkpoint_id, " (step ",
                     info->step(), ", ", info->bytes(), " bytes)",
                     fetch.config_field.empty() ? "" : " for " + fetch.config_field));
    return true;
  }
  ++attempt.fetch_failures;
  const std::string what =
      absl::StrCat("fetching checkpoint ", checkpoint_id, " failed: ", info.status().ToString());
  if (IsTransient(info.status()) && attempt.fetch_failures < options_.fetch_max_tries) {
    const absl::Duration backoff = Backoff(options_.upload_initial_backoff,
                                           options_.upload_max_backoff, attempt.fetch_failures);
    attempt.next_fetch = now + backoff;
    Log(absl::StrCat(attempt.name(), ": ", what, "; retrying in ", absl::FormatDuration(backoff)));
    return true;
  }
  // Another attempt may resume from a checkpoint that verifies.
  FailBeforeLaunchLocked(attempt, what, true, "launch");
  return true;
}

bool WorkerAgent::UploadOnce(absl::Time now) {
  std::optional<CheckpointOutbox::Entry> entry = outbox_.NextDue(now);
  if (!entry) return false;
  const std::string name =
      absl::StrCat(AttemptName(entry->header.job_id(), entry->header.attempt()),
                   " checkpoint at step ", entry->header.step());
  const absl::Time start = clock_->Now();
  absl::StatusOr<v1::CheckpointInfo> info = client_->UploadCheckpoint(entry->header, entry->dir);
  const absl::Duration took = clock_->Now() - start;
  const absl::Status& status = info.status();
  if (info.ok() || absl::IsAlreadyExists(status)) {
    outbox_.Finish(entry->id, /*retry=*/false, now, status);
    const int64_t bytes = info.ok() ? info->bytes() : 0;
    if (metrics_ != nullptr) metrics_->CountUpload("committed", bytes, took);
    Log(absl::StrCat("uploaded ", name,
                     info.ok() ? absl::StrCat(" as ", info->id(), " (", bytes, " bytes)")
                               : " (already committed)"));
  } else if (IsTransient(status) && entry->tries + 1 < options_.upload_max_tries) {
    outbox_.Finish(entry->id, /*retry=*/true, now, status);
    if (metrics_ != nullptr) metrics_->CountUpload("retry", 0, took);
    Log(absl::StrCat("uploading ", name, " failed (try ", entry->tries + 1,
                     "), will retry: ", status.ToString()));
  } else {
    // FAILED_PRECONDITION: the attempt is stale. Anything else will not improve by resending,
    // nor will a transient error that lasted upload_max_tries.
    if (entry->header.final() && !absl::IsFailedPrecondition(status)) {
      absl::MutexLock lock(&mu_);
      auto it = attempts_.find({entry->header.job_id(), entry->header.attempt()});
      if (it != attempts_.end()) {
        it->second->final_checkpoint_refused = absl::StrCat(
            "the final checkpoint at step ", entry->header.step(),
            IsTransient(status)
                ? absl::StrCat(" could not be uploaded in ", entry->tries + 1, " tries: ")
                : " was refused: ",
            status.ToString());
      }
    }
    outbox_.Finish(entry->id, /*retry=*/false, now, status);
    if (metrics_ != nullptr) metrics_->CountUpload("dropped", 0, took);
    Log(absl::StrCat("dropped ", name, ": ", status.ToString()));
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Shutdown and accessors.

void WorkerAgent::BeginShutdown(absl::Duration grace) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  shutting_down_ = true;
  shutdown_grace_ = grace;
  Log(absl::StrCat("shutting down: stopping ", attempts_.size(), " attempts (SIGKILL after ",
                   absl::FormatDuration(grace), "), then sending pending uploads and reports"));
  for (auto& [key, attempt] : attempts_) {
    if (attempt->phase == Attempt::Phase::kRunning) {
      attempt->shutdown_cancelled = true;
      attempt->supervisor->Cancel(grace);
    } else if (attempt->phase == Attempt::Phase::kFetching) {
      attempt->shutdown_cancelled = true;
      FailBeforeLaunchLocked(*attempt, "peco-worker shut down before the trainers started", true,
                             "cancel");
    }
  }
}

bool WorkerAgent::ShutdownComplete() const {
  absl::MutexLock lock(&mu_);
  if (!shutting_down_) return false;
  for (const auto& [key, attempt] : attempts_) {
    if (attempt->phase == Attempt::Phase::kRunning || attempt->fetch_busy) return false;
  }
  return outbox_.Pending() == 0 && reports_.size() == 0;
}

std::string WorkerAgent::worker_id() const {
  absl::MutexLock lock(&mu_);
  return session_.has_value() ? session_->worker_id() : options_.worker_id;
}

bool WorkerAgent::registered() const {
  absl::MutexLock lock(&mu_);
  return session_.has_value() && session_->registered();
}

v1::WorkerDevices WorkerAgent::free_devices() const {
  absl::MutexLock lock(&mu_);
  return FreeDevicesLocked();
}

std::vector<AgentAttemptStatus> WorkerAgent::attempts() const {
  absl::MutexLock lock(&mu_);
  std::vector<AgentAttemptStatus> result;
  for (const auto& [key, attempt] : attempts_) {
    AgentAttemptStatus status;
    status.job_id = key.first;
    status.attempt = key.second;
    status.ranks.assign(attempt->assignment.ranks().begin(), attempt->assignment.ranks().end());
    switch (attempt->phase) {
      case Attempt::Phase::kFetching:
        status.phase = "fetching";
        break;
      case Attempt::Phase::kRunning:
        status.phase = "running";
        break;
      case Attempt::Phase::kFinishing:
        status.phase = "finishing";
        break;
      case Attempt::Phase::kDone:
        status.phase = "done";
        break;
    }
    status.resume_dir = attempt->resume_dir;
    status.result = attempt->result;
    result.push_back(std::move(status));
  }
  return result;
}

}  // namespace peco::worker
