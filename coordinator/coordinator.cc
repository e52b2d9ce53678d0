// Coordinator: construction, recovery, transitions and the JobService side.
#include "coordinator/coordinator.h"

#include <algorithm>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_reader.h"
#include "common/json_line.h"
#include "common/status_macros.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/dependency_inputs.h"
#include "coordinator/job_state_machine.h"
#include "service/job_kinds.h"

namespace peco::coordinator {

using internal::AllJobs;
using internal::Log;

// Audit entries GetJob returns (the newest).
constexpr int kAuditEntriesShown = 100;

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
  if (max_cached_ended_progress < 0) return bad("max_cached_ended_progress", "must be >= 0");
  if (max_worker_gpus < 0) return bad("max_worker_gpus", "must be >= 0");
  if (max_worker_cpu_slots < 1) return bad("max_worker_cpu_slots", "must be >= 1");
  if (max_pending_jobs_per_user < 0 || max_pending_jobs_per_user > 100000) {
    return bad("max_pending_jobs_per_user", "must be in 0..100000");
  }
  return scheduler.Validate();
}

Coordinator::Coordinator(CoordinatorOptions options, JobStore* store,
                         CheckpointFileStore* checkpoints, SpecValidator* validator, Clock* clock,
                         JobEventHub* events, CoordinatorMetrics* metrics)
    : options_(std::move(options)),
      store_(store),
      validator_(validator),
      clock_(clock),
      events_(events),
      metrics_(metrics),
      ingest_(store, checkpoints, events, metrics, clock, options_.keep_checkpoints),
      progress_(options_.max_cached_ended_progress) {
  // Retention runs outside mu_ (CheckpointIngest::Commit): it may ask which checkpoints the
  // coordinator's unfinished jobs start from or read.
  ingest_.SetPinnedCheckpoints([this] {
    std::set<std::string> pinned;
    auto add = [&pinned](const v1::Job& job) {
      if (job.spec().init_from().has_checkpoint_id()) {
        pinned.insert(job.spec().init_from().checkpoint_id());
      }
      if (job.spec().depends_on().has_checkpoint_id()) {
        pinned.insert(job.spec().depends_on().checkpoint_id());
      }
    };
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : pending_) add(job);
    for (const auto& [id, active] : cluster_.active()) add(active.job);
    return pinned;
  });
}

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
    cluster_.PutWorker(std::move(info), now);
  }
  ASSIGN_OR_RETURN(std::vector<v1::Job> jobs,
                   AllJobs(store_, {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING}));
  for (const v1::Job& job : jobs) RefreshActiveLocked(job);
  ASSIGN_OR_RETURN(
      std::vector<v1::Job> pending,
      AllJobs(store_, {v1::JOB_STATE_QUEUED, v1::JOB_STATE_WAITING, v1::JOB_STATE_RESTARTING}));
  for (v1::Job& job : pending) {
    if (job.state() == v1::JOB_STATE_RESTARTING) pending_since_[job.id()] = now;
    const std::string id = job.id();
    pending_[id] = std::move(job);
  }
  ASSIGN_OR_RETURN(std::vector<v1::Job> all, AllJobs(store_, {}));
  std::vector<std::string> job_ids;
  for (const v1::Job& job : all) job_ids.push_back(job.id());
  // Nothing is being uploaded yet: checkpoint directories without a record are a crash's.
  if (absl::Status orphans = ingest_.RemoveOrphans(job_ids); !orphans.ok()) {
    Log(absl::StrCat("removing checkpoint directories without a record: ", orphans.ToString()));
  }
  if (metrics_ != nullptr) {
    // One full count; afterwards every transition moves the gauges.
    std::map<v1::JobState, int64_t> counts;
    for (const v1::Job& job : all) ++counts[job.state()];
    metrics_->SetJobsByState(counts);
  }
  Log(absl::StrCat("recovered ", cluster_.workers().size(), " workers and ",
                   cluster_.active().size(), " active attempts"));
  return absl::OkStatus();
}

