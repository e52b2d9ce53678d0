#include "bench/sim_cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace peco::bench {
namespace {

std::string CodeName(const grpc::Status& status) {
  static const char* const kNames[] = {"OK",
                                       "CANCELLED",
                                       "UNKNOWN",
                                       "INVALID_ARGUMENT",
                                       "DEADLINE_EXCEEDED",
                                       "NOT_FOUND",
                                       "ALREADY_EXISTS",
                                       "PERMISSION_DENIED",
                                       "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION",
                                       "ABORTED",
                                       "OUT_OF_RANGE",
                                       "UNIMPLEMENTED",
                                       "INTERNAL",
                                       "UNAVAILABLE",
                                       "DATA_LOSS",
                                       "UNAUTHENTICATED"};
  const int code = static_cast<int>(status.error_code());
  if (code == 0) return "";
  return code > 0 && code <= 16 ? kNames[code] : absl::StrCat("code ", code);
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

// Waits until `counter` is at most `limit`, or `deadline`. Returns whether it got there.
bool WaitBelow(const std::atomic<int64_t>& counter, int64_t limit, absl::Time deadline) {
  while (counter.load() > limit) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace

std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const std::string& address, int count) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < std::max(count, 1); ++i) {
    grpc::ChannelArguments args;
    // Distinct arguments keep gRPC from sharing one subchannel (one TCP connection).
    args.SetInt("peco.bench.connection", i);
    args.SetMaxReceiveMessageSize(64 << 20);
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

// ---------------------------------------------------------------------------------------------
// Workers

struct SimulatedWorkers::Attempt {
  std::vector<int32_t> ranks;
  absl::Time started;
  bool reported = false;
  bool report_in_flight = false;
};

struct SimulatedWorkers::Worker {
  explicit Worker(int i, int slots) : index(i), free_slots(slots) {}
  const int index;
  absl::Mutex mu;
  std::string id ABSL_GUARDED_BY(mu);
  bool registered ABSL_GUARDED_BY(mu) = false;
  bool call_in_flight ABSL_GUARDED_BY(mu) = false;  // its Register or Heartbeat
  int free_slots ABSL_GUARDED_BY(mu);
  std::map<std::pair<std::string, int64_t>, Attempt> attempts ABSL_GUARDED_BY(mu);
  // Results sent in every heartbeat until one succeeds.
  std::vector<v1::AttemptResult> unacknowledged ABSL_GUARDED_BY(mu);
};

// The progress reports of a worker's newly started attempts, in one client stream (as
// peco-worker sends what its trainers reported since the last flush): per attempt, a start
// event and a step-1 point per rank.
class SimulatedWorkers::ReportStream : public grpc::ClientWriteReactor<v1::ReportProgressRequest> {
 public:
  struct Started {
    std::string job_id;
    int64_t attempt;
    std::vector<int32_t> ranks;
  };

  ReportStream(SimulatedWorkers* owner, Worker* worker, std::vector<Started> started, bool measured)
      : owner_(owner), worker_(worker), measured_(measured) {
    const int64_t now = NowMicros();
    for (const Started& one : started) {
      keys_.emplace_back(one.job_id, one.attempt);
      if (std::find(one.ranks.begin(), one.ranks.end(), 0) != one.ranks.end()) {
        v1::TrainerEvent* start = messages_.emplace_back().mutable_trainer_event();
        start->set_job_id(one.job_id);
        start->set_attempt(one.attempt);
        start->set_rank(0);
        start->set_type("start");
        start->set_message(R"({"event":"start","max_steps":1})");
        start->set_time_us(now);
      }
      for (int32_t rank : one.ranks) {
        v1::MetricPoint* point = messages_.emplace_back().mutable_metric_point();
        point->set_job_id(one.job_id);
        point->set_attempt(one.attempt);
        point->set_rank(rank);
        point->set_step(1);
        (*point->mutable_values())["loss"] = 1.0;
        (*point->mutable_values())["images_per_second"] = 100.0;
        point->set_time_us(now);
      }
    }
  }

  void Start(v1::WorkerService::Stub* stub) {
    owner_->Prepare(&context_);
    start_ = absl::Now();
    stub->async()->ReportProgress(&context_, &response_, this);
    WriteNext();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (ok) WriteNext();  // otherwise the stream is broken and OnDone follows
  }

  void OnDone(const grpc::Status& status) override {
    if (measured_) {
      owner_->recorder_->Record("ReportProgress", absl::Now() - start_, CodeName(status));
    }
    owner_->OnReportDone(*worker_, keys_, status.ok());
    owner_->in_flight_.fetch_sub(1);
    delete this;
  }

 private:
  void WriteNext() {
    if (next_ < messages_.size()) {
      StartWrite(&messages_[next_++]);
    } else {
      StartWritesDone();
    }
  }

  SimulatedWorkers* const owner_;
  Worker* const worker_;
  const bool measured_;
  std::vector<std::pair<std::string, int64_t>> keys_;
  std::vector<v1::ReportProgressRequest> messages_;
  size_t next_ = 0;
  grpc::ClientContext context_;
  v1::ReportProgressResponse response_;
  absl::Time start_;
};

SimulatedWorkers::SimulatedWorkers(const Endpoint& endpoint, Options options,
                                   LatencyRecorder* recorder, const std::atomic<bool>* measuring)
    : endpoint_(endpoint),
      options_(options),
      recorder_(recorder),
      measuring_(measuring),
      channels_(OpenChannels(endpoint.address, options.connections)) {
  for (const auto& channel : channels_) stubs_.push_back(v1::WorkerService::NewStub(channel));
  for (int i = 0; i < options_.count; ++i) {
    workers_.push_back(std::make_unique<Worker>(i, options_.cpu_slots));
  }
}

SimulatedWorkers::~SimulatedWorkers() { WaitIdle(absl::Seconds(60)); }

v1::WorkerService::Stub* SimulatedWorkers::StubFor(int index) const {
  return stubs_[static_cast<size_t>(index) % stubs_.size()].get();
}

void SimulatedWorkers::Prepare(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", absl::StrCat("Bearer ", endpoint_.worker_token));
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_deadline));
}

