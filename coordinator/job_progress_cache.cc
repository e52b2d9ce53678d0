#include "coordinator/job_progress_cache.h"

#include "absl/strings/match.h"

namespace peco::coordinator {

void JobProgressCache::NotePoint(const v1::MetricPoint& point) {
  if (point.rank() != 0) return;
  absl::MutexLock lock(&mu_);
  v1::JobProgress& progress = progress_[point.job_id()];
  if (point.step() < progress.step() && point.time_us() < progress.time_us()) return;  // older
  progress.set_step(point.step());
  progress.set_time_us(point.time_us());
  if (auto it = point.values().find("loss"); it != point.values().end()) {
    progress.set_loss(it->second);
  }
  if (auto it = point.values().find("images_per_second"); it != point.values().end()) {
    progress.set_images_per_second(it->second);
  }
  for (const auto& [name, value] : point.values()) {
    if (absl::StartsWith(name, "eval_")) (*progress.mutable_eval())[name] = value;
  }
}

void JobProgressCache::NoteMaxSteps(const std::string& job_id, int64_t max_steps) {
  absl::MutexLock lock(&mu_);
  progress_[job_id].set_max_steps(max_steps);
}

void JobProgressCache::NoteEnded(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ended_.push_back(job_id);
  while (ended_.size() > static_cast<size_t>(max_ended_)) {
    progress_.erase(ended_.front());
    ended_.pop_front();
  }
}

bool JobProgressCache::Knows(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  return progress_.count(job_id) > 0;
}

void JobProgressCache::Fill(v1::Job* job) const {
  absl::MutexLock lock(&mu_);
  auto it = progress_.find(job->id());
  if (it != progress_.end()) *job->mutable_progress() = it->second;
}

}  // namespace peco::coordinator
