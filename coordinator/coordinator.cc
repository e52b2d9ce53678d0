#include "coordinator/coordinator.h"

#include <openssl/rand.h>

#include <algorithm>
#include <iostream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "coordinator/job_state_machine.h"
#include "proto/job_kind_names.h"

namespace peco::coordinator {
namespace {

constexpr int kListPageSize = 500;

// Every job in the given states, all pages.
absl::StatusOr<std::vector<v1::Job>> AllJobs(JobStore* store, std::vector<v1::JobState> states) {
  std::vector<v1::Job> jobs;
  JobQuery query;
  query.states = std::move(states);
  query.page_size = kListPageSize;
  while (true) {
    ASSIGN_OR_RETURN(JobPage page, store->ListJobs(query));
    for (v1::Job& job : page.jobs) jobs.push_back(std::move(job));
    if (page.next_page_token.empty()) return jobs;
    query.page_token = page.next_page_token;
  }
}

bool PlacedOn(const v1::Attempt& attempt, const std::string& worker_id) {
  for (const v1::RankPlacement& placement : attempt.placements()) {
    if (placement.worker_id() == worker_id) return true;
  }
  return false;
}

const v1::RankPlacement* PlacementOf(const v1::Attempt& attempt, const std::string& worker_id) {
  for (const v1::RankPlacement& placement : attempt.placements()) {
    if (placement.worker_id() == worker_id) return &placement;
  }
  return nullptr;
}

bool HoldsRankZero(const v1::Attempt& attempt, const std::string& worker_id) {
  const v1::RankPlacement* placement = PlacementOf(attempt, worker_id);
  if (placement == nullptr) return false;
  return std::find(placement->ranks().begin(), placement->ranks().end(), 0) !=
         placement->ranks().end();
}

std::string NewWorkerId() {
  unsigned char bytes[6];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::StrCat("worker-", absl::ToUnixMicros(absl::Now()));
  }
  return absl::StrCat("worker-", absl::BytesToHexString(absl::string_view(
                                     reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

std::string CheckpointIdFor(const v1::CheckpointHeader& header) {
  return absl::StrFormat("%s-a%d-step-%012d", header.job_id(), header.attempt(), header.step());
}

void Log(const std::string& line) { std::cerr << "peco-coordinator: " << line << "\n"; }

}  // namespace

absl::Status CoordinatorOptions::Validate() const {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("coordinator options: ", field, ": ", why));
  };
  if (heartbeat_interval <= absl::ZeroDuration()) return bad("heartbeat_interval", "must be > 0");
  if (worker_timeout <= heartbeat_interval) {
    return bad("worker_timeout", "must be longer than heartbeat_interval");
  }
  if (cancel_grace < absl::ZeroDuration()) return bad("cancel_grace", "must be >= 0");
  if (keep_checkpoints < 1) return bad("keep_checkpoints", "must be >= 1");
  if (default_max_restarts < 0) return bad("default_max_restarts", "must be >= 0");
  return scheduler.Validate();
}

Coordinator::Coordinator(CoordinatorOptions options, JobStore* store,
                         CheckpointFileStore* checkpoints, SpecValidator* validator, Clock* clock,
                         JobEventHub* events, CoordinatorMetrics* metrics)
    : options_(std::move(options)),
      store_(store),
      checkpoints_(checkpoints),
      validator_(validator),
      clock_(clock),
      events_(events),
      metrics_(metrics) {}

int64_t Coordinator::NowMicros() const { return absl::ToUnixMicros(clock_->Now()); }

int Coordinator::MaxRestarts(const v1::Job& job) const {
  return job.spec().has_max_restarts() ? job.spec().max_restarts() : options_.default_max_restarts;
}

absl::Status Coordinator::Recover() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers, store_->ListWorkers());
  for (v1::WorkerInfo& info : workers) {
    // Everyone gets a fresh timeout: the coordinator, not the workers, was away.
    const std::string id = info.id();
    workers_[id] = WorkerRuntime{std::move(info), now};
  }
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs,
                   AllJobs(store_, {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING}));
  for (const v1::Job& job : jobs) RefreshActiveLocked(job);
  ASSIGN_OR_RETURN(std::vector<v1::Job> restarting, AllJobs(store_, {v1::JOB_STATE_RESTARTING}));
  for (const v1::Job& job : restarting) pending_since_[job.id()] = now;
  if (metrics_ != nullptr) {
    // One full count; afterwards every transition moves the gauges.
    ASSIGN_OR_RETURN(std::vector<v1::Job> all, AllJobs(store_, {}));
    std::map<v1::JobState, int64_t> counts;
    for (const v1::Job& job : all) ++counts[job.state()];
    metrics_->SetJobsByState(counts);
  }
  Log(absl::StrCat("recovered ", workers_.size(), " workers and ", active_.size(),
                   " active attempts"));
  return absl::OkStatus();
}

void Coordinator::RefreshActiveLocked(const v1::Job& job) {
  if (!HoldsDevices(job.state())) {
    active_.erase(job.id());
    return;
  }
  auto it = active_.find(job.id());
  if (it != active_.end() && it->second.attempt.number() == job.attempt()) {
    it->second.job = job;
    it->second.attempt.set_state(job.state());
    return;
  }
  absl::StatusOr<std::vector<v1::Attempt>> attempts = store_->ListAttempts(job.id());
  if (!attempts.ok() || attempts->empty()) {
    Log(absl::StrCat("cannot load the attempts of ", job.id(), ": ",
                     attempts.ok() ? "none recorded" : attempts.status().ToString()));
    active_.erase(job.id());
    return;
  }
  active_[job.id()] = ActiveAttempt{job, attempts->back()};
}

void Coordinator::PublishState(const v1::Job& job, const std::string& reason) {
  v1::WatchJobEvent event;
  v1::JobStateChange* change = event.mutable_state_change();
  change->set_job_id(job.id());
  change->set_attempt(job.attempt());
  change->set_state(job.state());
  change->set_reason(reason);
  change->set_time_us(NowMicros());
  events_->Publish(job.id(), std::move(event));
}

