#include "coordinator/job_event_hub.h"

#include <algorithm>

#include "absl/time/clock.h"

namespace peco::coordinator {
namespace {

// Streams are pruned at most once per this many publications.
constexpr int64_t kPruneEvery = 1024;

bool IsTerminalChange(const v1::WatchJobEvent& event) {
  if (!event.has_state_change()) return false;
  const v1::JobState state = event.state_change().state();
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

}  // namespace

JobEventHub::JobEventHub(size_t max_events_per_job, absl::Duration retention)
    : max_events_per_job_(std::max<size_t>(1, max_events_per_job)), retention_(retention) {}

JobEventHub::Stream& JobEventHub::StreamLocked(const std::string& job_id) {
  std::unique_ptr<Stream>& stream = streams_[job_id];
  if (stream == nullptr) {
    stream = std::make_unique<Stream>();
    stream->base_seq = next_seq_floor_;
    stream->first_seq = next_seq_floor_;
  }
  return *stream;
}

void JobEventHub::Publish(const std::string& job_id, v1::WatchJobEvent event) {
  absl::MutexLock lock(&mu_);
  Stream& stream = StreamLocked(job_id);
  stream.ended = IsTerminalChange(event) ? absl::Now() : absl::InfiniteFuture();
  stream.events.push_back(std::move(event));
  while (stream.events.size() > max_events_per_job_) {
    stream.events.pop_front();
    ++stream.first_seq;
  }
  next_seq_floor_ = std::max(next_seq_floor_, stream.end_seq());
  stream.changed.SignalAll();
  if (++publishes_since_prune_ >= kPruneEvery) {
    publishes_since_prune_ = 0;
    PruneLocked(absl::Now());
  }
}

void JobEventHub::PruneLocked(absl::Time now) {
  for (auto it = streams_.begin(); it != streams_.end();) {
    const Stream& stream = *it->second;
    if (stream.waiters == 0 && (stream.events.empty() || now - stream.ended >= retention_)) {
      streams_.erase(it++);
    } else {
      ++it;
    }
  }
}

int64_t JobEventHub::Cursor(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(job_id);
  return it == streams_.end() ? next_seq_floor_ : it->second->end_seq();
}

std::vector<v1::WatchJobEvent> JobEventHub::Wait(const std::string& job_id, int64_t* cursor,
                                                 absl::Time deadline, int64_t* lost) {
  absl::MutexLock lock(&mu_);
  Stream& stream = StreamLocked(job_id);
  ++stream.waiters;
  while (!shut_down_ && stream.end_seq() <= *cursor) {
    if (stream.changed.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  --stream.waiters;
  std::vector<v1::WatchJobEvent> out;
  if (lost != nullptr) *lost = 0;
  if (*cursor < stream.first_seq) {
    // Numbers below base_seq belong to no event of this stream; the rest were dropped.
    if (lost != nullptr) *lost = stream.first_seq - std::max(*cursor, stream.base_seq);
    *cursor = stream.first_seq;
  }
  for (size_t i = static_cast<size_t>(*cursor - stream.first_seq); i < stream.events.size(); ++i) {
    out.push_back(stream.events[i]);
  }
  *cursor = std::max(*cursor, stream.end_seq());
  return out;
}

void JobEventHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (auto& [job_id, stream] : streams_) stream->changed.SignalAll();
}

bool JobEventHub::shut_down() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

size_t JobEventHub::StreamCountForTest() const {
  absl::MutexLock lock(&mu_);
  return streams_.size();
}

}  // namespace peco::coordinator