void Coordinator::RefreshActiveLocked(const v1::Job& job) {
  if (job.state() == v1::JOB_STATE_QUEUED || job.state() == v1::JOB_STATE_WAITING ||
      job.state() == v1::JOB_STATE_RESTARTING) {
    pending_[job.id()] = job;
  } else {
    pending_.erase(job.id());
  }
  if (!HoldsDevices(job.state())) {
    cluster_.EraseActive(job.id());
    return;
  }
  ClusterView::Active* active = cluster_.FindActive(job.id());
  if (active != nullptr && active->attempt.number() == job.attempt()) {
    active->job = job;
    active->attempt.set_state(job.state());
    return;
  }
  absl::StatusOr<std::vector<v1::Attempt>> attempts = store_->ListAttempts(job.id());
  if (!attempts.ok() || attempts->empty()) {
    Log(absl::StrCat("cannot load the attempts of ", job.id(), ": ",
                     attempts.ok() ? "none recorded" : attempts.status().ToString()));
    cluster_.EraseActive(job.id());
    return;
  }
  cluster_.SetActive(job.id(), ClusterView::Active{job, attempts->back()});
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
                                                      const std::string& reason,
                                                      const std::string& cause) {
  // `job` may be the cached copy RefreshActiveLocked overwrites below: keep where it came from.
  const v1::JobState from = job.state();
  ASSIGN_OR_RETURN(v1::Job updated, store_->UpdateJobState({job.id(), job.attempt(), state, reason,
                                                            NowMicros(), cause}));
  RefreshActiveLocked(updated);
  if (state == v1::JOB_STATE_RESTARTING) {
    pending_since_[updated.id()] = clock_->Now();
  } else if (state != v1::JOB_STATE_QUEUED && state != v1::JOB_STATE_WAITING) {
    pending_since_.erase(updated.id());
  }
  if (metrics_ != nullptr) {
    metrics_->CountJobTransition(from, state);
    if (HoldsDevices(state)) {
      metrics_->SetJobRestarts(updated.id(), updated.restart_count());
    } else {
      metrics_->ForgetJob(updated.id());
    }
  }
  if (IsTerminal(state)) progress_.NoteEnded(updated.id());
  PublishState(updated, reason);
  Log(absl::StrCat(updated.id(), " attempt ", updated.attempt(), ": ", JobStateName(state),
                   reason.empty() ? "" : absl::StrCat(" (", reason, ")")));
  return updated;
}

// ---------------------------------------------------------------------------------------------
// JobService

absl::Status Coordinator::CheckAccessAudited(const v1::Job& job, const UserCaller& caller,
                                             absl::string_view action) {
  absl::Status access = CheckJobAccess(job, caller);
  if (!access.ok()) Audit(caller, action, job.id(), access);
  return access;
}

absl::Status Coordinator::CheckPendingQuota(const UserCaller& caller,
                                            const std::string& request_id) {
  const int limit = options_.max_pending_jobs_per_user;
  if (caller.admin || limit == 0) return absl::OkStatus();
  JobQuery query;
  query.owner = caller.name;
  query.states = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_WAITING};
  query.page_size = std::min(limit, 1000);
  int pending = 0;
  do {
    ASSIGN_OR_RETURN(JobPage page, store_->ListJobs(query));
    for (const v1::Job& job : page.jobs) {
      if (!request_id.empty() && job.client_request_id() == request_id) return absl::OkStatus();
    }
    pending += static_cast<int>(page.jobs.size());
    query.page_token = page.next_page_token;
  } while (!query.page_token.empty());
  if (pending < limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "user ", caller.name, " has ", pending, " jobs queued or waiting, the most ",
      "max_pending_jobs_per_user allows (", limit, "); wait for some to start or cancel some"));
}

void Coordinator::Audit(const UserCaller& caller, absl::string_view action,
                        const std::string& job_id, const absl::Status& outcome,
                        absl::string_view detail) {
  absl::Status written =
      store_->AppendAudit(MakeAuditEntry(NowMicros(), caller, action, job_id, outcome, detail));
  if (!written.ok()) {
    Log(absl::StrCat("audit log: cannot record ", action, " of ", job_id, " by ", caller.name, ": ",
                     written.ToString()));
  }
}

void Coordinator::AuditChange(const UserCaller& caller, absl::string_view action,
                              const std::string& job_id, const absl::Status& outcome,
                              absl::string_view detail) {
  // A refusal was recorded where it was decided (CheckAccessAudited); an unknown or empty job
  // id names no job to record it on.
  if (job_id.empty() || absl::IsPermissionDenied(outcome) || absl::IsNotFound(outcome)) return;
  Audit(caller, action, job_id, outcome, detail);
}

