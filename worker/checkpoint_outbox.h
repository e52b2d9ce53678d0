// CheckpointOutbox: checkpoints of rank 0 waiting to be uploaded to the coordinator
// (docs/SERVICE.md, Checkpoints).
//
// Add() hard-links the checkpoint's files into `<root>/<job>-a<attempt>-step-<12 digits>/` at
// once, so the trainer's retention cannot delete them mid-upload. The uploader takes due entries
// with NextDue(), and reports each try with Finish(): done (committed or dropped for good) removes
// the entry and its directory; a retryable failure schedules the entry again after an exponential
// backoff (initial_backoff, doubling, at most max_backoff).
//
// Thread-safety: thread-safe. Add() runs on trainer reader threads, NextDue()/Finish() on the
// uploader, Pending() on the control loop. An entry handed out by NextDue() is not handed out
// again until Finish() is called for it.
#ifndef PECO_WORKER_CHECKPOINT_OUTBOX_H_
#define PECO_WORKER_CHECKPOINT_OUTBOX_H_

#include <cstdint>
#include <list>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::worker {

class CheckpointOutbox {
 public:
  struct Entry {
    uint64_t id = 0;
    v1::CheckpointHeader header;
    std::string dir;  // the hard-linked copy
    int tries = 0;    // failed tries so far
    absl::Time next_try = absl::InfinitePast();
    absl::Status last_error;
  };

  // `root` is created on the first Add().
  CheckpointOutbox(std::string root, absl::Duration initial_backoff, absl::Duration max_backoff);
  CheckpointOutbox(const CheckpointOutbox&) = delete;
  CheckpointOutbox& operator=(const CheckpointOutbox&) = delete;

  // Links the checkpoint in `checkpoint_dir` into the outbox and queues it (due now). Errors:
  // LinkCheckpoint's (NotFound when the trainer already removed it); AlreadyExists when the same
  // checkpoint is queued already.
  absl::Status Add(const v1::CheckpointHeader& header, const std::string& checkpoint_dir);

  // Returns the oldest entry due at `now` that is not being uploaded, and marks it as being
  // uploaded; std::nullopt when none is due.
  std::optional<Entry> NextDue(absl::Time now);

  // Ends the try of entry `id`: `retry` false removes it and its directory; true schedules it
  // again at `now` + backoff and records `error`.
  void Finish(uint64_t id, bool retry, absl::Time now, const absl::Status& error);

  // Removes the entries of one attempt that are not being uploaded (a stale attempt); the one
  // being uploaded is removed by its Finish().
  void DropAttempt(const std::string& job_id, int64_t attempt);

  // Number of queued entries (including one being uploaded) of one attempt, or of all when
  // `job_id` is empty.
  int Pending(const std::string& job_id = "", int64_t attempt = 0) const;

 private:
  struct Item {
    Entry entry;
    bool busy = false;
    bool dropped = false;
  };
  void RemoveDir(const std::string& dir) const;

  const std::string root_;
  const absl::Duration initial_backoff_;
  const absl::Duration max_backoff_;

  mutable absl::Mutex mu_;
  std::list<Item> items_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_CHECKPOINT_OUTBOX_H_
