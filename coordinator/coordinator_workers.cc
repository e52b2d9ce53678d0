// Coordinator: the WorkerService side (registration, heartbeats, reports, checkpoint uploads).
#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/json_line.h"
#include "common/status_macros.h"
#include "coordinator/coordinator.h"
#include "coordinator/coordinator_internal.h"
#include "coordinator/job_state_machine.h"
#include "service/checkpoint_transfer.h"
#include "service/job_kinds.h"

namespace peco::coordinator {

using internal::CheckpointIdFor;
using internal::HoldsRankZero;
using internal::Log;
using internal::NewWorkerId;
using internal::PlacedOn;
using internal::PlacementOf;

// ---------------------------------------------------------------------------------------------
// WorkerService

namespace {

bool RankPlacedOn(const v1::Attempt& attempt, const std::string& worker_id, int32_t rank) {
  const v1::RankPlacement* placement = PlacementOf(attempt, worker_id);
  return placement != nullptr && std::find(placement->ranks().begin(), placement->ranks().end(),
                                           rank) != placement->ranks().end();
}

absl::Status NotPlacedOn(const WorkerCaller& caller, const std::string& job_id, int64_t attempt,
                         absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrCat("worker ", caller.bound_worker_id, " may not ",
                                                  what, ": job ", job_id, " attempt ", attempt,
                                                  " is not placed on it"));
}

}  // namespace

absl::StatusOr<v1::RegisterResponse> Coordinator::Register(const v1::RegisterRequest& request,
                                                           const WorkerCaller& caller) {
  return Synced(RegisterUnsynced(request, caller));
}