absl::StatusOr<v1::Job> Coordinator::InitFromJob(const v1::Dependency& from,
                                                 const UserCaller& caller) {
  std::string job_id = from.job_id();
  if (from.has_checkpoint_id()) {
    absl::StatusOr<v1::CheckpointInfo> checkpoint = store_->GetCheckpoint(from.checkpoint_id());
    if (absl::IsNotFound(checkpoint.status())) {
      return absl::NotFoundError(
          absl::StrCat("spec.init_from.checkpoint_id: no checkpoint ", from.checkpoint_id()));
    }
    RETURN_IF_ERROR(checkpoint.status());
    job_id = checkpoint->job_id();
  }
  absl::StatusOr<v1::Job> job = store_->GetJob(job_id);
  if (absl::IsNotFound(job.status())) {
    return absl::NotFoundError(absl::StrCat("spec.init_from.job_id: no job ", job_id));
  }
  RETURN_IF_ERROR(job.status());
  RETURN_IF_ERROR(CheckAccessAudited(*job, caller, "fork"));
  return job;
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::ResolveInitFrom(const v1::Dependency& from) {
  std::string checkpoint_id = from.checkpoint_id();
  if (from.has_job_id()) {
    // Verifying reads the checkpoint: before any lock is taken.
    checkpoint_id = ingest_.NewestVerified(from.job_id()).first;
    if (checkpoint_id.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("spec.init_from.job_id: job ", from.job_id(),
                       " has no verified checkpoint to start from"));
    }
  }
  absl::StatusOr<v1::CheckpointInfo> checkpoint = store_->GetCheckpoint(checkpoint_id);
  if (absl::IsNotFound(checkpoint.status())) {
    return absl::NotFoundError(
        absl::StrCat("spec.init_from.checkpoint_id: no checkpoint ", checkpoint_id));
  }
  RETURN_IF_ERROR(checkpoint.status());
  if (from.has_checkpoint_id()) {
    // As a resume from a named checkpoint: its files must match their digests now.
    absl::StatusOr<Manifest> verified = ingest_.Verify(checkpoint->job_id(), checkpoint->id());
    if (!verified.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("spec.init_from.checkpoint_id: ", checkpoint->id(),
                       " cannot be used: ", verified.status().message()));
    }
  }
  return checkpoint;
}

