// Coordinator: attempt outcomes, scheduling passes, liveness and the periodic Tick().
#include <algorithm>
#include <set>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/dependency_inputs.h"
#include "coordinator/job_state_machine.h"
#include "coordinator/scheduling_pass.h"
#include "service/job_kinds.h"

namespace peco::coordinator {

using internal::Log;

// ---------------------------------------------------------------------------------------------
// Attempt outcomes and scheduling

absl::Status Coordinator::EndAttemptLocked(const std::string& job_id, int64_t attempt,
                                           AttemptEnd end, bool retryable,
                                           const std::string& reason,
                                           const std::string& restart_reason,
                                           const std::string& cause) {
  ASSIGN_OR_RETURN(v1::Job job, store_->GetJob(job_id));
  if (job.attempt() != attempt || !HoldsDevices(job.state())) return absl::OkStatus();
  const AttemptOutcome outcome =
      DecideAttemptOutcome(job, end, retryable, reason, cause, MaxRestarts(job));
  if (outcome.restart && metrics_ != nullptr) metrics_->CountRestart(restart_reason);
  return TransitionLocked(job, outcome.state, outcome.reason, outcome.cause).status();
}

absl::StatusOr<std::optional<NewAttempt>> Coordinator::PrepareAttemptLocked(
    const v1::Job& queued, const Placement& placement, const ResumePoints& resume_points,
    std::map<std::string, std::set<int32_t>>* ports_taken) {
  v1::Job job = queued;
  if (job.state() == v1::JOB_STATE_WAITING) {
    ASSIGN_OR_RETURN(job, TransitionLocked(job, v1::JOB_STATE_QUEUED, "dependency satisfied"));
  }
  const std::string& rank0_id = placement.workers.front().worker_id;
  const ClusterView::Worker* rank0_worker = cluster_.FindWorker(rank0_id);
  if (rank0_worker == nullptr) {
    return absl::InternalError(absl::StrCat("placement names unknown worker ", rank0_id));
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
  // A fork without a checkpoint of its own starts from the one it was forked from.
  if (attempt.resume_checkpoint_id.empty() && job.spec().init_from().has_checkpoint_id()) {
    const std::string& from = job.spec().init_from().checkpoint_id();
    absl::StatusOr<v1::CheckpointInfo> info = store_->GetCheckpoint(from);
    if (absl::IsNotFound(info.status())) {
      // Retention removed it before the fork wrote a checkpoint of its own: nothing to retry.
      RETURN_IF_ERROR(TransitionLocked(job, v1::JOB_STATE_FAILED,
                                       absl::StrCat("the checkpoint it was forked from, ", from,
                                                    ", no longer exists"))
                          .status());
      return std::optional<NewAttempt>();
    }
    RETURN_IF_ERROR(info.status());
    attempt.resume_checkpoint_id = info->id();
    attempt.resume_step = info->step();
  }
  absl::StatusOr<std::vector<v1::InputCheckpoint>> inputs = ResolveAttemptInputs(job, *store_);
  if (absl::IsFailedPrecondition(inputs.status())) {
    // The dependency succeeded without a checkpoint to hand over: retrying cannot help.
    RETURN_IF_ERROR(
        TransitionLocked(job, v1::JOB_STATE_FAILED, std::string(inputs.status().message()))
            .status());
    return std::optional<NewAttempt>();
  }
  RETURN_IF_ERROR(inputs.status());
  if (job.attempt() == 0) {
    for (const v1::InputCheckpoint& input : *inputs) {
      Log(absl::StrCat(job.id(), ": ", input.config_field(), " <- checkpoint ",
                       input.checkpoint_id()));
    }
  }
  attempt.inputs = *std::move(inputs);
  for (const WorkerRanks& ranks : placement.workers) {
    v1::RankPlacement rank_placement;
    rank_placement.set_worker_id(ranks.worker_id);
    for (int32_t rank : ranks.ranks) rank_placement.add_ranks(rank);
    attempt.placements.push_back(std::move(rank_placement));
  }
  attempt.master_addr = rank0_worker->info.host();
  std::set<int32_t>& taken = (*ports_taken)[rank0_id];
  attempt.master_port = cluster_.PickMasterPort(rank0_id, taken);
  if (attempt.master_port == 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("worker ", rank0_id, " has no free rendezvous port for ", job.id()));
  }
  taken.insert(attempt.master_port);
  attempt.time_us = NowMicros();
  return std::optional<NewAttempt>(std::move(attempt));
}

absl::Status Coordinator::StartAttemptsLocked(const std::vector<NewAttempt>& attempts) {
  if (attempts.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<absl::StatusOr<JobStore::StartedAttempt>> results,
                   store_->BeginAttempts(attempts));
  absl::Status first_error = absl::OkStatus();
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      if (first_error.ok()) first_error = results[i].status();
      continue;
    }
    const v1::Job& assigned = results[i]->job;
    const v1::Attempt& started = results[i]->attempt;
    auto queued = pending_.find(assigned.id());
    const v1::JobState from =
        queued != pending_.end() ? queued->second.state() : v1::JOB_STATE_QUEUED;
    const int64_t submit_time_us = assigned.submit_time_us();
    if (metrics_ != nullptr) metrics_->CountJobTransition(from, v1::JOB_STATE_ASSIGNED);
    pending_.erase(assigned.id());
    cluster_.SetActive(assigned.id(), ClusterView::Active{assigned, started});
    if (metrics_ != nullptr) {
      absl::Time since = absl::FromUnixMicros(submit_time_us);
      if (auto it = pending_since_.find(assigned.id()); it != pending_since_.end()) {
        since = it->second;
      }
      metrics_->ObserveQueueWait(absl::ToDoubleSeconds(clock_->Now() - since));
    }
    pending_since_.erase(assigned.id());
    std::string where;
    for (const v1::RankPlacement& p : started.placements()) {
      absl::StrAppend(&where, where.empty() ? "" : ", ", p.worker_id(), " ranks ", p.ranks_size());
    }
    PublishState(assigned, started.resume_checkpoint_id().empty()
                               ? "fresh start"
                               : absl::StrCat("resuming from ", started.resume_checkpoint_id()));
    Log(absl::StrCat(assigned.id(), " attempt ", started.number(), " assigned to ", where,
                     started.resume_checkpoint_id().empty()
                         ? ""
                         : absl::StrCat(", resuming from ", started.resume_checkpoint_id())));
  }
  return first_error;
}