absl::StatusOr<v1::ReportProgressResponse> Coordinator::ReportProgress(
    const std::vector<v1::ReportProgressRequest>& reports, const WorkerCaller& caller) {
  return Synced(ReportProgressUnsynced(reports, caller));
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::CommitCheckpointUpload(
    const CheckpointUpload& upload, const v1::CheckpointManifest& manifest) {
  return Synced(ingest_.Commit(upload, manifest));
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::Heartbeat(const v1::HeartbeatRequest& request,
                                                             const WorkerCaller& caller) {
  bool changed = false;
  absl::StatusOr<v1::HeartbeatResponse> response = HeartbeatUnsynced(request, caller, &changed);
  // A heartbeat that changed nothing and hands out nothing acknowledges nothing: it need not
  // wait for the disk (most of them, at 1/s per worker).
  if (response.ok() && !changed && response->assignments().empty() &&
      response->cancellations().empty() && response->stale().empty()) {
    return response;
  }
  return Synced(std::move(response));
}

absl::StatusOr<v1::RegisterResponse> Coordinator::RegisterUnsynced(
    const v1::RegisterRequest& request, const WorkerCaller& caller) {
  v1::WorkerInfo info = request.worker();
  if (!caller.bound_worker_id.empty()) {
    // A worker with its own token is that worker, whatever id it asks for: it cannot take over
    // another worker's record (and mark its attempts lost). The answer tells it its id.
    if (!info.id().empty() && info.id() != caller.bound_worker_id) {
      Log(absl::StrCat("a worker asked to register as '", info.id(), "' with the token of '",
                       caller.bound_worker_id, "': registering it as '", caller.bound_worker_id,
                       "'"));
    }
    info.set_id(caller.bound_worker_id);
  }
  if (info.devices().gpus() > options_.max_worker_gpus ||
      info.devices().cpu_slots() > options_.max_worker_cpu_slots) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker.devices: at most ", options_.max_worker_gpus, " gpus and ",
                     options_.max_worker_cpu_slots,
                     " cpu_slots per worker (--max_worker_gpus, "
                     "--max_worker_cpu_slots), got ",
                     info.devices().gpus(), " and ", info.devices().cpu_slots()));
  }
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
    } while (cluster_.FindWorker(info.id()) != nullptr);
  }
  info.set_state(v1::WORKER_STATE_ALIVE);
  info.set_last_heartbeat_us(absl::ToUnixMicros(now));
  info.clear_free_devices();
  RETURN_IF_ERROR(store_->UpsertWorker(info));
  cluster_.PutWorker(info, now);

  v1::RegisterResponse response;
  response.set_worker_id(info.id());
  response.set_heartbeat_interval_ms(absl::ToInt64Milliseconds(options_.heartbeat_interval));
  std::set<std::pair<std::string, int64_t>> reported;
  for (const v1::RunningRanks& running : request.running()) {
    reported.insert({running.job_id(), running.attempt()});
    const ClusterView::Active* active = cluster_.FindCurrent(running.job_id(), running.attempt());
    if (active != nullptr && PlacedOn(active->attempt, info.id())) {
      MarkRunningLocked(running.job_id(), running.attempt());  // re-attached
    } else {
      *response.add_stale() = running;
    }
  }
  // Attempts placed here that the worker no longer runs died with its previous process.
  std::vector<std::pair<std::string, int64_t>> lost;
  for (const std::string& job_id : cluster_.ActiveOn(info.id())) {
    const ClusterView::Active& active = *cluster_.FindActive(job_id);
    if (reported.count({job_id, active.attempt.number()}) == 0 &&
        active.job.state() == v1::JOB_STATE_RUNNING) {
      lost.emplace_back(job_id, active.attempt.number());
    }
  }
  for (const auto& [job_id, attempt] : lost) {
    absl::Status ended =
        EndAttemptLocked(job_id, attempt, AttemptEnd::kFailed, /*retryable=*/true,
                         absl::StrCat("worker ", info.id(), " restarted without the trainer"),
                         "worker_lost", "worker_lost");
    if (!ended.ok()) Log(ended.ToString());
  }
  Log(absl::StrCat("worker ", info.id(), " registered from ", info.host(), " (",
                   info.devices().cpu_slots(), " CPU slots, ", info.devices().gpus(), " GPUs, ",
                   request.running_size(), " running attempts, ", response.stale_size(),
                   " stale)"));
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Coordinator::HeartbeatUnsynced(
    const v1::HeartbeatRequest& request, const WorkerCaller& caller, bool* changed) {
  if (!caller.bound_worker_id.empty() && request.worker_id() != caller.bound_worker_id) {
    return absl::PermissionDeniedError(absl::StrCat("worker_id: this worker's token is bound to '",
                                                    caller.bound_worker_id, "', not '",
                                                    request.worker_id(), "'"));
  }
  absl::MutexLock lock(&mu_);
  // Results and RUNNING marks write to the store.
  *changed = !request.finished().empty();
  const std::string& worker_id = request.worker_id();
  const ClusterView::Worker* found =
      cluster_.NoteHeartbeat(worker_id, clock_->Now(), request.free_devices());
  if (found == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("worker_id: unknown worker '", worker_id, "'; register again"));
  }
  const ClusterView::Worker& worker = *found;
  if (worker.info.state() == v1::WORKER_STATE_DEAD) {
    cluster_.SetWorkerState(worker_id, v1::WORKER_STATE_ALIVE);
    RETURN_IF_ERROR(store_->UpsertWorker(worker.info));
    *changed = true;
    Log(absl::StrCat("worker ", worker_id, " is back"));
  } else if (worker.info.state() == v1::WORKER_STATE_SUSPECT) {
    // SUSPECT (late heartbeats) lives in memory only; nothing to store.
    cluster_.SetWorkerState(worker_id, v1::WORKER_STATE_ALIVE);
  }

  // Results first: they may end attempts the rest of the exchange would otherwise resend.
  std::set<std::pair<std::string, int64_t>> finished;
  for (const v1::AttemptResult& result : request.finished()) {
    finished.insert({result.job_id(), result.attempt()});
    const ClusterView::Active* active = cluster_.FindCurrent(result.job_id(), result.attempt());
    if (active == nullptr) continue;
    if (!PlacedOn(active->attempt, worker_id)) {
      // Only a worker that runs the attempt can say how it ended.
      Log(absl::StrCat("ignoring a result of ", result.job_id(), " attempt ", result.attempt(),
                       " from worker ", worker_id, ", which does not run it"));
      continue;
    }
    const bool rank_zero = HoldsRankZero(active->attempt, worker_id);
    absl::Status ended = absl::OkStatus();
    switch (result.result()) {
      case v1::AttemptResult::RESULT_SUCCEEDED:
        if (rank_zero) {
          ended = EndAttemptLocked(result.job_id(), result.attempt(), AttemptEnd::kSucceeded, false,
                                   "", "", "");
        }
        break;
      case v1::AttemptResult::RESULT_STOPPED:
        if (rank_zero) {
          ended = EndAttemptLocked(result.job_id(), result.attempt(), AttemptEnd::kStopped, true,
                                   "the trainer stopped without a cancellation from peco",
                                   "trainer_stopped", "trainer_stopped");
        }
        break;
      default:
        // Which machine: a dataset path or a driver missing on one worker fails only there.
        ended = EndAttemptLocked(
            result.job_id(), result.attempt(), AttemptEnd::kFailed, result.retryable(),
            absl::StrCat(result.reason().empty() ? "the trainer failed" : result.reason(),
                         " (on worker ", worker_id, ", host ", worker.info.host(), ")"),
            result.cause() == "stall" ? "trainer_stalled" : "trainer_failed",
            result.cause().empty() ? "exit" : result.cause());
        break;
    }
    if (!ended.ok()) Log(absl::StrCat("applying a result of ", worker_id, ": ", ended.ToString()));
  }

  v1::HeartbeatResponse response;
  std::set<std::pair<std::string, int64_t>> running;
  for (const v1::RunningRanks& ranks : request.running()) {
    running.insert({ranks.job_id(), ranks.attempt()});
    const ClusterView::Active* active = cluster_.FindCurrent(ranks.job_id(), ranks.attempt());
    if (active == nullptr || !PlacedOn(active->attempt, worker_id)) {
      *response.add_stale() = ranks;
      continue;
    }
    *changed |= MarkRunningLocked(ranks.job_id(), ranks.attempt());
  }

  const absl::Time now = clock_->Now();
  for (const std::string& job_id : cluster_.ActiveOn(worker_id)) {
    const ClusterView::Active& active = *cluster_.FindActive(job_id);
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
      *assignment->mutable_inputs() = active.attempt.inputs();
    }
  }
  return response;
}