absl::StatusOr<v1::Job> Coordinator::TransitionLocked(const v1::Job& job, v1::JobState state,
                                                      const std::string& reason) {
  ASSIGN_OR_RETURN(v1::Job updated,
                   store_->UpdateJobState({job.id(), job.attempt(), state, reason, NowMicros()}));
  RefreshActiveLocked(updated);
  if (state == v1::JOB_STATE_RESTARTING) {
    pending_since_[updated.id()] = clock_->Now();
  } else if (state != v1::JOB_STATE_QUEUED && state != v1::JOB_STATE_WAITING) {
    pending_since_.erase(updated.id());
  }
  if (metrics_ != nullptr) {
    metrics_->CountJobTransition(job.state(), state);
    if (!HoldsDevices(state)) metrics_->ForgetJob(updated.id());
  }
  PublishState(updated, reason);
  Log(absl::StrCat(updated.id(), " attempt ", updated.attempt(), ": ", JobStateName(state),
                   reason.empty() ? "" : absl::StrCat(" (", reason, ")")));
  return updated;
}

// ---------------------------------------------------------------------------------------------
// JobService

absl::StatusOr<v1::SubmitJobResponse> Coordinator::SubmitJob(const v1::SubmitJobRequest& request) {
  v1::JobSpec spec = request.spec();
  NormalizeJobSpec(&spec);
  RETURN_IF_ERROR(CheckJobSpecFields(spec, options_.spec_limits));
  if (request.client_request_id().size() > 128) {
    return absl::InvalidArgumentError("client_request_id: expected at most 128 characters");
  }
  // Dependencies must exist now.
  if (spec.depends_on().has_job_id()) {
    absl::StatusOr<v1::Job> dependency = store_->GetJob(spec.depends_on().job_id());
    if (absl::IsNotFound(dependency.status())) {
      return absl::NotFoundError(
          absl::StrCat("spec.depends_on.job_id: no job ", spec.depends_on().job_id()));
    }
    RETURN_IF_ERROR(dependency.status());
  } else if (spec.depends_on().has_checkpoint_id()) {
    absl::StatusOr<v1::CheckpointInfo> dependency =
        store_->GetCheckpoint(spec.depends_on().checkpoint_id());
    if (absl::IsNotFound(dependency.status())) {
      return absl::NotFoundError(absl::StrCat("spec.depends_on.checkpoint_id: no checkpoint ",
                                              spec.depends_on().checkpoint_id()));
    }
    RETURN_IF_ERROR(dependency.status());
  }
  // The trainer's own check of its config runs outside the lock (it starts a process).
  if (validator_ != nullptr) RETURN_IF_ERROR(validator_->Validate(spec));

  absl::MutexLock lock(&mu_);
  NewJob new_job;
  new_job.spec = spec;
  new_job.client_request_id = request.client_request_id();
  new_job.submit_time_us = NowMicros();
  ASSIGN_OR_RETURN(CreateJobResult created, store_->CreateJob(new_job));
  v1::SubmitJobResponse response;
  *response.mutable_job() = created.job;
  response.set_created(created.created);
  if (created.created) {
    if (metrics_ != nullptr) {
      metrics_->CountJobTransition(v1::JOB_STATE_UNSPECIFIED, created.job.state());
    }
    PublishState(created.job, "submitted");
    Log(absl::StrCat(created.job.id(), " submitted: ", spec.name(), " (",
                     v1::JobKindName(spec.kind()), ", ", spec.world_size(), " ranks)"));
    absl::Status scheduled = ScheduleLocked(/*resume_points=*/{});
    if (!scheduled.ok()) Log(absl::StrCat("scheduling pass failed: ", scheduled.ToString()));
    // The job may have been placed or moved to WAITING already.
    absl::StatusOr<v1::Job> now = store_->GetJob(created.job.id());
    if (now.ok()) *response.mutable_job() = *now;
  }
  return response;
}

absl::StatusOr<v1::GetJobResponse> Coordinator::GetJob(const v1::GetJobRequest& request) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  v1::GetJobResponse response;
  ASSIGN_OR_RETURN(*response.mutable_job(), store_->GetJob(request.job_id()));
  ASSIGN_OR_RETURN(std::vector<v1::Attempt> attempts, store_->ListAttempts(request.job_id()));
  for (v1::Attempt& attempt : attempts) *response.add_attempts() = std::move(attempt);
  return response;
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(const v1::ListJobsRequest& request) {
  JobQuery query;
  for (int state : request.states()) query.states.push_back(static_cast<v1::JobState>(state));
  query.page_size = request.page_size() == 0 ? 100 : request.page_size();
  query.page_token = request.page_token();
  ASSIGN_OR_RETURN(JobPage page, store_->ListJobs(query));
  v1::ListJobsResponse response;
  for (v1::Job& job : page.jobs) *response.add_jobs() = std::move(job);
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<v1::CancelJobResponse> Coordinator::CancelJob(const v1::CancelJobRequest& request) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  const std::string reason =
      request.reason().empty() ? std::string("cancelled by the user") : request.reason();
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(request.job_id()));
  v1::CancelJobResponse response;
  switch (job.state()) {
    case v1::JOB_STATE_CANCELLED:
      *response.mutable_job() = job;
      return response;
    case v1::JOB_STATE_SUCCEEDED:
    case v1::JOB_STATE_FAILED:
      return absl::FailedPreconditionError(
          absl::StrCat("job ", job.id(), " has already ", JobStateName(job.state())));
    case v1::JOB_STATE_ASSIGNED:
    case v1::JOB_STATE_RUNNING: {
      if (job.cancel_requested_time_us() == 0) {
        JobControlUpdate update;
        update.job_id = job.id();
        update.expected_attempt = job.attempt();
        update.cancel_requested_time_us = NowMicros();
        update.cancel_reason = reason;
        ASSIGN_OR_RETURN(job, store_->UpdateJobControl(update));
        RefreshActiveLocked(job);
        Log(absl::StrCat(job.id(), ": cancellation requested (", reason, ")"));
      }
      *response.mutable_job() = job;
      return response;
    }
    default: {
      ASSIGN_OR_RETURN(*response.mutable_job(),
                       TransitionLocked(job, v1::JOB_STATE_CANCELLED, reason));
      return response;
    }
  }
}

