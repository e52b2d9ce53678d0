// JobEventHub: the live half of WatchJob. The coordinator publishes every state change, metric
// point and trainer event of a job; watchers wait for what came after their cursor.
//
// Each job keeps its most recent `max_events_per_job` events in memory with consecutive
// sequence numbers; the durable history is the JobStore's. A watcher takes a cursor *before* it
// reads the history from the store, so nothing falls between the two (it may see an event
// twice and drops duplicates by key).
//
// Memory: the events of a job that reached a terminal state (SUCCEEDED, FAILED, CANCELLED) are
// dropped once nobody waits on them and `retention` has passed (its history is in the store); a
// later event (a resume) starts a new stream whose sequence numbers continue above every number
// handed out before, so an old cursor never skips its events.
//
// Thread-safety: every method is thread-safe. Wait() blocks without holding the lock; each job
// has its own condition variable, so a publication wakes only that job's watchers.
#ifndef PECO_COORDINATOR_JOB_EVENT_HUB_H_
#define PECO_COORDINATOR_JOB_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peco/v1/job_service.pb.h"

namespace peco::coordinator {

class JobEventHub {
 public:
  explicit JobEventHub(size_t max_events_per_job = 10000,
                       absl::Duration retention = absl::Minutes(5));
  JobEventHub(const JobEventHub&) = delete;
  JobEventHub& operator=(const JobEventHub&) = delete;

  // Appends an event to the job's stream and wakes its watchers.
  void Publish(const std::string& job_id, v1::WatchJobEvent event) ABSL_LOCKS_EXCLUDED(mu_);

  // Returns the sequence number the next event of the job will get (a watcher's start cursor).
  int64_t Cursor(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until the job has events at or after *cursor, the deadline passes, or Shutdown() was
  // called; returns those events (possibly none) and advances *cursor past them. When events
  // after the cursor were dropped for space, `*lost` (if given) is set to how many.
  std::vector<v1::WatchJobEvent> Wait(const std::string& job_id, int64_t* cursor,
                                      absl::Time deadline, int64_t* lost = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Wakes every watcher; later Wait() calls return at once.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);
  bool shut_down() const ABSL_LOCKS_EXCLUDED(mu_);

  // Returns how many jobs have events in memory.
  size_t StreamCountForTest() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Stream {
    int64_t base_seq = 0;   // sequence number of the stream's first event ever
    int64_t first_seq = 0;  // sequence number of events.front()
    std::deque<v1::WatchJobEvent> events;
    absl::CondVar changed;  // signalled on every event and at shutdown
    int waiters = 0;
    absl::Time ended = absl::InfiniteFuture();  // when a terminal state was published

    int64_t end_seq() const { return first_seq + static_cast<int64_t>(events.size()); }
  };

  // Returns the job's stream, creating it (numbered above everything handed out) if needed.
  Stream& StreamLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the streams of ended jobs older than retention_ that nobody waits on.
  void PruneLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_events_per_job_;
  const absl::Duration retention_;
  mutable absl::Mutex mu_;
  // unique_ptr: a waiter's CondVar must not move when the map grows.
  absl::flat_hash_map<std::string, std::unique_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  // Above every sequence number handed out so far (by Cursor or an event).
  int64_t next_seq_floor_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t publishes_since_prune_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_EVENT_HUB_H_