absl::StatusOr<v1::SubmitJobResponse> Coordinator::SubmitJobUnsynced(
    const v1::SubmitJobRequest& request, const UserCaller& caller) {
  v1::JobSpec spec = request.spec();
  NormalizeJobSpec(&spec);
  RETURN_IF_ERROR(CheckJobSpecFields(spec, options_.spec_limits));
  if (request.client_request_id().size() > 128) {
    return absl::InvalidArgumentError("client_request_id: expected at most 128 characters");
  }
  // A job may read only what its owner may: a dependency's checkpoints are handed to it.
  if (spec.depends_on().has_job_id() || spec.depends_on().has_checkpoint_id()) {
    std::string dependency_job = spec.depends_on().job_id();
    if (spec.depends_on().has_checkpoint_id()) {
      absl::StatusOr<v1::CheckpointInfo> checkpoint =
          store_->GetCheckpoint(spec.depends_on().checkpoint_id());
      if (checkpoint.ok()) dependency_job = checkpoint->job_id();
    }
    if (absl::StatusOr<v1::Job> dependency = store_->GetJob(dependency_job); dependency.ok()) {
      RETURN_IF_ERROR(CheckAccessAudited(*dependency, caller, "depend"));
    }
  }
  // A fork starts from a checkpoint its owner may read, of a job of its kind, pinned now.
  if (spec.init_from().has_job_id() || spec.init_from().has_checkpoint_id()) {
    ASSIGN_OR_RETURN(v1::Job source, InitFromJob(spec.init_from(), caller));
    ASSIGN_OR_RETURN(v1::CheckpointInfo from, ResolveInitFrom(spec.init_from()));
    if (source.spec().kind() != spec.kind()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.init_from: ", from.id(), " is a checkpoint of the ",
          service::JobKindName(source.spec().kind()), " job ", source.id(), "; this job is ",
          service::JobKindName(spec.kind()), " (a fork continues a job of its own kind)"));
    }
    spec.mutable_init_from()->set_checkpoint_id(from.id());
  }
  // Dependencies must exist now; a dependency of a kind this job reads hands it a checkpoint.
  std::vector<std::string> input_fields;
  ASSIGN_OR_RETURN(std::optional<std::string> input_field, DependencyInputFieldOf(spec, *store_));
  if (input_field.has_value()) input_fields.push_back(*input_field);
  RETURN_IF_ERROR(CheckPendingQuota(caller, request.client_request_id()));
  // The trainer's own check of its config runs outside the lock (it starts a process).
  if (validator_ != nullptr) RETURN_IF_ERROR(validator_->Validate(spec, input_fields));

  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(cluster_.CheckGangFits(spec));
  if (request.validate_only()) {
    // Everything a submission is checked for has passed; nothing is stored or audited.
    v1::SubmitJobResponse response;
    v1::Job* job = response.mutable_job();
    *job->mutable_spec() = spec;
    job->set_state(v1::JOB_STATE_QUEUED);
    job->set_owner(caller.name);
    job->set_client_request_id(request.client_request_id());
    job->set_submit_time_us(NowMicros());
    return response;
  }
  NewJob new_job;
  new_job.spec = spec;
  new_job.client_request_id = request.client_request_id();
  new_job.owner = caller.name;
  new_job.submit_time_us = NowMicros();
  ASSIGN_OR_RETURN(CreateJobResult created, store_->CreateJob(new_job));
  if (created.created) Audit(caller, "submit", created.job.id(), absl::OkStatus(), spec.name());
  RefreshActiveLocked(created.job);
  v1::SubmitJobResponse response;
  *response.mutable_job() = created.job;
  response.set_created(created.created);
  if (created.created) {
    if (metrics_ != nullptr) {
      metrics_->CountJobTransition(v1::JOB_STATE_UNSPECIFIED, created.job.state());
    }
    PublishState(created.job, "submitted");
    Log(absl::StrCat(created.job.id(), " submitted: ", spec.name(), " (",
                     service::JobKindName(spec.kind()), ", ", spec.world_size(), " ranks)"));
    absl::Status scheduled = ScheduleLocked(/*resume_points=*/{});
    if (!scheduled.ok()) Log(absl::StrCat("scheduling pass failed: ", scheduled.ToString()));
    // The job may have been placed or moved to WAITING already.
    absl::StatusOr<v1::Job> now = store_->GetJob(created.job.id());
    if (now.ok()) *response.mutable_job() = *now;
  }
  return response;
}

absl::StatusOr<v1::SubmitJobResponse> Coordinator::SubmitJob(const v1::SubmitJobRequest& request,
                                                             const UserCaller& caller) {
  return Synced(SubmitJobUnsynced(request, caller));
}

absl::StatusOr<v1::CancelJobResponse> Coordinator::CancelJob(const v1::CancelJobRequest& request,
                                                             const UserCaller& caller) {
  absl::StatusOr<v1::CancelJobResponse> cancelled = CancelJobUnsynced(request, caller);
  AuditChange(caller, "cancel", request.job_id(), cancelled.status(), request.reason());
  return Synced(std::move(cancelled));
}

absl::StatusOr<v1::ResumeJobResponse> Coordinator::ResumeJob(const v1::ResumeJobRequest& request,
                                                             const UserCaller& caller) {
  absl::StatusOr<v1::ResumeJobResponse> resumed = ResumeJobUnsynced(request, caller);
  std::string detail =
      request.checkpoint_id().empty() ? "newest checkpoint" : request.checkpoint_id();
  if (request.config_overrides_size() > 0 && resumed.ok()) {
    // Bounded: what a resume changed, not what a refused request carried.
    constexpr size_t kMaxDetail = 1024;
    std::string changes = absl::StrJoin(request.config_overrides(), " ");
    if (changes.size() > kMaxDetail) changes = absl::StrCat(changes.substr(0, kMaxDetail), "...");
    absl::StrAppend(&detail, " with ", changes);
  }
  AuditChange(caller, "resume", request.job_id(), resumed.status(), detail);
  return Synced(std::move(resumed));
}