absl::StatusOr<v1::ResumeJobResponse> Coordinator::ResumeJob(const v1::ResumeJobRequest& request) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  if (!request.checkpoint_id().empty()) {
    // Hashing a checkpoint takes a while: done before the lock, which heartbeats need.
    absl::StatusOr<v1::CheckpointInfo> info = store_->GetCheckpoint(request.checkpoint_id());
    if (absl::IsNotFound(info.status())) {
      return absl::NotFoundError(
          absl::StrCat("checkpoint_id: no checkpoint ", request.checkpoint_id()));
    }
    RETURN_IF_ERROR(info.status());
    if (info->job_id() != request.job_id()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint_id: ", info->id(),
                                                     " belongs to job ", info->job_id(), ", not ",
                                                     request.job_id()));
    }
    absl::StatusOr<std::vector<v1::ManifestEntry>> verified =
        checkpoints_->OpenForRead(info->job_id(), info->id());
    if (!verified.ok()) {
      if (metrics_ != nullptr && absl::IsDataLoss(verified.status())) {
        metrics_->CountVerificationFailure();
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint_id: ", info->id(), " cannot be used: ", verified.status().message()));
    }
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(request.job_id()));
  if (job.state() != v1::JOB_STATE_FAILED && job.state() != v1::JOB_STATE_CANCELLED) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job.id(), " is ", JobStateName(job.state()),
                     "; only failed or cancelled jobs can be resumed"));
  }
  JobControlUpdate update;
  update.job_id = job.id();
  update.expected_attempt = job.attempt();
  update.next_resume_checkpoint_id = request.checkpoint_id();
  ASSIGN_OR_RETURN(job, store_->UpdateJobControl(update));
  if (metrics_ != nullptr) metrics_->CountRestart("resumed");
  ASSIGN_OR_RETURN(job,
                   TransitionLocked(job, v1::JOB_STATE_RESTARTING,
                                    request.checkpoint_id().empty()
                                        ? "resumed from the newest checkpoint"
                                        : absl::StrCat("resumed from ", request.checkpoint_id())));
  // The next Tick() places it, once it has chosen the checkpoint outside the lock.
  v1::ResumeJobResponse response;
  ASSIGN_OR_RETURN(*response.mutable_job(), store_->GetJob(job.id()));
  return response;
}

absl::StatusOr<v1::ListCheckpointsResponse> Coordinator::ListCheckpoints(
    const v1::ListCheckpointsRequest& request) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  RETURN_IF_ERROR(store_->GetJob(request.job_id()).status());
  ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> infos,
                   store_->ListCheckpoints(request.job_id()));
  v1::ListCheckpointsResponse response;
  for (v1::CheckpointInfo& info : infos) *response.add_checkpoints() = std::move(info);
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> Coordinator::ListWorkers(
    const v1::ListWorkersRequest& request) {
  absl::MutexLock lock(&mu_);
  std::map<std::string, v1::WorkerDevices> held = HeldDevicesLocked();
  v1::ListWorkersResponse response;
  for (const auto& [id, worker] : workers_) {
    v1::WorkerInfo* info = response.add_workers();
    *info = worker.info;
    info->set_last_heartbeat_us(absl::ToUnixMicros(worker.last_heartbeat));
    const v1::WorkerDevices& used = held[id];
    info->mutable_free_devices()->set_gpus(std::max(0, worker.info.devices().gpus() - used.gpus()));
    info->mutable_free_devices()->set_cpu_slots(
        std::max(0, worker.info.devices().cpu_slots() - used.cpu_slots()));
  }
  return response;
}

absl::StatusOr<std::vector<v1::WatchJobEvent>> Coordinator::JobHistory(const std::string& job_id) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  ASSIGN_OR_RETURN(std::vector<v1::Attempt> attempts, store_->ListAttempts(job_id));
  MetricQuery query;
  query.job_id = job_id;
  ASSIGN_OR_RETURN(std::vector<v1::MetricPoint> points, store_->ListMetricPoints(query));

  std::vector<v1::WatchJobEvent> events;
  auto add_state = [&](int64_t attempt, v1::JobState state, const std::string& reason,
                       int64_t time_us) {
    v1::WatchJobEvent event;
    v1::JobStateChange* change = event.mutable_state_change();
    change->set_job_id(job_id);
    change->set_attempt(attempt);
    change->set_state(state);
    change->set_reason(reason);
    change->set_time_us(time_us);
    events.push_back(std::move(event));
  };
  add_state(0, v1::JOB_STATE_QUEUED, "submitted", job.submit_time_us());
  for (const v1::Attempt& attempt : attempts) {
    add_state(attempt.number(), v1::JOB_STATE_ASSIGNED,
              attempt.resume_checkpoint_id().empty()
                  ? "fresh start"
                  : absl::StrCat("resuming from ", attempt.resume_checkpoint_id()),
              attempt.start_time_us());
    if (attempt.number() < job.attempt() || attempt.state() == v1::JOB_STATE_RESTARTING) {
      add_state(attempt.number(), attempt.state(), attempt.failure_reason(), attempt.end_time_us());
    }
  }
  for (v1::MetricPoint& point : points) {
    v1::WatchJobEvent event;
    *event.mutable_metric_point() = std::move(point);
    events.push_back(std::move(event));
  }
  // The job's current state closes the history; a change that already says it moves there.
  auto last_change = std::find_if(events.rbegin(), events.rend(),
                                  [](const v1::WatchJobEvent& e) { return e.has_state_change(); });
  if (last_change != events.rend() && last_change->state_change().attempt() == job.attempt() &&
      last_change->state_change().state() == job.state()) {
    v1::WatchJobEvent closing = std::move(*last_change);
    events.erase(std::next(last_change).base());
    events.push_back(std::move(closing));
    return events;
  }
  add_state(job.attempt(), job.state(),
            job.state() == v1::JOB_STATE_CANCELLED ? job.cancel_reason() : job.failure_reason(),
            IsTerminal(job.state()) ? job.end_time_us() : NowMicros());
  return events;
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::OpenCheckpoint(const std::string& checkpoint_id) {
  if (checkpoint_id.empty()) {
    return absl::InvalidArgumentError("checkpoint_id: must not be empty");
  }
  ASSIGN_OR_RETURN(v1::CheckpointInfo info, store_->GetCheckpoint(checkpoint_id));
  absl::StatusOr<std::vector<v1::ManifestEntry>> verified =
      checkpoints_->OpenForRead(info.job_id(), info.id());
  if (!verified.ok()) {
    if (metrics_ != nullptr && absl::IsDataLoss(verified.status())) {
      metrics_->CountVerificationFailure();
    }
    return verified.status();
  }
  return info;
}

