#include "worker/coordinator_session.h"

#include <algorithm>
#include <utility>

namespace peco::worker {

absl::Duration Backoff(absl::Duration initial, absl::Duration max, int failures) {
  absl::Duration backoff = initial;
  for (int i = 1; i < failures && backoff < max; ++i) backoff *= 2;
  return std::min(backoff, max);
}

CoordinatorSession::CoordinatorSession(Options options, std::string worker_id)
    : options_(options), worker_id_(std::move(worker_id)) {}

CoordinatorSession::RegisterRetry CoordinatorSession::OnRegisterFailed(absl::Time now) {
  RegisterRetry retry;
  retry.failures = ++register_failures_;
  retry.backoff =
      Backoff(options_.register_initial_backoff, options_.register_max_backoff, retry.failures);
  // A coordinator that is down for long is one line every few minutes, not one a second.
  retry.worth_logging = retry.failures <= 3 || retry.failures % 10 == 0;
  next_register_ = now + retry.backoff;
  return retry;
}

bool CoordinatorSession::OnRegistered(const v1::RegisterResponse& response, absl::Time now) {
  register_failures_ = 0;
  registered_ = true;
  bool changed = false;
  if (!response.worker_id().empty() && response.worker_id() != worker_id_) {
    worker_id_ = response.worker_id();
    changed = true;
  }
  heartbeat_interval_ =
      options_.heartbeat_interval > absl::ZeroDuration() ? options_.heartbeat_interval
      : response.heartbeat_interval_ms() > 0 ? absl::Milliseconds(response.heartbeat_interval_ms())
                                             : absl::Seconds(5);
  next_heartbeat_ = now;
  return changed;
}

bool CoordinatorSession::TakeHeartbeatTurn(absl::Time now) {
  if (!registered_ || now < next_heartbeat_) return false;
  next_heartbeat_ = now + heartbeat_interval_;
  return true;
}

bool CoordinatorSession::OnHeartbeatFailed(const absl::Status& status) {
  if (absl::IsNotFound(status)) {
    registered_ = false;
    next_register_ = absl::InfinitePast();
  }
  const bool first = !heartbeat_failing_;
  heartbeat_failing_ = true;
  return first;
}

bool CoordinatorSession::OnHeartbeatSucceeded() {
  const bool was_failing = heartbeat_failing_;
  heartbeat_failing_ = false;
  return was_failing;
}

}  // namespace peco::worker
