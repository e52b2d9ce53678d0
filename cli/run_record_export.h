// `peco tensorboard JOB DIR`: a service job's history as a run record (common/run_record_writer.h)
// — the same metrics.jsonl and TensorBoard event file a standalone peco-train run writes beside
// its checkpoints, so `tensorboard --logdir DIR` shows service jobs and local runs alike.
//
// From the job's WatchJob stream (history included): rank 0's metric points become scalars
// (tensorboard::MetricTag: train/loss, eval/top1, ...) and metrics.jsonl lines
// {"time", "event": "metrics", "attempt", "rank", "step", <values>}; state changes become lines
// {"time", "event": "state", "attempt", "state", "reason"}; the job's trainer config is the
// text "config". Metric points of other ranks are skipped (rank 0 reports the reduced values).
//
// Thread-compatible: one exporter per job.
#ifndef PECO_CLI_RUN_RECORD_EXPORT_H_
#define PECO_CLI_RUN_RECORD_EXPORT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/run_record_writer.h"
#include "peco/v1/job_service.pb.h"

namespace peco::cli {

class RunRecordExporter {
 public:
  // `writer` is borrowed and must outlive the exporter.
  explicit RunRecordExporter(RunRecordWriter* writer) : writer_(writer) {}

  // Records the job's trainer config (its spec) as text at step 0.
  absl::Status AddJob(const v1::Job& job);
  // Records one event of the job's watch stream; errors name the file.
  absl::Status Consume(const v1::WatchJobEvent& event);

  int64_t points() const { return points_; }

 private:
  RunRecordWriter* writer_;
  int64_t points_ = 0;  // rank-0 metric points written
};

}  // namespace peco::cli

#endif  // PECO_CLI_RUN_RECORD_EXPORT_H_
