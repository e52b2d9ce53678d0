// WorkerMetrics: the worker's Prometheus metrics (DESIGN.md section 7: `peco_` prefix, `_total`
// counters, `_seconds` durations, job labels only for active jobs).
//
//   peco_worker_trainers_running                 trainer ranks alive now
//   peco_worker_heartbeats_total{result}         ok | not_found | error
//   peco_worker_reports_buffered                 progress reports waiting for the coordinator
//   peco_worker_reports_dropped_total            reports dropped because the buffer was full
//   peco_worker_checkpoint_uploads_total{result} committed | dropped | retry
//   peco_worker_checkpoint_upload_bytes_total    bytes of committed uploads
//   peco_worker_checkpoint_upload_seconds        duration of committed uploads (histogram)
//   peco_worker_trainer_exits_total{cause}       exit | nonfinite_loss | signal | stall | oom |
//                                                launch | cancel
//   peco_worker_rank_<value>{job,rank}           latest step, loss, images_per_second, lr,
//                                                data_wait_share, codes_used, perplexity of each
//                                                running rank; removed when its attempt ends
//
// Usage: WorkerMetrics metrics; exposer.RegisterCollectable(metrics.registry());
// Thread-safety: thread-safe (prometheus-cpp metrics are; the per-rank table has a mutex).
#ifndef PECO_WORKER_WORKER_METRICS_H_
#define PECO_WORKER_WORKER_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace peco::worker {

class WorkerMetrics {
 public:
  WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // The registry to expose (shared with the exposer, as prometheus-cpp requires).
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void SetTrainersRunning(int64_t ranks);
  // `result`: "ok", "not_found" or "error".
  void CountHeartbeat(absl::string_view result);
  void SetReportsBuffered(int64_t reports);
  // Sets the dropped-reports counter to the buffer's running total.
  void SetReportsDropped(int64_t total);
  // `result`: "committed", "dropped" or "retry"; bytes and duration count for committed ones.
  void CountUpload(absl::string_view result, int64_t bytes, absl::Duration duration);
  // `cause`: an AttemptResult cause.
  void CountTrainerExit(absl::string_view cause);

  // Sets the per-rank gauge `name` (one of step, loss, images_per_second, lr, data_wait_share,
  // codes_used, perplexity, mlm_acc, eval_top1; other names are ignored) of (job, rank).
  void SetRankValue(const std::string& job_id, int rank, absl::string_view name, double value);
  // Removes every per-rank gauge of `job_id`.
  void RemoveJob(const std::string& job_id);

 private:
  prometheus::Family<prometheus::Gauge>* RankFamily(absl::string_view name) const;

  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* trainers_running_;
  prometheus::Family<prometheus::Counter>* heartbeats_;
  prometheus::Gauge* reports_buffered_;
  prometheus::Counter* reports_dropped_;
  prometheus::Family<prometheus::Counter>* uploads_;
  prometheus::Counter* upload_bytes_;
  prometheus::Histogram* upload_seconds_;
  prometheus::Family<prometheus::Counter>* exits_;
  // Per-rank families by value name.
  std::map<std::string, prometheus::Family<prometheus::Gauge>*, std::less<>> rank_families_;
  // Names among rank_families_ the trainer reports in percent (exported as ratios).
  std::set<std::string, std::less<>> percent_values_;

  absl::Mutex mu_;
  // (job, rank, name) -> gauge, to remove a job's gauges.
  std::map<std::tuple<std::string, int, std::string>, prometheus::Gauge*> rank_gauges_
      ABSL_GUARDED_BY(mu_);
  int64_t dropped_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_WORKER_METRICS_H_
