// Time source for the worker's time-based decisions (stall detection, kill deadlines).
//
// Production code takes a `Clock*` (borrowed; it must outlive the user) and reads `Now()`; the
// daemon passes RealClock::Get(), tests pass a FakeClock and advance it by hand, so no test waits
// on the wall clock to see a timeout fire.
//
// Thread-safety: every implementation here is safe to call from any thread.
#ifndef PECO_COMMON_CLOCK_H_
#define PECO_COMMON_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace peco {

// Abstract time source.
class Clock {
 public:
  Clock() = default;
  Clock(const Clock&) = delete;
  Clock& operator=(const Clock&) = delete;
  virtual ~Clock() = default;

  // Returns the current time.
  virtual absl::Time Now() const = 0;
};

// The system clock.
class RealClock : public Clock {
 public:
  // Returns a process-wide instance (never destroyed).
  static RealClock* Get() {
    static RealClock* clock = new RealClock();
    return clock;
  }
  absl::Time Now() const override { return absl::Now(); }
};

// A clock that moves only when told to. Starts at `start` (the Unix epoch plus one day by
// default, so that `Now() - absl::Hours(1)` is still a sensible time).
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::UnixEpoch() + absl::Hours(24)) : now_(start) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  // Moves the clock forward by `d` (a negative `d` moves it back).
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  // Sets the clock to `t`.
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco

#endif  // PECO_COMMON_CLOCK_H_
