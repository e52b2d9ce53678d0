// JobProgressCache: each job's latest progress (Job.progress: step, max_steps, loss, images/s,
// eval results), kept in memory from rank 0's metric points and start events so that GetJob and
// ListJobs fill it without reading the metric history. Bounded: the progress of ended jobs is
// forgotten, oldest end first, beyond `max_ended` (GetJob rebuilds a forgotten one from the
// stored curve).
//
// Thread-safety: thread-safe; its own mutex, so progress reads never wait for the Coordinator's.
#ifndef PECO_COORDINATOR_JOB_PROGRESS_CACHE_H_
#define PECO_COORDINATOR_JOB_PROGRESS_CACHE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/metrics.pb.h"

namespace peco::coordinator {

class JobProgressCache {
 public:
  explicit JobProgressCache(int max_ended) : max_ended_(max_ended) {}
  JobProgressCache(const JobProgressCache&) = delete;
  JobProgressCache& operator=(const JobProgressCache&) = delete;

  // Takes rank 0's point as the job's progress unless it is older (a lower step and an earlier
  // time) than what is known; points of other ranks are ignored.
  void NotePoint(const v1::MetricPoint& point);
  // Records the run's length (the trainer's start event).
  void NoteMaxSteps(const std::string& job_id, int64_t max_steps);
  // Records that the job ended: its progress stays until `max_ended` later ends push it out.
  void NoteEnded(const std::string& job_id);
  // Whether anything is known about the job.
  bool Knows(const std::string& job_id) const;
  // Copies the known progress into `job` (left as it is when none is known).
  void Fill(v1::Job* job) const;

 private:
  const int max_ended_;
  mutable absl::Mutex mu_;
  std::map<std::string, v1::JobProgress> progress_ ABSL_GUARDED_BY(mu_);
  // Ended jobs with cached progress, oldest end first.
  std::deque<std::string> ended_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_PROGRESS_CACHE_H_