absl::Status Coordinator::ScheduleLocked(const ResumePoints& resume_points) {
  const absl::Time start = absl::Now();
  last_pass_capped_ = false;
  if (pending_.empty()) return absl::OkStatus();
  // The snapshot borrows the cluster view's capacity list and gives it back at every exit.
  ClusterSnapshot snapshot;
  snapshot.now = clock_->Now();
  bool any_free = false;
  cluster_.LendCapacity(&snapshot.workers, &any_free);
  absl::Cleanup give_back = [&] { cluster_.ReturnCapacity(std::move(snapshot.workers)); };
  for (const auto& [id, job] : pending_) {
    const bool has_dependency =
        job.spec().depends_on().has_job_id() || job.spec().depends_on().has_checkpoint_id();
    // With no free device anywhere a pass can place nothing: only dependency verdicts (WAITING,
    // FAILED) can come out of it, so the (possibly long) queue of other jobs is left alone.
    if (!any_free && !has_dependency) continue;
    // A restart without a chosen checkpoint waits for the next Tick() to choose one.
    if (job.state() == v1::JOB_STATE_RESTARTING && job.next_resume_checkpoint_id().empty() &&
        resume_points.count(job.id()) == 0) {
      continue;
    }
    std::optional<absl::Time> restart_pending_since;
    if (auto it = pending_since_.find(job.id()); it != pending_since_.end()) {
      restart_pending_since = it->second;
    }
    snapshot.jobs.push_back(
        QueueEntryOf(job, restart_pending_since, DependencyStateOf(job.spec(), *store_)));
  }
  if (snapshot.jobs.empty()) return absl::OkStatus();

  ScheduleDecision decision = Schedule(snapshot, options_.scheduler);
  last_pass_capped_ = decision.capped;

  absl::Status first_error = absl::OkStatus();
  auto note = [&](const absl::Status& status) {
    if (!status.ok()) {
      Log(absl::StrCat("scheduling: ", status.ToString()));
      if (first_error.ok()) first_error = status;
    }
  };
  // Copies: the transitions below update pending_.
  auto pending_job = [&](const std::string& job_id) -> std::optional<v1::Job> {
    auto it = pending_.find(job_id);
    if (it == pending_.end()) return std::nullopt;
    return it->second;
  };
  for (const std::string& job_id : decision.waiting) {
    std::optional<v1::Job> waiting = pending_job(job_id);
    if (!waiting.has_value()) continue;
    const v1::Job& job = *waiting;
    if (job.state() == v1::JOB_STATE_QUEUED) {
      note(TransitionLocked(job, v1::JOB_STATE_WAITING,
                            absl::StrCat("waiting for ", job.spec().depends_on().job_id()))
               .status());
    }
  }
  for (const JobVerdict& verdict : decision.failed) {
    std::optional<v1::Job> failed = pending_job(verdict.job_id);
    if (!failed.has_value()) continue;
    note(TransitionLocked(*failed, v1::JOB_STATE_FAILED, FailedJobReason(*failed, verdict.reason))
             .status());
  }
  // The pass's attempts start in transactions of up to kAttemptsPerTransaction: one commit
  // (and one flush by the next Sync()) for many placements.
  constexpr size_t kAttemptsPerTransaction = 256;
  std::map<std::string, std::set<int32_t>> ports_taken;  // by this pass, per rank-0 worker
  std::vector<NewAttempt> batch;
  for (const Placement& placement : decision.placements) {
    std::optional<v1::Job> placed = pending_job(placement.job_id);
    if (!placed.has_value()) continue;
    absl::StatusOr<std::optional<NewAttempt>> prepared =
        PrepareAttemptLocked(*placed, placement, resume_points, &ports_taken);
    note(prepared.status());
    if (!prepared.ok() || !prepared->has_value()) continue;
    batch.push_back(**std::move(prepared));
    if (batch.size() == kAttemptsPerTransaction) {
      note(StartAttemptsLocked(batch));
      batch.clear();
    }
  }
  note(StartAttemptsLocked(batch));
  if (metrics_ != nullptr)
    metrics_->ObserveSchedulingPass(absl::ToDoubleSeconds(absl::Now() - start));
  return first_error;
}

