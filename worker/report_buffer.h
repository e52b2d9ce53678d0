// ReportBuffer: the worker's bounded queue of progress reports (metric points, trainer events
// and log chunks) waiting for the coordinator to acknowledge them (docs/SERVICE.md, Progress
// relay).
//
// Reports are sent oldest first in batches; a batch leaves the buffer only when Ack() confirms
// it, so a coordinator that is unreachable loses nothing until the buffer is full. When it is
// full the oldest report is dropped (and counted): recent progress matters more than old, and a
// trainer must never block on its worker.
//
//   ReportBuffer buffer(10000);
//   buffer.Add(report);
//   ReportBuffer::Batch batch = buffer.Peek(500);
//   if (client->ReportProgress(batch.reports).ok()) buffer.Ack(batch);
//
// Thread-safety: thread-safe. Add() is called from trainer reader threads while one sender
// Peek()s and Ack()s; reports dropped between Peek() and Ack() are simply gone.
#ifndef PECO_WORKER_REPORT_BUFFER_H_
#define PECO_WORKER_REPORT_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "peco/v1/worker_service.pb.h"

namespace peco::worker {

class ReportBuffer {
 public:
  // Reports waiting to be sent, oldest first, and the sequence number of the last one.
  struct Batch {
    std::vector<v1::ReportProgressRequest> reports;
    uint64_t last_seq = 0;
  };

  // `capacity` >= 1: the most reports kept; `max_bytes`: the most serialized bytes kept (log
  // chunks are large), beyond which the oldest reports are dropped too.
  explicit ReportBuffer(size_t capacity, size_t max_bytes = size_t{256} << 20);
  ReportBuffer(const ReportBuffer&) = delete;
  ReportBuffer& operator=(const ReportBuffer&) = delete;

  // Appends a report, dropping the oldest when the buffer is full.
  void Add(v1::ReportProgressRequest report);

  // Returns up to `max_reports` of the oldest reports (copies; they stay buffered).
  Batch Peek(size_t max_reports) const;

  // Removes every report up to and including `batch.last_seq`.
  void Ack(const Batch& batch);

  // Removes the reports of one attempt (a stale attempt reports nothing).
  void DropAttempt(const std::string& job_id, int64_t attempt);

  size_t size() const;
  // Reports of one attempt still buffered (not yet acknowledged).
  size_t Pending(const std::string& job_id, int64_t attempt) const;
  // Reports dropped because the buffer was full.
  int64_t dropped() const;

 private:
  void PopFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<uint64_t, v1::ReportProgressRequest>> reports_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // ByteSizeLong() of the buffered reports
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_REPORT_BUFFER_H_