absl::Status Coordinator::AuthorizeJobRead(const std::string& job_id, const UserCaller& caller,
                                           absl::string_view action) {
  if (job_id.empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  return CheckAccessAudited(job, caller, action);
}

absl::StatusOr<v1::GetJobResponse> Coordinator::GetJob(const v1::GetJobRequest& request,
                                                       const UserCaller& caller) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  v1::GetJobResponse response;
  ASSIGN_OR_RETURN(*response.mutable_job(), store_->GetJob(request.job_id()));
  RETURN_IF_ERROR(CheckAccessAudited(response.job(), caller, "get"));
  response.mutable_job()->set_owner(JobOwner(response.job()));
  if (!progress_.Knows(request.job_id())) {
    // Progress is cached in memory; after a restart it is rebuilt from the stored curve, so a
    // finished evaluation job still shows its result.
    MetricQuery query;
    query.job_id = request.job_id();
    query.rank = 0;
    ASSIGN_OR_RETURN(std::vector<v1::MetricPoint> points, store_->ListMetricPoints(query));
    for (const v1::MetricPoint& point : points) progress_.NotePoint(point);
  }
  progress_.Fill(response.mutable_job());
  ASSIGN_OR_RETURN(std::vector<v1::Attempt> attempts, store_->ListAttempts(request.job_id()));
  for (v1::Attempt& attempt : attempts) *response.add_attempts() = std::move(attempt);
  ASSIGN_OR_RETURN(std::vector<v1::AuditEntry> audit,
                   store_->ListAudit(request.job_id(), kAuditEntriesShown));
  for (v1::AuditEntry& entry : audit) *response.add_audit() = std::move(entry);
  return response;
}

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(const v1::ListJobsRequest& request,
                                                           const UserCaller& caller) {
  JobQuery query;
  if (!caller.admin) query.owner = caller.name;
  for (int state : request.states()) query.states.push_back(static_cast<v1::JobState>(state));
  query.page_size = request.page_size() == 0 ? 100 : request.page_size();
  query.page_token = request.page_token();
  if (request.labels_size() > options_.spec_limits.max_labels) {
    return absl::InvalidArgumentError(absl::StrCat("labels: at most ",
                                                   options_.spec_limits.max_labels, " labels, got ",
                                                   request.labels_size()));
  }
  query.labels.insert(request.labels().begin(), request.labels().end());
  query.depends_on_job_id = request.depends_on_job_id();
  ASSIGN_OR_RETURN(JobPage page, store_->ListJobs(query));
  v1::ListJobsResponse response;
  for (v1::Job& job : page.jobs) {
    progress_.Fill(&job);
    job.set_owner(JobOwner(job));
    *response.add_jobs() = std::move(job);
  }
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<v1::CancelJobResponse> Coordinator::CancelJobUnsynced(
    const v1::CancelJobRequest& request, const UserCaller& caller) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  const std::string reason =
      request.reason().empty() ? absl::StrCat("cancelled by ", caller.name) : request.reason();
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(request.job_id()));
  RETURN_IF_ERROR(CheckAccessAudited(job, caller, "cancel"));
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
                       TransitionLocked(job, v1::JOB_STATE_CANCELLED, reason, "cancelled"));
      return response;
    }
  }
}

