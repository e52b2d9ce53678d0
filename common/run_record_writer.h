// The record of one run in a directory, for the tools ML engineers already use
// (docs/TRAINER.md "Run record"):
//
//   metrics.jsonl                          one JSON object a line, appended across resumes
//   events.out.tfevents.<s>.<host>.<pid>.peco   TensorBoard scalars, images and text; a new file
//                                               for each writer (TensorBoard reads them all)
//
// peco-train writes it beside its checkpoints (trainer/engine/run_record.h); `peco tensorboard`
// writes it from a service job's history. Writes reach the OS at each Flush(); the files are
// not fsynced (a record, not a checkpoint: a crash may lose its last lines).
//
// Errors name the file. Thread-compatible: one writer per run, callers serialise.
#ifndef PECO_COMMON_RUN_RECORD_WRITER_H_
#define PECO_COMMON_RUN_RECORD_WRITER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peco {

inline constexpr char kMetricsFile[] = "metrics.jsonl";

class RunRecordWriter {
 public:
  // Creates `dir` when missing, opens (appends to) its metrics.jsonl and creates a new event
  // file named for `now`, this host and process, whose first record is the file version.
  // Two writers opened on one directory in the same second get distinct event files.
  static absl::StatusOr<std::unique_ptr<RunRecordWriter>> Open(const std::string& dir,
                                                               absl::Time now);
  ~RunRecordWriter();
  RunRecordWriter(const RunRecordWriter&) = delete;
  RunRecordWriter& operator=(const RunRecordWriter&) = delete;

  // Appends one JSON object (without its newline) as a line of metrics.jsonl.
  absl::Status AppendJson(absl::string_view json_object);
  // TensorBoard summaries (common/tensorboard_events.h). AddImage: InvalidArgument when `png`
  // is not a PNG (nothing written).
  absl::Status AddScalar(absl::string_view tag, int64_t step, double value, absl::Time time);
  absl::Status AddImage(absl::string_view tag, int64_t step, absl::string_view png,
                        absl::Time time);
  absl::Status AddText(absl::string_view tag, int64_t step, absl::string_view text,
                       absl::Time time);
  // Hands both files' buffered bytes to the OS.
  absl::Status Flush();

  const std::string& metrics_path() const { return metrics_path_; }
  const std::string& event_path() const { return event_path_; }

 private:
  RunRecordWriter(std::string metrics_path, std::FILE* metrics, std::string event_path,
                  std::FILE* events);
  absl::Status WriteEvent(absl::string_view event);

  std::string metrics_path_;
  std::FILE* metrics_;
  std::string event_path_;
  std::FILE* events_;
};

}  // namespace peco

#endif  // PECO_COMMON_RUN_RECORD_WRITER_H_