absl::StatusOr<std::string> Coordinator::ReadCheckpointChunk(const v1::CheckpointInfo& info,
                                                             const std::string& file_name,
                                                             int64_t offset, int64_t max_bytes) {
  return checkpoints_->ReadChunk(info.job_id(), info.id(), file_name, offset, max_bytes);
}

// ---------------------------------------------------------------------------------------------
// WorkerService

absl::StatusOr<v1::RegisterResponse> Coordinator::Register(const v1::RegisterRequest& request) {
  v1::WorkerInfo info = request.worker();
  if (info.devices().gpus() < 0 || info.devices().cpu_slots() < 0 ||
      (info.devices().gpus() == 0 && info.devices().cpu_slots() == 0)) {
    return absl::InvalidArgumentError(
        "worker.devices: expected gpus >= 0 and cpu_slots >= 0, not both 0");
  }
  if (info.ports().first() < 1 || info.ports().last() > 65535 ||
      info.ports().first() > info.ports().last()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker.ports: expected 1 <= first <= last <= 65535, got ",
                     info.ports().first(), "-", info.ports().last()));
  }
  if (info.id().size() > 128) {
    return absl::InvalidArgumentError("worker.id: expected at most 128 characters");
  }
  if (info.host().empty()) info.set_host("127.0.0.1");

  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  if (info.id().empty()) {
    do {
      info.set_id(NewWorkerId());
    } while (workers_.count(info.id()) > 0);
  }
  info.set_state(v1::WORKER_STATE_ALIVE);
  info.set_last_heartbeat_us(absl::ToUnixMicros(now));
  info.clear_free_devices();
  RETURN_IF_ERROR(store_->UpsertWorker(info));
  workers_[info.id()] = WorkerRuntime{info, now};

  v1::RegisterResponse response;
  response.set_worker_id(info.id());
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  std::set<std::pair<std::string, int64_t>> reported;
  for (const v1::RunningRanks& running : request.running()) {
    reported.insert({running.job_id(), running.attempt()});
    auto it = active_.find(running.job_id());
    if (it != active_.end() && it->second.attempt.number() == running.attempt() &&
        PlacedOn(it->second.attempt, info.id())) {
      MarkRunningLocked(running.job_id(), running.attempt());  // re-attached
    } else {
      *response.add_stale() = running;
    }
  }
  // Attempts placed here that the worker no longer runs died with its previous process.
  std::vector<std::pair<std::string, int64_t>> lost;
  for (const auto& [job_id, active] : active_) {
    if (PlacedOn(active.attempt, info.id()) &&
        reported.count({job_id, active.attempt.number()}) == 0 &&
        active.job.state() == v1::JOB_STATE_RUNNING) {
      lost.emplace_back(job_id, active.attempt.number());
    }
  }
  for (const auto& [job_id, attempt] : lost) {
    absl::Status ended = EndAttemptLocked(
        job_id, attempt, AttemptEnd::kFailed, /*retryable=*/true,
        absl::StrCat("worker ", info.id(), " restarted without the trainer"), "worker_lost");
    if (!ended.ok()) Log(ended.ToString());
  }
  Log(absl::StrCat("worker ", info.id(), " registered from ", info.host(), " (",
                   info.devices().cpu_slots(), " CPU slots, ", info.devices().gpus(), " GPUs, ",
                   request.running_size(), " running attempts, ", response.stale_size(),
                   " stale)"));
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(const v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  auto worker_it = workers_.find(request.worker_id());
  if (worker_it == workers_.end()) {
    return absl::NotFoundError(
        absl::StrCat("worker_id: unknown worker '", request.worker_id(), "'; register again"));
  }
  WorkerRuntime& worker = worker_it->second;
  const std::string& worker_id = worker_it->first;
  worker.last_heartbeat = clock_->Now();
  *worker.info.mutable_free_devices() = request.free_devices();
  if (worker.info.state() != v1::WORKER_STATE_ALIVE &&
      worker.info.state() != v1::WORKER_STATE_DRAINING) {
    worker.info.set_state(v1::WORKER_STATE_ALIVE);
    RETURN_IF_ERROR(store_->UpsertWorker(worker.info));
    Log(absl::StrCat("worker ", worker_id, " is back"));
  }

  // Results first: they may end attempts the rest of the exchange would otherwise resend.
  std::set<std::pair<std::string, int64_t>> finished;
  for (const v1::AttemptResult& result : request.finished()) {
    finished.insert({result.job_id(), result.attempt()});
    auto it = active_.find(result.job_id());
    if (it == active_.end() || it->second.attempt.number() != result.attempt()) continue;
    const bool rank_zero = HoldsRankZero(it->second.attempt, worker_id);
    absl::Status ended = absl::OkStatus();
    switch (result.result()) {
      case v1::AttemptResult::RESULT_SUCCEEDED:
        if (rank_zero) {
          ended = EndAttemptLocked(result.job_id(), result.attempt(), AttemptEnd::kSucceeded, false,
                                   "", "");
        }
        break;
      case v1::AttemptResult::RESULT_STOPPED:
        if (rank_zero) {
          ended = EndAttemptLocked(result.job_id(), result.attempt(), AttemptEnd::kStopped, true,
                                   "the trainer stopped without a cancellation from peco",
                                   "trainer_stopped");
        }
        break;
      default:
        ended = EndAttemptLocked(
            result.job_id(), result.attempt(), AttemptEnd::kFailed, result.retryable(),
            result.reason().empty() ? std::string("the trainer failed") : result.reason(),
            result.cause() == "stall" ? "trainer_stalled" : "trainer_failed");
        break;
    }
    if (!ended.ok()) Log(absl::StrCat("applying a result of ", worker_id, ": ", ended.ToString()));
  }

  v1::HeartbeatResponse response;
  std::set<std::pair<std::string, int64_t>> running;
  for (const v1::RunningRanks& ranks : request.running()) {
    running.insert({ranks.job_id(), ranks.attempt()});
    auto it = active_.find(ranks.job_id());
    if (it == active_.end() || it->second.attempt.number() != ranks.attempt() ||
        !PlacedOn(it->second.attempt, worker_id)) {
      *response.add_stale() = ranks;
      continue;
    }
    MarkRunningLocked(ranks.job_id(), ranks.attempt());
  }

  const absl::Time now = clock_->Now();
  for (const auto& [job_id, active] : active_) {
    const v1::RankPlacement* placement = PlacementOf(active.attempt, worker_id);
    if (placement == nullptr) continue;
    const std::pair<std::string, int64_t> key{job_id, active.attempt.number()};
    if (finished.count(key) > 0) continue;
    if (active.job.cancel_requested_time_us() > 0) {
      if (running.count(key) > 0) {
        v1::Cancellation* cancel = response.add_cancellations();
        cancel->set_job_id(job_id);
        cancel->set_attempt(active.attempt.number());
        const absl::Time deadline =
            absl::FromUnixMicros(active.job.cancel_requested_time_us()) + options_.cancel_grace;
        cancel->set_deadline_ms(std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - now)));
        cancel->set_reason(active.job.cancel_reason());
      }
      continue;  // a cancelled attempt is not (re)assigned
    }
    if (active.job.state() == v1::JOB_STATE_ASSIGNED && running.count(key) == 0) {
      v1::Assignment* assignment = response.add_assignments();
      assignment->set_job_id(job_id);
      assignment->set_attempt(active.attempt.number());
      *assignment->mutable_spec() = active.job.spec();
      *assignment->mutable_ranks() = placement->ranks();
      assignment->set_world_size(active.job.spec().world_size());
      assignment->set_master_addr(active.attempt.master_addr());
      assignment->set_master_port(active.attempt.master_port());
      assignment->set_resume_checkpoint_id(active.attempt.resume_checkpoint_id());
    }
  }
  return response;
}