void SimulatedWorkers::Register(Worker& worker) {
  struct Call {
    grpc::ClientContext context;
    v1::RegisterRequest request;
    v1::RegisterResponse response;
    absl::Time start;
    bool measured = false;
  };
  auto call = std::make_shared<Call>();
  v1::WorkerInfo* info = call->request.mutable_worker();
  {
    absl::MutexLock lock(&worker.mu);
    info->set_id(worker.id);  // empty the first time: the coordinator names it
  }
  info->set_host("127.0.0.1");
  info->mutable_devices()->set_cpu_slots(options_.cpu_slots);
  info->mutable_ports()->set_first(20000);
  info->mutable_ports()->set_last(29999);
  Prepare(&call->context);
  call->measured = measuring_->load();
  call->start = absl::Now();
  in_flight_.fetch_add(1);
  StubFor(worker.index)
      ->async()
      ->Register(&call->context, &call->request, &call->response,
                 [this, &worker, call](grpc::Status status) {
                   if (call->measured) {
                     recorder_->Record("Register", absl::Now() - call->start, CodeName(status));
                   }
                   {
                     absl::MutexLock lock(&worker.mu);
                     worker.call_in_flight = false;
                     if (status.ok()) {
                       worker.registered = true;
                       worker.id = call->response.worker_id();
                     }
                   }
                   in_flight_.fetch_sub(1);
                 });
}

int SimulatedWorkers::RegisterAll(int in_flight, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (auto& worker : workers_) {
    if (!WaitBelow(in_flight_, in_flight - 1, deadline)) break;
    {
      absl::MutexLock lock(&worker->mu);
      if (worker->registered || worker->call_in_flight) continue;
      worker->call_in_flight = true;
    }
    Register(*worker);
  }
  WaitBelow(in_flight_, 0, deadline);
  int registered = 0;
  for (auto& worker : workers_) {
    absl::MutexLock lock(&worker->mu);
    registered += worker->registered ? 1 : 0;
  }
  return registered;
}

