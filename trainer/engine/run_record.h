// The run record peco-train keeps beside its checkpoints (docs/TRAINER.md "Run record"): rank 0
// appends every progress event except heartbeats to <output_dir>/metrics.jsonl, each with its
// RFC 3339 "time", and writes a TensorBoard event file there (common/run_record_writer.h):
// the numeric fields of `step` and `eval` events as scalars (train/loss, eval/top1, ...:
// tensorboard::MetricTag), the effective config as the text "config" at the run's first step,
// and the PNG files of each checkpoint (the preview grid) as images at its step.
//
// The record never stops a run: when a file cannot be written the recorder says so once on
// stderr and records nothing more.
//
// Thread-safe: the sink serialises OnEvent; AddCheckpointImages takes the recorder's lock.
#ifndef PECO_TRAINER_ENGINE_RUN_RECORD_H_
#define PECO_TRAINER_ENGINE_RUN_RECORD_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/run_record_writer.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

class RunRecorder : public ProgressObserver {
 public:
  // Opens the record in `dir` and writes `config_text` at `step`. Internal naming the file
  // when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<RunRecorder>> Open(const std::string& dir,
                                                           const std::string& config_text,
                                                           int64_t step);

  void OnEvent(absl::string_view line) override;
  // Records the PNG files among `files` as images named by their stem ("preview").
  void AddCheckpointImages(int64_t step, const CheckpointFiles& files);

 private:
  explicit RunRecorder(std::unique_ptr<RunRecordWriter> writer) : writer_(std::move(writer)) {}
  // Keeps the first failure and stops recording.
  void Check(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<RunRecordWriter> writer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_RUN_RECORD_H_
