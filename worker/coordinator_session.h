// CoordinatorSession: the worker's session with the coordinator as a state machine — whether it
// is registered and under which id, when the next Register (with doubling backoff) or Heartbeat
// is due, and what each answer changes. No I/O, no clock, no lock: the agent builds the
// requests, makes the calls, and tells the session what happened at which time.
//
//   unregistered --Register ok--> registered --Heartbeat NOT_FOUND--> unregistered (register now)
//        ^  |                         |
//        +--+ Register failed:        +-- Heartbeat failed otherwise: stays registered, retries
//             backoff doubles             at the next interval (trainers keep running)
//
// Thread-safety: not thread-safe; the agent calls it under its mutex.
#ifndef PECO_WORKER_COORDINATOR_SESSION_H_
#define PECO_WORKER_COORDINATOR_SESSION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "peco/v1/worker_service.pb.h"

namespace peco::worker {

// The doubling backoff after `failures` failures in a row (1 -> initial), at most `max`.
absl::Duration Backoff(absl::Duration initial, absl::Duration max, int failures);

class CoordinatorSession {
 public:
  struct Options {
    absl::Duration register_initial_backoff = absl::Seconds(1);
    absl::Duration register_max_backoff = absl::Seconds(30);
    // Zero: the interval the coordinator sends at registration (5 s when it sends none).
    absl::Duration heartbeat_interval = absl::ZeroDuration();
  };

  // Starts unregistered, with the id to register under (may be empty until known).
  CoordinatorSession(Options options, std::string worker_id);

  bool registered() const { return registered_; }
  const std::string& worker_id() const { return worker_id_; }
  absl::Duration heartbeat_interval() const { return heartbeat_interval_; }

  // Whether a Register should be sent now.
  bool RegisterDue(absl::Time now) const { return !registered_ && now >= next_register_; }

  struct RegisterRetry {
    int failures = 0;            // in a row, this one included
    absl::Duration backoff;      // until the next try
    bool worth_logging = false;  // the first three failures, then every tenth
  };
  // A Register failed at `now`: backs off.
  RegisterRetry OnRegisterFailed(absl::Time now);

  // A Register succeeded at `now`: registered under the answer's id (when it sends one), the
  // first heartbeat due at once. Returns whether the id changed.
  bool OnRegistered(const v1::RegisterResponse& response, absl::Time now);

  // Whether a Heartbeat should be sent now; when it should, the next one is scheduled one
  // interval later (so a slow answer does not bunch heartbeats).
  bool TakeHeartbeatTurn(absl::Time now);

  // A Heartbeat failed. NOT_FOUND (the coordinator forgot this worker) ends the registration:
  // Register is due at once. Returns whether this is the first failure in a row.
  bool OnHeartbeatFailed(const absl::Status& status);

  // A Heartbeat succeeded. Returns whether heartbeats had been failing.
  bool OnHeartbeatSucceeded();

 private:
  const Options options_;
  std::string worker_id_;
  bool registered_ = false;
  int register_failures_ = 0;
  absl::Time next_register_ = absl::InfinitePast();
  absl::Duration heartbeat_interval_ = absl::Seconds(5);
  absl::Time next_heartbeat_ = absl::InfinitePast();
  bool heartbeat_failing_ = false;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_COORDINATOR_SESSION_H_