void Coordinator::MarkRunningLocked(const std::string& job_id, int64_t attempt) {
  auto it = active_.find(job_id);
  if (it == active_.end() || it->second.attempt.number() != attempt ||
      it->second.job.state() != v1::JOB_STATE_ASSIGNED) {
    return;
  }
  absl::StatusOr<v1::Job> updated = TransitionLocked(it->second.job, v1::JOB_STATE_RUNNING, "");
  if (!updated.ok())
    Log(absl::StrCat("marking ", job_id, " running: ", updated.status().ToString()));
}

absl::StatusOr<v1::ReportProgressResponse> Coordinator::ReportProgress(
    const std::vector<v1::ReportProgressRequest>& reports) {
  // Group the metric points by (job, attempt): the store fences each group as a whole.
  std::map<std::pair<std::string, int64_t>, std::vector<v1::MetricPoint>> groups;
  std::vector<v1::TrainerEvent> trainer_events;
  for (const v1::ReportProgressRequest& report : reports) {
    if (report.has_metric_point()) {
      const v1::MetricPoint& point = report.metric_point();
      if (point.job_id().empty() || point.attempt() < 1 || point.step() < 0 || point.rank() < 0) {
        return absl::InvalidArgumentError(
            "metric_point: expected a job_id, attempt >= 1, rank >= 0 and step >= 0");
      }
      groups[{point.job_id(), point.attempt()}].push_back(point);
    } else if (report.has_trainer_event()) {
      trainer_events.push_back(report.trainer_event());
    } else {
      return absl::InvalidArgumentError("report: expected a metric_point or a trainer_event");
    }
  }

  absl::MutexLock lock(&mu_);
  v1::ReportProgressResponse response;
  int64_t accepted = 0, refused = 0;
  for (auto& [key, points] : groups) {
    absl::StatusOr<int64_t> appended = store_->AppendMetricPoints(key.first, key.second, points);
    if (absl::IsFailedPrecondition(appended.status()) || absl::IsNotFound(appended.status())) {
      refused += static_cast<int64_t>(points.size());
      continue;
    }
    RETURN_IF_ERROR(appended.status());
    accepted += static_cast<int64_t>(points.size());
    MarkRunningLocked(key.first, key.second);
    for (const v1::MetricPoint& point : points) {
      if (metrics_ != nullptr && point.rank() == 0) {
        std::map<std::string, double> values(point.values().begin(), point.values().end());
        metrics_->SetJobProgress(point.job_id(), point.step(), values);
      }
      v1::WatchJobEvent event;
      *event.mutable_metric_point() = point;
      events_->Publish(point.job_id(), std::move(event));
    }
  }
  for (const v1::TrainerEvent& trainer_event : trainer_events) {
    auto it = active_.find(trainer_event.job_id());
    if (it == active_.end() || it->second.attempt.number() != trainer_event.attempt()) {
      ++refused;
      continue;
    }
    ++accepted;
    MarkRunningLocked(trainer_event.job_id(), trainer_event.attempt());
    v1::WatchJobEvent event;
    *event.mutable_trainer_event() = trainer_event;
    events_->Publish(trainer_event.job_id(), std::move(event));
  }
  if (metrics_ != nullptr) metrics_->CountReports(accepted, refused);
  response.set_accepted(accepted);
  response.set_refused(refused);
  return response;
}

absl::StatusOr<CheckpointUpload> Coordinator::BeginCheckpointUpload(
    const v1::CheckpointHeader& header) {
  if (header.job_id().empty())
    return absl::InvalidArgumentError("header.job_id: must not be empty");
  if (header.attempt() < 1) return absl::InvalidArgumentError("header.attempt: must be >= 1");
  if (header.step() < 0) return absl::InvalidArgumentError("header.step: must be >= 0");
  {
    absl::MutexLock lock(&mu_);
    auto it = active_.find(header.job_id());
    if (it == active_.end() || it->second.attempt.number() != header.attempt()) {
      RETURN_IF_ERROR(store_->GetJob(header.job_id()).status());  // NotFound for an unknown job
      return absl::FailedPreconditionError(absl::StrCat("header.attempt: attempt ",
                                                        header.attempt(), " of ", header.job_id(),
                                                        " is not running"));
    }
  }
  CheckpointUpload upload;
  upload.checkpoint_id = CheckpointIdFor(header);
  upload.header = header;
  ASSIGN_OR_RETURN(upload.session, checkpoints_->BeginUpload(header.job_id(), header.attempt(),
                                                             upload.checkpoint_id, header.step()));
  return upload;
}

