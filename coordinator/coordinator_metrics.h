// CoordinatorMetrics: the coordinator's Prometheus series (DESIGN.md section 7). Names carry the
// `peco_` prefix, counters end in `_total`, durations in `_seconds`; the only high-cardinality
// label, `job`, exists only while a job is active, and for at most `max_job_series` jobs at once
// (the first to report; others get series when a slot frees). Besides bounding what Prometheus
// scrapes, the cap bounds ForgetJob(): prometheus-cpp removes a series by a linear search of its
// family, which at 10,000 active jobs cost more than the rest of a job's end.
//
// Ownership: the object owns its prometheus::Registry; a prometheus::Exposer (main.cc) serves
// registry(). Thread-safety: every method is thread-safe (prometheus-cpp metrics are atomic; a
// mutex guards the per-job series).
#ifndef PECO_COORDINATOR_COORDINATOR_METRICS_H_
#define PECO_COORDINATOR_COORDINATOR_METRICS_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/worker.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace peco::coordinator {

class CoordinatorMetrics {
 public:
  explicit CoordinatorMetrics(size_t max_job_series = 1000);
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // peco_jobs{state}: the number of jobs in each state (states absent from `counts` are 0).
  void SetJobsByState(const std::map<v1::JobState, int64_t>& counts);
  // Moves one job between the peco_jobs series (`from` UNSPECIFIED: a new job).
  void CountJobTransition(v1::JobState from, v1::JobState to);
  // peco_workers{state}.
  void SetWorkersByState(const std::map<v1::WorkerState, int64_t>& counts);
  // peco_job_queue_wait_seconds: submit (or restart request) to placement.
  void ObserveQueueWait(double seconds);
  // peco_scheduling_pass_seconds: one scheduling pass (snapshot, policy, apply).
  void ObserveSchedulingPass(double seconds);
  // peco_job_restarts_total{reason}: worker_lost, trainer_failed, resumed.
  void CountRestart(const std::string& reason);
  // peco_checkpoints_committed_total, peco_checkpoint_bytes_total.
  void CountCheckpointCommitted(int64_t bytes);
  // peco_checkpoint_verification_failures_total: uploads or restores whose digests did not match.
  void CountVerificationFailure();
  // peco_progress_reports_total{result}: accepted or refused (stale attempt).
  void CountReports(int64_t accepted, int64_t refused);
  // peco_job_step / peco_job_loss / peco_job_images_per_second{job}: the latest values of an
  // active job (rank 0). Values absent from the point leave the series unchanged. Does nothing
  // for a job without series when max_job_series jobs have them.
  void SetJobProgress(const std::string& job_id, int64_t step,
                      const std::map<std::string, double>& values);
  // peco_job_restarts_so_far{job_id}: restarts of an active job so far (its restart_count), under
  // the same cap as SetJobProgress.
  void SetJobRestarts(const std::string& job_id, int64_t restarts);
  // Removes the per-job series of a job that is no longer active.
  void ForgetJob(const std::string& job_id);
  // peco_rpc_server_handled_total{service, method, code} and
  // peco_rpc_server_handling_seconds{service, method}: one finished RPC of the coordinator's
  // services (a stream's duration is its lifetime). `code` is the gRPC status name ("OK",
  // "NOT_FOUND"); labels are bounded by the services' methods and the 17 codes.
  void ObserveRpc(absl::string_view service, absl::string_view method, absl::string_view code,
                  double seconds);

 private:
  struct JobSeries {
    prometheus::Gauge* step = nullptr;
    prometheus::Gauge* loss = nullptr;
    prometheus::Gauge* images_per_second = nullptr;
    prometheus::Gauge* restarts = nullptr;
  };

  // The series of `job_id`, created if the cap allows; nullptr otherwise.
  JobSeries* SeriesLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& jobs_;
  prometheus::Family<prometheus::Gauge>& workers_;
  prometheus::Histogram& queue_wait_;
  prometheus::Histogram& scheduling_pass_;
  prometheus::Family<prometheus::Counter>& restarts_;
  prometheus::Counter& checkpoints_committed_;
  prometheus::Counter& checkpoint_bytes_;
  prometheus::Counter& verification_failures_;
  prometheus::Family<prometheus::Counter>& reports_;
  prometheus::Family<prometheus::Gauge>& job_step_;
  prometheus::Family<prometheus::Gauge>& job_loss_;
  prometheus::Family<prometheus::Gauge>& job_images_per_second_;
  prometheus::Family<prometheus::Gauge>& job_restarts_;
  prometheus::Family<prometheus::Counter>& rpcs_handled_;
  prometheus::Family<prometheus::Histogram>& rpc_seconds_;

  const size_t max_job_series_;
  absl::Mutex mu_;
  std::map<std::string, JobSeries> job_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_COORDINATOR_METRICS_H_