void Coordinator::SweepWorkersLocked() {
  const absl::Time now = clock_->Now();
  for (const auto& [id, worker] : cluster_.workers()) {
    if (worker.info.state() == v1::WORKER_STATE_DEAD) continue;
    const absl::Duration silent = now - worker.last_heartbeat;
    if (silent <= options_.worker_timeout) {
      const v1::WorkerState state = silent > 3 * options_.heartbeat_interval
                                        ? v1::WORKER_STATE_SUSPECT
                                        : v1::WORKER_STATE_ALIVE;
      if (worker.info.state() != v1::WORKER_STATE_DRAINING) cluster_.SetWorkerState(id, state);
      continue;
    }
    cluster_.SetWorkerState(id, v1::WORKER_STATE_DEAD);
    absl::Status stored = store_->UpsertWorker(worker.info);
    if (!stored.ok()) Log(absl::StrCat("recording worker ", id, " as lost: ", stored.ToString()));
    Log(absl::StrCat("worker ", id, " lost (no heartbeat for ", absl::FormatDuration(silent), ")"));
    std::vector<std::pair<std::string, int64_t>> affected;
    for (const std::string& job_id : cluster_.ActiveOn(id)) {
      affected.emplace_back(job_id, cluster_.FindActive(job_id)->attempt.number());
    }
    for (const auto& [job_id, attempt] : affected) {
      absl::Status ended =
          EndAttemptLocked(job_id, attempt, AttemptEnd::kFailed, /*retryable=*/true,
                           absl::StrCat("worker ", id, " lost (no heartbeat for ",
                                        absl::FormatDuration(silent), ")"),
                           "worker_lost", "worker_lost");
      if (!ended.ok()) Log(ended.ToString());
    }
  }
}

void Coordinator::ForceOverdueCancellationsLocked() {
  const absl::Time now = clock_->Now();
  std::vector<std::pair<std::string, int64_t>> overdue;
  for (const auto& [job_id, active] : cluster_.active()) {
    if (active.job.cancel_requested_time_us() == 0) continue;
    const absl::Time deadline = absl::FromUnixMicros(active.job.cancel_requested_time_us()) +
                                options_.cancel_grace + options_.worker_timeout;
    if (now > deadline) overdue.emplace_back(job_id, active.attempt.number());
  }
  for (const auto& [job_id, attempt] : overdue) {
    absl::Status ended =
        EndAttemptLocked(job_id, attempt, AttemptEnd::kFailed, false,
                         "no worker confirmed the stop within the grace period", "", "cancelled");
    if (!ended.ok()) Log(ended.ToString());
  }
}

void Coordinator::RefreshGaugesLocked() {
  if (metrics_ == nullptr) return;
  std::map<v1::WorkerState, int64_t> workers;
  for (const auto& [id, worker] : cluster_.workers()) ++workers[worker.info.state()];
  metrics_->SetWorkersByState(workers);
}

Coordinator::ResumePoints Coordinator::ChooseResumePoints() {
  std::vector<std::string> restarting;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, job] : pending_) {
      if (job.state() == v1::JOB_STATE_RESTARTING && job.next_resume_checkpoint_id().empty()) {
        restarting.push_back(id);
      }
    }
  }
  ResumePoints points;
  for (const std::string& id : restarting) points[id] = ingest_.NewestVerified(id);
  return points;
}

bool Coordinator::Tick() {
  // Verifying checkpoints reads them whole: done before taking the lock heartbeats need.
  const ResumePoints resume_points = ChooseResumePoints();
  if (const int idle = ingest_.AbortIdleUploads(); idle > 0) {
    Log(absl::StrCat("aborted ", idle, " checkpoint upload(s) idle for longer than the timeout"));
  }
  absl::MutexLock lock(&mu_);
  SweepWorkersLocked();
  ForceOverdueCancellationsLocked();
  absl::Status scheduled = ScheduleLocked(resume_points);
  if (!scheduled.ok()) Log(absl::StrCat("scheduling pass failed: ", scheduled.ToString()));
  RefreshGaugesLocked();
  return last_pass_capped_;
}

}  // namespace peco::coordinator