absl::Status Coordinator::AppendCheckpointChunk(const CheckpointUpload& upload,
                                                const v1::CheckpointChunk& chunk) {
  return checkpoints_->AppendChunk(upload.session, chunk.file_name(), chunk.offset(), chunk.data());
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::CommitCheckpointUpload(
    const CheckpointUpload& upload, const v1::CheckpointManifest& manifest) {
  std::vector<v1::ManifestEntry> entries(manifest.entries().begin(), manifest.entries().end());
  absl::StatusOr<v1::CheckpointInfo> committed = checkpoints_->Commit(upload.session, entries);
  if (!committed.ok()) {
    if (metrics_ != nullptr && absl::IsDataLoss(committed.status())) {
      metrics_->CountVerificationFailure();
    }
    return committed.status();
  }
  v1::CheckpointInfo info = *committed;
  info.set_final(upload.header.final());
  info.set_committed_time_us(NowMicros());
  absl::Status recorded = store_->AddCheckpoint(info);
  if (absl::IsAlreadyExists(recorded)) {
    // A retried upload of a checkpoint already recorded: the same bytes are on disk.
    absl::StatusOr<v1::CheckpointInfo> existing = store_->GetCheckpoint(info.id());
    if (existing.ok()) return *existing;
  }
  if (!recorded.ok()) {
    // Nothing may stay on disk that the store does not know.
    checkpoints_->Delete(info.job_id(), info.id()).IgnoreError();
    return recorded;
  }
  if (metrics_ != nullptr) metrics_->CountCheckpointCommitted(info.bytes());
  {
    v1::WatchJobEvent event;
    v1::TrainerEvent* committed_event = event.mutable_trainer_event();
    committed_event->set_job_id(info.job_id());
    committed_event->set_attempt(info.attempt());
    committed_event->set_type("checkpoint_committed");
    committed_event->set_message(info.id());
    committed_event->set_step(info.step());
    committed_event->set_time_us(info.committed_time_us());
    events_->Publish(info.job_id(), std::move(event));
  }
  absl::Status retention = ApplyRetention(info.job_id());
  if (!retention.ok())
    Log(absl::StrCat("retention for ", info.job_id(), ": ", retention.ToString()));
  return info;
}

void Coordinator::AbortCheckpointUpload(const CheckpointUpload& upload) {
  checkpoints_->Abort(upload.session).IgnoreError();
}

absl::Status Coordinator::ApplyRetention(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> infos, store_->ListCheckpoints(job_id));
  // Ordered by (step, attempt): keep the newest keep_checkpoints and every final one.
  int kept = 0;
  std::vector<std::string> keep_ids;
  for (auto it = infos.rbegin(); it != infos.rend(); ++it) {
    if (it->final() || kept < options_.keep_checkpoints) {
      keep_ids.push_back(it->id());
      if (!it->final()) ++kept;
      continue;
    }
    // Record first, then files: a crash in between leaves an orphan directory that the next
    // retention pass removes, never a record without files.
    RETURN_IF_ERROR(store_->DeleteCheckpoint(it->id()));
    RETURN_IF_ERROR(checkpoints_->Delete(job_id, it->id()));
  }
  return checkpoints_->ApplyRetention(job_id, keep_ids);
}

// ---------------------------------------------------------------------------------------------
// Attempt outcomes and scheduling

absl::Status Coordinator::EndAttemptLocked(const std::string& job_id, int64_t attempt,
                                           AttemptEnd end, bool retryable,
                                           const std::string& reason,
                                           const std::string& restart_reason) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.attempt() != attempt || !HoldsDevices(job.state())) return absl::OkStatus();
  if (end == AttemptEnd::kSucceeded) {
    return TransitionLocked(job, v1::JOB_STATE_SUCCEEDED, "").status();
  }
  if (job.cancel_requested_time_us() > 0) {
    std::string why = job.cancel_reason();
    if (end == AttemptEnd::kFailed)
      absl::StrAppend(&why, " (the trainer did not stop cleanly: ", reason, ")");
    return TransitionLocked(job, v1::JOB_STATE_CANCELLED, why).status();
  }
  if (retryable && job.restart_count() < MaxRestarts(job)) {
    if (metrics_ != nullptr) metrics_->CountRestart(restart_reason);
    return TransitionLocked(job, v1::JOB_STATE_RESTARTING, reason).status();
  }
  std::string why = reason;
  if (retryable) {
    why = absl::StrCat(reason, " (gave up after ", job.restart_count(), " restarts)");
  }
  return TransitionLocked(job, v1::JOB_STATE_FAILED, why).status();
}

std::map<std::string, v1::WorkerDevices> Coordinator::HeldDevicesLocked() const {
  std::map<std::string, v1::WorkerDevices> held;
  for (const auto& [job_id, active] : active_) {
    const v1::DeviceRequest& per_rank = active.job.spec().devices_per_rank();
    for (const v1::RankPlacement& placement : active.attempt.placements()) {
      v1::WorkerDevices& devices = held[placement.worker_id()];
      devices.set_gpus(devices.gpus() + per_rank.gpus() * placement.ranks_size());
      devices.set_cpu_slots(devices.cpu_slots() + per_rank.cpu_slots() * placement.ranks_size());
    }
  }
  return held;
}

int32_t Coordinator::PickMasterPortLocked(const WorkerRuntime& worker) {
  std::set<int32_t> used;
  for (const auto& [job_id, active] : active_) {
    if (!active.attempt.placements().empty() &&
        active.attempt.placements(0).worker_id() == worker.info.id()) {
      used.insert(active.attempt.master_port());
    }
  }
  for (int32_t port = worker.info.ports().first(); port <= worker.info.ports().last(); ++port) {
    if (used.count(port) == 0) return port;
  }
  return 0;
}