bool SimulatedWorkers::Beat(int index) {
  Worker& worker = *workers_[static_cast<size_t>(index) % workers_.size()];
  struct Call {
    grpc::ClientContext context;
    v1::HeartbeatRequest request;
    v1::HeartbeatResponse response;
    absl::Time start;
    int sent_results = 0;
    bool measured = false;
  };
  auto call = std::make_shared<Call>();
  std::vector<std::pair<std::string, int64_t>> to_report;
  bool register_instead = false;
  {
    absl::MutexLock lock(&worker.mu);
    if (worker.call_in_flight) return false;
    worker.call_in_flight = true;
    register_instead = !worker.registered;
  }
  if (register_instead) {
    Register(worker);
    return true;
  }
  {
    absl::MutexLock lock(&worker.mu);
    const absl::Time now = absl::Now();
    for (auto it = worker.attempts.begin(); it != worker.attempts.end();) {
      Attempt& attempt = it->second;
      if (attempt.reported && now - attempt.started >= options_.job_duration) {
        // Every rank exited 0: the worker reports the result until a heartbeat succeeds.
        v1::AttemptResult result;
        result.set_job_id(it->first.first);
        result.set_attempt(it->first.second);
        result.set_result(v1::AttemptResult::RESULT_SUCCEEDED);
        result.set_cause("exit");
        result.set_last_step(1);
        worker.unacknowledged.push_back(std::move(result));
        worker.free_slots += static_cast<int>(attempt.ranks.size());
        it = worker.attempts.erase(it);
        continue;
      }
      v1::RunningRanks* running = call->request.add_running();
      running->set_job_id(it->first.first);
      running->set_attempt(it->first.second);
      for (int32_t rank : attempt.ranks) running->add_ranks(rank);
      if (!attempt.reported && !attempt.report_in_flight) {
        attempt.report_in_flight = true;
        to_report.push_back(it->first);
      }
      ++it;
    }
    call->request.set_worker_id(worker.id);
    call->request.mutable_free_devices()->set_cpu_slots(std::max(0, worker.free_slots));
    for (const v1::AttemptResult& result : worker.unacknowledged) {
      *call->request.add_finished() = result;
    }
    call->sent_results = static_cast<int>(worker.unacknowledged.size());
  }
  StartReports(worker, std::move(to_report));
  Prepare(&call->context);
  call->measured = measuring_->load();
  call->start = absl::Now();
  in_flight_.fetch_add(1);
  StubFor(worker.index)
      ->async()
      ->Heartbeat(&call->context, &call->request, &call->response,
                  [this, &worker, call](grpc::Status status) {
                    OnHeartbeat(worker, status, call->response, call->sent_results, call->measured,
                                absl::Now() - call->start);
                    in_flight_.fetch_sub(1);
                  });
  return true;
}

void SimulatedWorkers::OnHeartbeat(Worker& worker, const grpc::Status& status,
                                   const v1::HeartbeatResponse& response, int sent_results,
                                   bool measured, absl::Duration latency) {
  if (measured) recorder_->Record("Heartbeat", latency, CodeName(status));
  std::vector<std::pair<std::string, int64_t>> to_report;
  {
    absl::MutexLock lock(&worker.mu);
    worker.call_in_flight = false;
    if (!status.ok()) {
      // NOT_FOUND: the coordinator forgot this worker; it registers again with its id.
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) worker.registered = false;
      return;
    }
    {
      absl::MutexLock times(&times_mu_);
      for (int i = 0; i < sent_results; ++i) {
        ++results_[v1::AttemptResult::Result_Name(worker.unacknowledged[i].result())];
      }
    }
    worker.unacknowledged.erase(worker.unacknowledged.begin(),
                                worker.unacknowledged.begin() + sent_results);
    for (const v1::RunningRanks& stale : response.stale()) {
      auto it = worker.attempts.find({stale.job_id(), stale.attempt()});
      if (it == worker.attempts.end()) continue;
      worker.free_slots += static_cast<int>(it->second.ranks.size());
      worker.attempts.erase(it);
    }
    for (const v1::Cancellation& cancellation : response.cancellations()) {
      auto it = worker.attempts.find({cancellation.job_id(), cancellation.attempt()});
      if (it == worker.attempts.end()) continue;
      v1::AttemptResult result;
      result.set_job_id(cancellation.job_id());
      result.set_attempt(cancellation.attempt());
      result.set_result(v1::AttemptResult::RESULT_STOPPED);
      result.set_cause("cancel");
      result.set_last_step(1);
      worker.unacknowledged.push_back(std::move(result));
      worker.free_slots += static_cast<int>(it->second.ranks.size());
      worker.attempts.erase(it);
    }
    const absl::Time now = absl::Now();
    int64_t received = 0;
    for (const v1::Assignment& assignment : response.assignments()) {
      const std::pair<std::string, int64_t> key{assignment.job_id(), assignment.attempt()};
      if (worker.attempts.count(key) > 0) continue;  // already running
      Attempt& attempt = worker.attempts[key];
      attempt.ranks.assign(assignment.ranks().begin(), assignment.ranks().end());
      attempt.started = now;
      attempt.report_in_flight = true;
      worker.free_slots -= static_cast<int>(attempt.ranks.size());
      to_report.push_back(key);
      ++received;
    }
    if (received > 0) {
      assignments_.fetch_add(received);
      absl::MutexLock times(&times_mu_);
      assignment_times_.insert(assignment_times_.end(), received, now);
    }
  }
  StartReports(worker, std::move(to_report));
}