bool Coordinator::MarkRunningLocked(const std::string& job_id, int64_t attempt) {
  const ClusterView::Active* active = cluster_.FindCurrent(job_id, attempt);
  if (active == nullptr || active->job.state() != v1::JOB_STATE_ASSIGNED) return false;
  // A copy: the transition updates the cluster view.
  const v1::Job job = active->job;
  absl::StatusOr<v1::Job> updated = TransitionLocked(job, v1::JOB_STATE_RUNNING, "");
  if (!updated.ok()) {
    Log(absl::StrCat("marking ", job_id, " running: ", updated.status().ToString()));
  }
  return true;  // whether or not it worked, the store may have been written
}

bool Coordinator::MayReportLocked(const WorkerCaller& caller, const std::string& job_id,
                                  int64_t attempt, int32_t rank) const {
  if (caller.bound_worker_id.empty()) return true;
  const ClusterView::Active* active = cluster_.FindCurrent(job_id, attempt);
  return active != nullptr && RankPlacedOn(active->attempt, caller.bound_worker_id, rank);
}

absl::Status Coordinator::CheckLogChunk(const v1::LogChunk& chunk, const WorkerCaller& caller) {
  if (caller.bound_worker_id.empty()) return absl::OkStatus();
  {
    absl::MutexLock lock(&mu_);
    if (MayReportLocked(caller, chunk.job_id(), chunk.attempt(), chunk.rank())) {
      return absl::OkStatus();
    }
  }
  // The attempt may have ended: its last lines are still the worker's to send.
  ASSIGN_OR_RETURN(std::vector<v1::Attempt> attempts, store_->ListAttempts(chunk.job_id()));
  for (const v1::Attempt& attempt : attempts) {
    if (attempt.number() == chunk.attempt() &&
        RankPlacedOn(attempt, caller.bound_worker_id, chunk.rank())) {
      return absl::OkStatus();
    }
  }
  return NotPlacedOn(caller, chunk.job_id(), chunk.attempt(),
                     absl::StrCat("send the log of rank ", chunk.rank()));
}

