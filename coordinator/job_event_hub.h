// JobEventHub: the live half of WatchJob. The coordinator publishes every state change, metric
// point and trainer event of a job; watchers wait for what came after their cursor.
//
// Each job keeps its most recent `max_events_per_job` events in memory with consecutive
// sequence numbers; the durable history is the JobStore's. A watcher takes a cursor *before* it
// reads the history from the store, so nothing falls between the two (it may see an event
// twice and drops duplicates by key).
//
// Thread-safety: every method is thread-safe. Wait() blocks without holding the lock.
#ifndef PECO_COORDINATOR_JOB_EVENT_HUB_H_
#define PECO_COORDINATOR_JOB_EVENT_HUB_H_

#include <cstdint>
#include <deque>
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
  explicit JobEventHub(size_t max_events_per_job = 10000);
  JobEventHub(const JobEventHub&) = delete;
  JobEventHub& operator=(const JobEventHub&) = delete;

  // Appends an event to the job's stream and wakes its watchers.
  void Publish(const std::string& job_id, v1::WatchJobEvent event);

  // Returns the sequence number the next event of the job will get (a watcher's start cursor).
  int64_t Cursor(const std::string& job_id);

  // Waits until the job has events at or after *cursor, the deadline passes, or Shutdown() was
  // called; returns those events (possibly none) and advances *cursor past them. When events
  // older than the cursor were dropped for space, `*lost` (if given) is set to how many.
  std::vector<v1::WatchJobEvent> Wait(const std::string& job_id, int64_t* cursor,
                                      absl::Time deadline, int64_t* lost = nullptr);

  // Wakes every watcher; later Wait() calls return at once.
  void Shutdown();
  bool shut_down() const;

 private:
  struct Stream {
    int64_t first_seq = 0;  // sequence number of events.front()
    std::deque<v1::WatchJobEvent> events;
  };

  const size_t max_events_per_job_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Stream> streams_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_EVENT_HUB_H_