std::pair<std::string, int64_t> Coordinator::NewestVerifiedCheckpoint(const std::string& job_id) {
  absl::StatusOr<std::vector<v1::CheckpointInfo>> infos = store_->ListCheckpoints(job_id);
  if (!infos.ok()) {
    Log(absl::StrCat("listing checkpoints of ", job_id, ": ", infos.status().ToString()));
    return {"", 0};
  }
  for (auto it = infos->rbegin(); it != infos->rend(); ++it) {
    absl::StatusOr<std::vector<v1::ManifestEntry>> verified =
        checkpoints_->OpenForRead(job_id, it->id());
    if (verified.ok()) return {it->id(), it->step()};
    if (metrics_ != nullptr && absl::IsDataLoss(verified.status())) {
      metrics_->CountVerificationFailure();
    }
    Log(absl::StrCat(job_id, ": checkpoint ", it->id(), " is refused (",
                     verified.status().message(), "); trying the one before"));
  }
  return {"", 0};
}

absl::Status Coordinator::StartAttemptLocked(const v1::Job& queued, const Placement& placement,
                                             const ResumePoints& resume_points) {
  v1::Job job = queued;
  if (job.state() == v1::JOB_STATE_WAITING) {
    ASSIGN_OR_RETURN(job, TransitionLocked(job, v1::JOB_STATE_QUEUED, "dependency satisfied"));
  }
  auto rank0_worker = workers_.find(placement.workers.front().worker_id);
  if (rank0_worker == workers_.end()) {
    return absl::InternalError(
        absl::StrCat("placement names unknown worker ", placement.workers.front().worker_id));
  }
  NewAttempt attempt;
  attempt.job_id = job.id();
  attempt.expected_attempt = job.attempt();
  if (job.state() == v1::JOB_STATE_RESTARTING) {
    if (!job.next_resume_checkpoint_id().empty()) {
      ASSIGN_OR_RETURN(v1::CheckpointInfo info,
                       store_->GetCheckpoint(job.next_resume_checkpoint_id()));
      attempt.resume_checkpoint_id = info.id();
      attempt.resume_step = info.step();
    } else {
      auto point = resume_points.find(job.id());
      if (point == resume_points.end()) {
        return absl::InternalError(absl::StrCat(job.id(), ": no resume point was chosen"));
      }
      attempt.resume_checkpoint_id = point->second.first;
      attempt.resume_step = point->second.second;
    }
  }
  for (const WorkerRanks& ranks : placement.workers) {
    v1::RankPlacement rank_placement;
    rank_placement.set_worker_id(ranks.worker_id);
    for (int32_t rank : ranks.ranks) rank_placement.add_ranks(rank);
    attempt.placements.push_back(std::move(rank_placement));
  }
  attempt.master_addr = rank0_worker->second.info.host();
  attempt.master_port = PickMasterPortLocked(rank0_worker->second);
  if (attempt.master_port == 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "worker ", rank0_worker->first, " has no free rendezvous port for ", job.id()));
  }
  attempt.time_us = NowMicros();
  ASSIGN_OR_RETURN(v1::Attempt started, store_->BeginAttempt(attempt));
  ASSIGN_OR_RETURN(v1::Job assigned, store_->GetJob(job.id()));
  if (metrics_ != nullptr) metrics_->CountJobTransition(job.state(), v1::JOB_STATE_ASSIGNED);
  active_[job.id()] = ActiveAttempt{assigned, started};
  if (metrics_ != nullptr) {
    absl::Time since = absl::FromUnixMicros(job.submit_time_us());
    if (auto it = pending_since_.find(job.id()); it != pending_since_.end()) since = it->second;
    metrics_->ObserveQueueWait(absl::ToDoubleSeconds(clock_->Now() - since));
  }
  pending_since_.erase(job.id());
  std::string where;
  for (const v1::RankPlacement& p : started.placements()) {
    absl::StrAppend(&where, where.empty() ? "" : ", ", p.worker_id(), " ranks ", p.ranks_size());
  }
  PublishState(assigned, started.resume_checkpoint_id().empty()
                             ? "fresh start"
                             : absl::StrCat("resuming from ", started.resume_checkpoint_id()));
  Log(absl::StrCat(job.id(), " attempt ", started.number(), " assigned to ", where,
                   started.resume_checkpoint_id().empty()
                       ? ""
                       : absl::StrCat(", resuming from ", started.resume_checkpoint_id())));
  return absl::OkStatus();
}

