// LogTailer: follows one rank's log file on the worker and cuts what was appended into LogChunks
// of whole lines, which the agent relays to the coordinator with the progress reports
// (`peco logs JOB`). The file is written by the trainer's stderr and by the worker itself (the
// non-JSON stdout lines, hang dumps), so it is read back rather than intercepted.
//
//   LogTailer tailer(path, "job-000001", 1, /*rank=*/0);
//   for (v1::LogChunk& chunk : tailer.Poll(/*at_end=*/false)) buffer.Add(...);
//
// Thread-safety: thread-compatible (the agent polls under its lock).
#ifndef PECO_WORKER_LOG_TAILER_H_
#define PECO_WORKER_LOG_TAILER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "peco/v1/metrics.pb.h"

namespace peco::worker {

class LogTailer {
 public:
  // `max_chunk_bytes` >= 1 bounds each chunk; `max_poll_bytes` bounds what one Poll() reads, so a
  // trainer that floods its log cannot stall the agent.
  LogTailer(std::string path, std::string job_id, int64_t attempt, int32_t rank,
            int64_t max_chunk_bytes = int64_t{64} << 10, int64_t max_poll_bytes = int64_t{1} << 20);

  // The bytes appended since the last call, as chunks ending at a newline. A line longer than
  // max_chunk_bytes is cut. With `at_end` (the rank has exited) a last line without a newline is
  // sent too. A missing file yields nothing (the rank may not have started).
  std::vector<v1::LogChunk> Poll(bool at_end);

  // Bytes of the file sent so far.
  int64_t offset() const { return offset_; }

 private:
  const std::string path_;
  const std::string job_id_;
  const int64_t attempt_;
  const int32_t rank_;
  const int64_t max_chunk_bytes_;
  const int64_t max_poll_bytes_;
  int64_t offset_ = 0;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_LOG_TAILER_H_