void SimulatedWorkers::StartReports(Worker& worker,
                                    std::vector<std::pair<std::string, int64_t>> keys) {
  std::vector<ReportStream::Started> started;
  {
    absl::MutexLock lock(&worker.mu);
    for (const auto& [job_id, number] : keys) {
      auto it = worker.attempts.find({job_id, number});
      if (it == worker.attempts.end()) continue;
      started.push_back({job_id, number, it->second.ranks});
    }
  }
  if (started.empty()) return;
  in_flight_.fetch_add(1);
  auto* stream = new ReportStream(this, &worker, std::move(started), measuring_->load());
  stream->Start(StubFor(worker.index));
}

void SimulatedWorkers::OnReportDone(Worker& worker,
                                    const std::vector<std::pair<std::string, int64_t>>& keys,
                                    bool ok) {
  absl::MutexLock lock(&worker.mu);
  for (const auto& key : keys) {
    auto it = worker.attempts.find(key);
    if (it == worker.attempts.end()) continue;
    it->second.report_in_flight = false;
    it->second.reported = ok;  // a failed report is sent again at the next heartbeat
  }
}

std::vector<absl::Time> SimulatedWorkers::AssignmentTimes() const {
  absl::MutexLock lock(&times_mu_);
  return assignment_times_;
}

std::map<std::string, int64_t> SimulatedWorkers::ResultsDelivered() const {
  absl::MutexLock lock(&times_mu_);
  return results_;
}

bool SimulatedWorkers::WaitIdle(absl::Duration timeout) {
  return WaitBelow(in_flight_, 0, absl::Now() + timeout);
}

// ---------------------------------------------------------------------------------------------
// Users

// `peco watch JOB`: WatchJob with history until the job ends.
class SimulatedUsers::Watch : public grpc::ClientReadReactor<v1::WatchJobEvent> {
 public:
  Watch(SimulatedUsers* owner, int user, std::string job_id, absl::Time submitted, bool measured)
      : owner_(owner),
        user_(user),
        job_id_(std::move(job_id)),
        submitted_(submitted),
        measured_(measured) {}

  void Start(v1::JobService::Stub* stub) {
    request_.set_job_id(job_id_);
    request_.set_include_history(true);
    owner_->Prepare(&context_, /*with_deadline=*/false);
    start_ = absl::Now();
    stub->async()->WatchJob(&context_, &request_, this);
    StartRead(&event_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (!first_seen_) {
      first_seen_ = true;
      if (measured_) owner_->recorder_->Record("WatchJob (first event)", absl::Now() - start_, "");
    }
    if (event_.has_state_change() && IsTerminal(event_.state_change().state())) {
      terminal_ = event_.state_change().state();
      if (measured_) {
        owner_->recorder_->Record("job: submit to terminal", absl::Now() - submitted_, "");
      }
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    if (measured_ && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      owner_->recorder_->Record("WatchJob (first event)", absl::Now() - start_, CodeName(status));
    }
    owner_->OnWatchDone(this, user_, job_id_, measured_, terminal_);
    delete this;
  }

 private:
  SimulatedUsers* const owner_;
  const int user_;
  const std::string job_id_;
  const absl::Time submitted_;
  const bool measured_;
  grpc::ClientContext context_;
  v1::WatchJobRequest request_;
  v1::WatchJobEvent event_;
  absl::Time start_;
  bool first_seen_ = false;
  v1::JobState terminal_ = v1::JOB_STATE_UNSPECIFIED;
};

SimulatedUsers::SimulatedUsers(const Endpoint& endpoint, Options options, LatencyRecorder* recorder,
                               const std::atomic<bool>* measuring)
    : endpoint_(endpoint),
      options_(std::move(options)),
      recorder_(recorder),
      measuring_(measuring),
      channels_(OpenChannels(endpoint.address, options_.connections)) {
  for (const auto& channel : channels_) stubs_.push_back(v1::JobService::NewStub(channel));
}

SimulatedUsers::~SimulatedUsers() { Shutdown(absl::Seconds(60)); }

void SimulatedUsers::Prepare(grpc::ClientContext* context, bool with_deadline) const {
  context->AddMetadata("authorization", absl::StrCat("Bearer ", endpoint_.user_token));
  if (with_deadline) {
    context->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_deadline));
  }
}

