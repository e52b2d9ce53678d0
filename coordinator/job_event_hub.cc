#include "coordinator/job_event_hub.h"

#include <algorithm>

namespace peco::coordinator {

JobEventHub::JobEventHub(size_t max_events_per_job)
    : max_events_per_job_(std::max<size_t>(1, max_events_per_job)) {}

void JobEventHub::Publish(const std::string& job_id, v1::WatchJobEvent event) {
  absl::MutexLock lock(&mu_);
  Stream& stream = streams_[job_id];
  stream.events.push_back(std::move(event));
  while (stream.events.size() > max_events_per_job_) {
    stream.events.pop_front();
    ++stream.first_seq;
  }
}

int64_t JobEventHub::Cursor(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  const Stream& stream = streams_[job_id];
  return stream.first_seq + static_cast<int64_t>(stream.events.size());
}

std::vector<v1::WatchJobEvent> JobEventHub::Wait(const std::string& job_id, int64_t* cursor,
                                                 absl::Time deadline, int64_t* lost) {
  absl::MutexLock lock(&mu_);
  auto has_news = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (shut_down_) return true;
    auto it = streams_.find(job_id);
    return it != streams_.end() &&
           it->second.first_seq + static_cast<int64_t>(it->second.events.size()) > *cursor;
  };
  mu_.AwaitWithDeadline(absl::Condition(&has_news), deadline);
  std::vector<v1::WatchJobEvent> out;
  if (lost != nullptr) *lost = 0;
  auto it = streams_.find(job_id);
  if (it == streams_.end()) return out;
  const Stream& stream = it->second;
  if (*cursor < stream.first_seq) {
    if (lost != nullptr) *lost = stream.first_seq - *cursor;
    *cursor = stream.first_seq;
  }
  for (size_t i = static_cast<size_t>(*cursor - stream.first_seq); i < stream.events.size(); ++i) {
    out.push_back(stream.events[i]);
  }
  *cursor = stream.first_seq + static_cast<int64_t>(stream.events.size());
  return out;
}

void JobEventHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
}

bool JobEventHub::shut_down() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

}  // namespace peco::coordinator
