#include "coordinator/coordinator_metrics.h"

#include "absl/strings/ascii.h"
#include "common/build_info.h"
#include "coordinator/job_state_machine.h"

namespace peco::coordinator {
namespace {

std::string WorkerStateLabel(v1::WorkerState state) {
  std::string name = v1::WorkerState_Name(state);
  const std::string prefix = "WORKER_STATE_";
  if (name.rfind(prefix, 0) == 0) name = name.substr(prefix.size());
  return absl::AsciiStrToLower(name);
}

prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600};
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(size_t max_job_series)
    : registry_(std::make_shared<prometheus::Registry>()),
      jobs_(prometheus::BuildGauge().Name("peco_jobs").Help("Jobs by state").Register(*registry_)),
      workers_(prometheus::BuildGauge()
                   .Name("peco_workers")
                   .Help("Workers by state")
                   .Register(*registry_)),
      queue_wait_(prometheus::BuildHistogram()
                      .Name("peco_job_queue_wait_seconds")
                      .Help("Time from submission (or restart request) to placement")
                      .Register(*registry_)
                      .Add({}, LatencyBuckets())),
      scheduling_pass_(prometheus::BuildHistogram()
                           .Name("peco_scheduling_pass_seconds")
                           .Help("Duration of one scheduling pass")
                           .Register(*registry_)
                           .Add({}, LatencyBuckets())),
      restarts_(prometheus::BuildCounter()
                    .Name("peco_job_restarts_total")
                    .Help("Job restarts by reason")
                    .Register(*registry_)),
      checkpoints_committed_(prometheus::BuildCounter()
                                 .Name("peco_checkpoints_committed_total")
                                 .Help("Checkpoints verified and committed")
                                 .Register(*registry_)
                                 .Add({})),
      checkpoint_bytes_(prometheus::BuildCounter()
                            .Name("peco_checkpoint_bytes_total")
                            .Help("Bytes of committed checkpoints")
                            .Register(*registry_)
                            .Add({})),
      verification_failures_(prometheus::BuildCounter()
                                 .Name("peco_checkpoint_verification_failures_total")
                                 .Help("Checkpoints refused because a size or SHA-256 differed")
                                 .Register(*registry_)
                                 .Add({})),
      reports_(prometheus::BuildCounter()
                   .Name("peco_progress_reports_total")
                   .Help("Progress reports from workers by result")
                   .Register(*registry_)),
      job_step_(prometheus::BuildGauge()
                    .Name("peco_job_step")
                    .Help("Latest step of an active job")
                    .Register(*registry_)),
      job_loss_(prometheus::BuildGauge()
                    .Name("peco_job_loss")
                    .Help("Latest loss of an active job")
                    .Register(*registry_)),
      job_images_per_second_(prometheus::BuildGauge()
                                 .Name("peco_job_images_per_second")
                                 .Help("Latest images per second of an active job (rank 0)")
                                 .Register(*registry_)),
      job_restarts_(prometheus::BuildGauge()
                        .Name("peco_job_restarts_so_far")
                        .Help("Restarts of an active job so far")
                        .Register(*registry_)),
      rpcs_handled_(prometheus::BuildCounter()
                        .Name("peco_rpc_server_handled_total")
                        .Help("RPCs the coordinator finished, by service, method and status code")
                        .Register(*registry_)),
      rpc_seconds_(prometheus::BuildHistogram()
                       .Name("peco_rpc_server_handling_seconds")
                       .Help("Time from an RPC's arrival to its status (a stream's lifetime)")
                       .Register(*registry_)),
      max_job_series_(max_job_series) {
  prometheus::BuildGauge()
      .Name("peco_build_info")
      .Help("The coordinator's build: version and source commit (always 1)")
      .Register(*registry_)
      .Add({{"version", kPecoVersion}, {"commit", kPecoCommit}})
      .Set(1);
  for (int s = v1::JobState_MIN; s <= v1::JobState_MAX; ++s) {
    if (s == v1::JOB_STATE_UNSPECIFIED) continue;
    jobs_.Add({{"state", std::string(JobStateName(static_cast<v1::JobState>(s)))}}).Set(0);
  }
  for (int s = v1::WorkerState_MIN; s <= v1::WorkerState_MAX; ++s) {
    if (s == v1::WORKER_STATE_UNSPECIFIED) continue;
    workers_.Add({{"state", WorkerStateLabel(static_cast<v1::WorkerState>(s))}}).Set(0);
  }
  reports_.Add({{"result", "accepted"}});
  reports_.Add({{"result", "refused"}});
}

void CoordinatorMetrics::SetJobsByState(const std::map<v1::JobState, int64_t>& counts) {
  for (int s = v1::JobState_MIN; s <= v1::JobState_MAX; ++s) {
    if (s == v1::JOB_STATE_UNSPECIFIED) continue;
    auto state = static_cast<v1::JobState>(s);
    auto it = counts.find(state);
    jobs_.Add({{"state", std::string(JobStateName(state))}})
        .Set(it == counts.end() ? 0 : static_cast<double>(it->second));
  }
}

void CoordinatorMetrics::CountJobTransition(v1::JobState from, v1::JobState to) {
  if (from != v1::JOB_STATE_UNSPECIFIED) {
    jobs_.Add({{"state", std::string(JobStateName(from))}}).Decrement();
  }
  if (to != v1::JOB_STATE_UNSPECIFIED) {
    jobs_.Add({{"state", std::string(JobStateName(to))}}).Increment();
  }
}

void CoordinatorMetrics::SetWorkersByState(const std::map<v1::WorkerState, int64_t>& counts) {
  for (int s = v1::WorkerState_MIN; s <= v1::WorkerState_MAX; ++s) {
    if (s == v1::WORKER_STATE_UNSPECIFIED) continue;
    auto state = static_cast<v1::WorkerState>(s);
    auto it = counts.find(state);
    workers_.Add({{"state", WorkerStateLabel(state)}})
        .Set(it == counts.end() ? 0 : static_cast<double>(it->second));
  }
}

void CoordinatorMetrics::ObserveQueueWait(double seconds) { queue_wait_.Observe(seconds); }

void CoordinatorMetrics::ObserveSchedulingPass(double seconds) {
  scheduling_pass_.Observe(seconds);
}

void CoordinatorMetrics::CountRestart(const std::string& reason) {
  restarts_.Add({{"reason", reason}}).Increment();
}

void CoordinatorMetrics::CountCheckpointCommitted(int64_t bytes) {
  checkpoints_committed_.Increment();
  checkpoint_bytes_.Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::CountVerificationFailure() { verification_failures_.Increment(); }

void CoordinatorMetrics::CountReports(int64_t accepted, int64_t refused) {
  if (accepted > 0) reports_.Add({{"result", "accepted"}}).Increment(static_cast<double>(accepted));
  if (refused > 0) reports_.Add({{"result", "refused"}}).Increment(static_cast<double>(refused));
}

CoordinatorMetrics::JobSeries* CoordinatorMetrics::SeriesLocked(const std::string& job_id) {
  auto it = job_series_.find(job_id);
  if (it == job_series_.end()) {
    if (job_series_.size() >= max_job_series_) return nullptr;
    it = job_series_.emplace(job_id, JobSeries()).first;
  }
  JobSeries& series = it->second;
  if (series.step == nullptr) {
    series.step = &job_step_.Add({{"job_id", job_id}});
    series.loss = &job_loss_.Add({{"job_id", job_id}});
    series.images_per_second = &job_images_per_second_.Add({{"job_id", job_id}});
    series.restarts = &job_restarts_.Add({{"job_id", job_id}});
  }
  return &series;
}

void CoordinatorMetrics::SetJobProgress(const std::string& job_id, int64_t step,
                                        const std::map<std::string, double>& values) {
  absl::MutexLock lock(&mu_);
  JobSeries* series = SeriesLocked(job_id);
  if (series == nullptr) return;
  series->step->Set(static_cast<double>(step));
  if (auto it = values.find("loss"); it != values.end()) series->loss->Set(it->second);
  if (auto it = values.find("images_per_second"); it != values.end()) {
    series->images_per_second->Set(it->second);
  }
}

void CoordinatorMetrics::SetJobRestarts(const std::string& job_id, int64_t restarts) {
  absl::MutexLock lock(&mu_);
  JobSeries* series = SeriesLocked(job_id);
  if (series != nullptr) series->restarts->Set(static_cast<double>(restarts));
}

void CoordinatorMetrics::ForgetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = job_series_.find(job_id);
  if (it == job_series_.end()) return;
  job_step_.Remove(it->second.step);
  job_loss_.Remove(it->second.loss);
  job_images_per_second_.Remove(it->second.images_per_second);
  job_restarts_.Remove(it->second.restarts);
  job_series_.erase(it);
}

}  // namespace peco::coordinator

namespace peco::coordinator {

void CoordinatorMetrics::ObserveRpc(absl::string_view service, absl::string_view method,
                                    absl::string_view code, double seconds) {
  rpcs_handled_
      .Add({{"service", std::string(service)},
            {"method", std::string(method)},
            {"code", std::string(code)}})
      .Increment();
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600};
  rpc_seconds_.Add({{"service", std::string(service)}, {"method", std::string(method)}}, kBuckets)
      .Observe(seconds);
}

}  // namespace peco::coordinator