absl::Status Coordinator::ScheduleLocked(const ResumePoints& resume_points) {
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(
      std::vector<v1::Job> pending,
      AllJobs(store_, {v1::JOB_STATE_QUEUED, v1::JOB_STATE_WAITING, v1::JOB_STATE_RESTARTING}));
  if (pending.empty()) return absl::OkStatus();
  ClusterSnapshot snapshot;
  snapshot.now = clock_->Now();
  std::map<std::string, const v1::Job*> by_id;
  for (const v1::Job& job : pending) {
    // A restart without a chosen checkpoint waits for the next Tick() to choose one.
    if (job.state() == v1::JOB_STATE_RESTARTING && job.next_resume_checkpoint_id().empty() &&
        resume_points.count(job.id()) == 0) {
      continue;
    }
    by_id[job.id()] = &job;
    PendingJob entry;
    entry.job_id = job.id();
    entry.priority = job.spec().priority();
    entry.submit_seq = job.submit_seq();
    entry.world_size = job.spec().world_size();
    entry.gpus_per_rank = job.spec().devices_per_rank().gpus();
    entry.cpu_slots_per_rank = job.spec().devices_per_rank().cpu_slots();
    entry.pending_since = absl::FromUnixMicros(job.submit_time_us());
    if (auto it = pending_since_.find(job.id()); it != pending_since_.end()) {
      entry.pending_since = it->second;
    }
    if (job.spec().depends_on().has_job_id()) {
      absl::StatusOr<v1::Job> dependency = store_->GetJob(job.spec().depends_on().job_id());
      if (!dependency.ok() || dependency->state() == v1::JOB_STATE_FAILED ||
          dependency->state() == v1::JOB_STATE_CANCELLED) {
        entry.dependency = DependencyState::kFailed;
      } else if (dependency->state() != v1::JOB_STATE_SUCCEEDED) {
        entry.dependency = DependencyState::kPending;
      }
    } else if (job.spec().depends_on().has_checkpoint_id()) {
      if (!store_->GetCheckpoint(job.spec().depends_on().checkpoint_id()).ok()) {
        entry.dependency = DependencyState::kFailed;
      }
    }
    snapshot.jobs.push_back(entry);
  }
  std::map<std::string, v1::WorkerDevices> held = HeldDevicesLocked();
  for (const auto& [id, worker] : workers_) {
    if (worker.info.state() != v1::WORKER_STATE_ALIVE) continue;
    WorkerCapacity capacity;
    capacity.worker_id = id;
    capacity.total_gpus = worker.info.devices().gpus();
    capacity.total_cpu_slots = worker.info.devices().cpu_slots();
    capacity.free_gpus = std::max(0, capacity.total_gpus - held[id].gpus());
    capacity.free_cpu_slots = std::max(0, capacity.total_cpu_slots - held[id].cpu_slots());
    snapshot.workers.push_back(capacity);
  }

  ScheduleDecision decision = Schedule(snapshot, options_.scheduler);

  absl::Status first_error = absl::OkStatus();
  auto note = [&](const absl::Status& status) {
    if (!status.ok()) {
      Log(absl::StrCat("scheduling: ", status.ToString()));
      if (first_error.ok()) first_error = status;
    }
  };
  for (const std::string& job_id : decision.waiting) {
    const v1::Job& job = *by_id[job_id];
    if (job.state() == v1::JOB_STATE_QUEUED) {
      note(TransitionLocked(job, v1::JOB_STATE_WAITING,
                            absl::StrCat("waiting for ", job.spec().depends_on().job_id()))
               .status());
    }
  }
  for (const JobVerdict& verdict : decision.failed) {
    const v1::Job& job = *by_id[verdict.job_id];
    std::string reason = verdict.reason;
    if (job.spec().depends_on().has_job_id() || job.spec().depends_on().has_checkpoint_id()) {
      const std::string target = job.spec().depends_on().has_job_id()
                                     ? job.spec().depends_on().job_id()
                                     : job.spec().depends_on().checkpoint_id();
      reason = absl::StrCat("dependency ", target, " failed, was cancelled or is gone");
    }
    note(TransitionLocked(job, v1::JOB_STATE_FAILED, reason).status());
  }
  for (const Placement& placement : decision.placements) {
    note(StartAttemptLocked(*by_id[placement.job_id], placement, resume_points));
  }
  if (metrics_ != nullptr)
    metrics_->ObserveSchedulingPass(absl::ToDoubleSeconds(absl::Now() - start));
  return first_error;
}

void Coordinator::SweepWorkersLocked() {
  const absl::Time now = clock_->Now();
  for (auto& [id, worker] : workers_) {
    if (worker.info.state() == v1::WORKER_STATE_DEAD) continue;
    const absl::Duration silent = now - worker.last_heartbeat;
    if (silent <= options_.worker_timeout) {
      const v1::WorkerState state = silent > 3 * options_.heartbeat_interval
                                        ? v1::WORKER_STATE_SUSPECT
                                        : v1::WORKER_STATE_ALIVE;
      if (worker.info.state() != v1::WORKER_STATE_DRAINING && worker.info.state() != state) {
        worker.info.set_state(state);
      }
      continue;
    }
    worker.info.set_state(v1::WORKER_STATE_DEAD);
    absl::Status stored = store_->UpsertWorker(worker.info);
    if (!stored.ok()) Log(absl::StrCat("recording worker ", id, " as lost: ", stored.ToString()));
    Log(absl::StrCat("worker ", id, " lost (no heartbeat for ", absl::FormatDuration(silent), ")"));
    std::vector<std::pair<std::string, int64_t>> affected;
    for (const auto& [job_id, active] : active_) {
      if (PlacedOn(active.attempt, id)) affected.emplace_back(job_id, active.attempt.number());
    }
    for (const auto& [job_id, attempt] : affected) {
      absl::Status ended =
          EndAttemptLocked(job_id, attempt, AttemptEnd::kFailed, /*retryable=*/true,
                           absl::StrCat("worker ", id, " lost (no heartbeat for ",
                                        absl::FormatDuration(silent), ")"),
                           "worker_lost");
      if (!ended.ok()) Log(ended.ToString());
    }
  }
}

void Coordinator::ForceOverdueCancellationsLocked() {
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, int64_t>> overdue;
  for (const auto& [job_id, active] : active_) {
    if (active.job.cancel_requested_time_us() == 0) continue;
    const absl::Time deadline = absl::FromUnixMicros(active.job.cancel_requested_time_us()) +
                                options_.cancel_grace + options_.worker_timeout;
    if (now > deadline) overdue.emplace_back(job_id, active.attempt.number());
  }
  for (const auto& [job_id, attempt] : overdue) {
    absl::Status ended =
        EndAttemptLocked(job_id, attempt, AttemptEnd::kFailed, false,
                         "no worker confirmed the stop within the grace period", "");
    if (!ended.ok()) Log(ended.ToString());
  }
}

void Coordinator::RefreshGaugesLocked() {
  if (metrics_ == nullptr) return;
  std::map<v1::WorkerState, int64_t> workers;
  for (const auto& [id, worker] : workers_) ++workers[worker.info.state()];
  metrics_->SetWorkersByState(workers);
}

Coordinator::ResumePoints Coordinator::ChooseResumePoints() {
  ResumePoints points;
  absl::StatusOr<std::vector<v1::Job>> restarting = AllJobs(store_, {v1::JOB_STATE_RESTARTING});
  if (!restarting.ok()) {
    Log(absl::StrCat("listing restarting jobs: ", restarting.status().ToString()));
    return points;
  }
  for (const v1::Job& job : *restarting) {
    if (job.next_resume_checkpoint_id().empty())
      points[job.id()] = NewestVerifiedCheckpoint(job.id());
  }
  return points;
}

void Coordinator::Tick() {
  // Verifying checkpoints reads them whole: done before taking the lock heartbeats need.
  const ResumePoints resume_points = ChooseResumePoints();
  absl::MutexLock lock(&mu_);
  SweepWorkersLocked();
  ForceOverdueCancellationsLocked();
  absl::Status scheduled = ScheduleLocked(resume_points);
  if (!scheduled.ok()) Log(absl::StrCat("scheduling pass failed: ", scheduled.ToString()));
  RefreshGaugesLocked();
}

}  // namespace peco::coordinator