absl::StatusOr<v1::ReportProgressResponse> Coordinator::ReportProgressUnsynced(
    const std::vector<v1::ReportProgressRequest>& reports, const WorkerCaller& caller) {
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
  for (auto& [key, all_points] : groups) {
    // A bound worker reports only its own ranks' points.
    std::vector<v1::MetricPoint> points;
    for (v1::MetricPoint& point : all_points) {
      if (MayReportLocked(caller, key.first, key.second, point.rank())) {
        points.push_back(std::move(point));
      } else {
        ++refused;
      }
    }
    if (points.empty()) continue;
    absl::StatusOr<int64_t> appended = store_->AppendMetricPoints(key.first, key.second, points);
    if (absl::IsFailedPrecondition(appended.status()) || absl::IsNotFound(appended.status())) {
      refused += static_cast<int64_t>(points.size());
      continue;
    }
    RETURN_IF_ERROR(appended.status());
    accepted += static_cast<int64_t>(points.size());
    MarkRunningLocked(key.first, key.second);
    for (const v1::MetricPoint& point : points) {
      progress_.NotePoint(point);
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
    if (cluster_.FindCurrent(trainer_event.job_id(), trainer_event.attempt()) == nullptr ||
        !MayReportLocked(caller, trainer_event.job_id(), trainer_event.attempt(),
                         trainer_event.rank())) {
      ++refused;
      continue;
    }
    ++accepted;
    MarkRunningLocked(trainer_event.job_id(), trainer_event.attempt());
    if (trainer_event.type() == "start" && trainer_event.rank() == 0) {
      // The start event (docs/TRAINER.md) is the JSON line itself: it says max_steps.
      std::optional<JsonFields> fields = ParseJsonObjectLine(trainer_event.message());
      if (fields && fields->Int("max_steps"))
        progress_.NoteMaxSteps(trainer_event.job_id(), *fields->Int("max_steps"));
    }
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
    const v1::CheckpointHeader& header, const WorkerCaller& caller) {
  if (header.rank() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("header.rank: checkpoints are uploaded by rank 0, got ", header.rank()));
  }
  if (!header.job_id().empty() && header.attempt() >= 1) {
    absl::MutexLock lock(&mu_);
    const ClusterView::Active* active = cluster_.FindCurrent(header.job_id(), header.attempt());
    if (active == nullptr) {
      RETURN_IF_ERROR(store_->GetJob(header.job_id()).status());  // NotFound for an unknown job
      return absl::FailedPreconditionError(absl::StrCat("header.attempt: attempt ",
                                                        header.attempt(), " of ", header.job_id(),
                                                        " is not running"));
    }
    if (!caller.bound_worker_id.empty() &&
        !HoldsRankZero(active->attempt, caller.bound_worker_id)) {
      return NotPlacedOn(caller, header.job_id(), header.attempt(),
                         "upload a checkpoint (its rank 0 runs elsewhere)");
    }
    if (header.step() < active->attempt.resume_step()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "header.step: ", header.step(), " is before step ", active->attempt.resume_step(),
          ", where attempt ", header.attempt(), " of ", header.job_id(), " resumed"));
    }
  }
  return ingest_.Begin(header);  // InvalidArgument for a malformed header
}

absl::StatusOr<v1::CheckpointInfo> Coordinator::OpenCheckpointForWorker(
    const std::string& checkpoint_id, const std::string& worker_id, const WorkerCaller& caller) {
  if (!caller.bound_worker_id.empty()) {
    if (worker_id != caller.bound_worker_id) {
      return absl::PermissionDeniedError(
          absl::StrCat("worker_id: this worker's token is bound to '", caller.bound_worker_id,
                       "', not '", worker_id, "'"));
    }
    bool needed = false;
    {
      absl::MutexLock lock(&mu_);
      for (const std::string& job_id : cluster_.ActiveOn(worker_id)) {
        const v1::Attempt& attempt = cluster_.FindActive(job_id)->attempt;
        needed |= attempt.resume_checkpoint_id() == checkpoint_id;
        for (const v1::InputCheckpoint& input : attempt.inputs()) {
          needed |= input.checkpoint_id() == checkpoint_id;
        }
      }
    }
    if (!needed) {
      return absl::PermissionDeniedError(
          absl::StrCat("worker ", worker_id, " may not fetch checkpoint ", checkpoint_id,
                       ": no attempt placed on it resumes from it or reads it"));
    }
  }
  return ingest_.Open(checkpoint_id);
}

absl::Status Coordinator::AppendCheckpointChunk(const CheckpointUpload& upload,
                                                const v1::CheckpointChunk& chunk) {
  return ingest_.Append(upload, chunk);
}

void Coordinator::AbortCheckpointUpload(const CheckpointUpload& upload) { ingest_.Abort(upload); }

}  // namespace peco::coordinator