void SimulatedUsers::Submit(int user) {
  struct Call {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    v1::SubmitJobResponse response;
    absl::Time start;
    bool measured = false;
  };
  auto call = std::make_shared<Call>();
  const int64_t sequence = sequence_.fetch_add(1) + 1;
  call->request.set_client_request_id(absl::StrCat(options_.run_id, "-", sequence));
  v1::JobSpec* spec = call->request.mutable_spec();
  spec->set_kind(options_.kind);
  spec->set_name(absl::StrCat("bench-user-", user));
  spec->set_config_yaml(options_.distinct_configs
                            ? absl::StrCat(options_.config_yaml, "\n# bench job ", sequence, "\n")
                            : options_.config_yaml);
  Prepare(&call->context, /*with_deadline=*/true);
  call->measured = measuring_->load();
  call->start = absl::Now();
  in_flight_.fetch_add(1);
  stubs_[static_cast<size_t>(user) % stubs_.size()]->async()->SubmitJob(
      &call->context, &call->request, &call->response, [this, call, user](grpc::Status status) {
        if (call->measured) {
          recorder_->Record("SubmitJob", absl::Now() - call->start, CodeName(status));
        }
        if (status.ok()) {
          submitted_.fetch_add(1);
          if (options_.watch) {
            StartWatch(user, call->response.job().id(), call->start, call->measured);
          }
        } else {
          submit_failures_.fetch_add(1);
        }
        in_flight_.fetch_sub(1);
      });
}

void SimulatedUsers::StartWatch(int user, const std::string& job_id, absl::Time submitted,
                                bool measured) {
  Watch* watch;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ || static_cast<int>(watches_.size()) >= options_.max_watches) return;
    watch = new Watch(this, user, job_id, submitted, measured);
    watches_.insert(watch);
    in_flight_.fetch_add(1);
  }
  watch->Start(stubs_[static_cast<size_t>(user) % stubs_.size()].get());
}

void SimulatedUsers::OnWatchDone(Watch* watch, int user, const std::string& job_id, bool measured,
                                 v1::JobState terminal) {
  {
    absl::MutexLock lock(&mu_);
    watches_.erase(watch);
    if (terminal != v1::JOB_STATE_UNSPECIFIED) ++outcomes_[v1::JobState_Name(terminal)];
    if (shutting_down_ || terminal == v1::JOB_STATE_UNSPECIFIED) {
      in_flight_.fetch_sub(1);
      return;
    }
  }
  // `peco watch` reads the job once more at the end; the watch's in-flight count passes on.
  struct Call {
    grpc::ClientContext context;
    v1::GetJobRequest request;
    v1::GetJobResponse response;
    absl::Time start;
  };
  auto call = std::make_shared<Call>();
  call->request.set_job_id(job_id);
  Prepare(&call->context, /*with_deadline=*/true);
  call->start = absl::Now();
  stubs_[static_cast<size_t>(user) % stubs_.size()]->async()->GetJob(
      &call->context, &call->request, &call->response, [this, call, measured](grpc::Status status) {
        if (measured) recorder_->Record("GetJob", absl::Now() - call->start, CodeName(status));
        in_flight_.fetch_sub(1);
      });
}

std::map<std::string, int64_t> SimulatedUsers::Outcomes() const {
  absl::MutexLock lock(&mu_);
  return outcomes_;
}

bool SimulatedUsers::Shutdown(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (Watch* watch : watches_) watch->Cancel();
  }
  return WaitBelow(in_flight_, 0, absl::Now() + timeout);
}

}  // namespace peco::bench