absl::StatusOr<v1::ResumeJobResponse> Coordinator::ResumeJobUnsynced(
    const v1::ResumeJobRequest& request, const UserCaller& caller) {
  if (request.job_id().empty()) return absl::InvalidArgumentError("job_id: must not be empty");
  std::optional<std::string> config_yaml;  // with the overrides, when there are some
  int64_t overridden_attempt = -1;         // the attempt the overrides were applied at
  {
    ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(request.job_id()));
    overridden_attempt = job.attempt();
    RETURN_IF_ERROR(CheckAccessAudited(job, caller, "resume"));
    if (request.config_overrides_size() > 0) {
      const std::vector<std::string> overrides(request.config_overrides().begin(),
                                               request.config_overrides().end());
      RETURN_IF_ERROR(CheckResumeOverrides(overrides));
      absl::StatusOr<std::string> changed =
          ApplyConfigOverrides(job.spec().config_yaml(), overrides);
      if (!changed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config_overrides: ", changed.status().message()));
      }
      v1::JobSpec spec = job.spec();
      spec.set_config_yaml(*changed);
      RETURN_IF_ERROR(CheckJobSpecFields(spec, options_.spec_limits));
      // The trainer's own check, as for a submission (outside the lock: it asks a process).
      std::vector<std::string> input_fields;
      ASSIGN_OR_RETURN(std::optional<std::string> input_field,
                       DependencyInputFieldOf(spec, *store_));
      if (input_field.has_value()) input_fields.push_back(*input_field);
      if (validator_ != nullptr) RETURN_IF_ERROR(validator_->Validate(spec, input_fields));
      config_yaml = *std::move(changed);
    }
  }
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
    absl::StatusOr<Manifest> verified = ingest_.Verify(info->job_id(), info->id());
    if (!verified.ok()) {
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
  if (config_yaml.has_value() && job.attempt() != overridden_attempt) {
    // Another resume ran while these overrides were checked: they apply to an older config.
    return absl::AbortedError(absl::StrCat("job ", job.id(), " changed (attempt ",
                                           overridden_attempt, " -> ", job.attempt(),
                                           ") while the overrides were checked; resume again"));
  }
  JobControlUpdate update;
  update.job_id = job.id();
  update.expected_attempt = job.attempt();
  update.next_resume_checkpoint_id = request.checkpoint_id();
  update.config_yaml = config_yaml;
  ASSIGN_OR_RETURN(job, store_->UpdateJobControl(update));
  if (metrics_ != nullptr) metrics_->CountRestart("resumed");
  ASSIGN_OR_RETURN(job,
                   TransitionLocked(job, v1::JOB_STATE_RESTARTING,
                                    request.checkpoint_id().empty()
                                        ? "resumed from the newest checkpoint"
                                        : absl::StrCat("resumed from ", request.checkpoint_id()),
                                    "resumed"));
  // The next Tick() places it, once it has chosen the checkpoint outside the lock.
  v1::ResumeJobResponse response;
  ASSIGN_OR_RETURN(*response.mutable_job(), store_->GetJob(job.id()));
  return response;
}

absl::StatusOr<v1::ListCheckpointsResponse> Coordinator::ListCheckpoints(
    const v1::ListCheckpointsRequest& request, const UserCaller& caller) {
  RETURN_IF_ERROR(AuthorizeJobRead(request.job_id(), caller, "checkpoints"));
  ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> infos,
                   store_->ListCheckpoints(request.job_id()));
  v1::ListCheckpointsResponse response;
  for (v1::CheckpointInfo& info : infos) *response.add_checkpoints() = std::move(info);
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> Coordinator::ListWorkers(
    const v1::ListWorkersRequest& request) {
  absl::MutexLock lock(&mu_);
  v1::ListWorkersResponse response;
  for (const auto& [id, worker] : cluster_.workers()) {
    v1::WorkerInfo* info = response.add_workers();
    *info = worker.info;
    info->set_last_heartbeat_us(absl::ToUnixMicros(worker.last_heartbeat));
    const ClusterView::Devices used = cluster_.HeldOn(id);
    info->mutable_free_devices()->set_gpus(
        static_cast<int32_t>(std::max<int64_t>(0, worker.info.devices().gpus() - used.gpus)));
    info->mutable_free_devices()->set_cpu_slots(static_cast<int32_t>(
        std::max<int64_t>(0, worker.info.devices().cpu_slots() - used.cpu_slots)));
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

absl::StatusOr<v1::CheckpointInfo> Coordinator::OpenCheckpoint(
    const std::string& checkpoint_id, const UserCaller& caller,
    const std::vector<std::string>& only) {
  // Whose it is first: another user's download must not even cost a verification.
  absl::StatusOr<v1::CheckpointInfo> record = store_->GetCheckpoint(checkpoint_id);
  if (record.ok()) {
    ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(record->job_id()));
    RETURN_IF_ERROR(CheckAccessAudited(job, caller, "download"));
  }
  return ingest_.Open(checkpoint_id, only);
}

absl::StatusOr<std::string> Coordinator::ReadCheckpointChunk(const v1::CheckpointInfo& info,
                                                             const std::string& file_name,
                                                             int64_t offset, int64_t max_bytes) {
  return ingest_.ReadChunk(info, file_name, offset, max_bytes);
}

}  // namespace peco::coordinator
