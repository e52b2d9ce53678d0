// Rendering of `peco watch`: turns the WatchJobEvents of one job (its history first, then live
// events) into what the user sees.
//
// On a terminal (tty) the renderer keeps one live progress line, redrawn in place with "\r" and
// erase-to-end-of-line, and prints state changes and notable trainer events (start, checkpoint,
// error, completion) as permanent lines above it. When stdout is not a terminal it writes plain
// lines only: one per state change, trainer event and rank-0 metric point, so logs stay
// readable.
//
// Progress is that of rank 0 of the newest attempt: the step and the latest loss, learning rate
// and images/s from its metric points; max_steps (and the step a resumed attempt starts from)
// from the trainer's `start` event (docs/TRAINER.md). The ETA divides the remaining steps by the
// rate over the last few points, measured on the points' own timestamps, so it is a pure
// function of the events (history replays give the same numbers). Events seen twice (a
// reconnected watch replays the history) are dropped by key.
//
// Usage:
//   WatchRenderer renderer(job_id, {.tty = isatty(1)});
//   while (reader->Read(&event)) {
//     std::cout << renderer.Consume(event) << std::flush;
//     if (renderer.done()) break;
//   }
//   std::cout << renderer.Finish();
//
// Thread-safety: not thread-safe; one renderer per watch.
#ifndef PECO_CLI_WATCH_H_
#define PECO_CLI_WATCH_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "peco/v1/job_service.pb.h"

namespace peco::cli {

// What a watch knows about a job's progress so far.
struct WatchProgress {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  int64_t attempt = 0;    // newest attempt seen in any event
  std::string reason;     // reason of the latest state change
  int64_t step = -1;      // latest step of rank 0 in `attempt` (-1 = none yet)
  int64_t max_steps = 0;  // from the trainer's start event (0 = unknown)
  std::optional<double> loss;
  std::optional<double> lr;
  std::optional<double> images_per_second;
  // (time_us, step) of the most recent rank-0 points of `attempt`, oldest first.
  std::deque<std::pair<int64_t, int64_t>> recent;
};

// How many recent points the rate (and so the ETA) is measured over.
inline constexpr size_t kRateWindow = 10;

// Returns steps per second over `progress.recent`, or nullopt with fewer than two points or no
// progress between them.
std::optional<double> StepsPerSecond(const WatchProgress& progress);

// Returns the time left until max_steps at the recent rate; nullopt when max_steps or the rate
// is unknown, or the job is not running.
std::optional<absl::Duration> EstimateEta(const WatchProgress& progress);

// Returns the one-line summary, e.g.
// "RUNNING  attempt 1  step 120/300 (40%)  loss 0.4312  lr 1.20e-03  38.4 img/s  ETA 2m05s".
// Parts that are unknown are left out.
std::string RenderProgressLine(const WatchProgress& progress);

class WatchRenderer {
 public:
  struct Options {
    bool tty = false;
    // Terminal width; a longer live line is cut to columns - 1 characters so that "\r" redraws
    // it in place instead of wrapping (0 = never cut).
    int columns = 0;
    // Time zone of the clock times that start permanent lines.
    absl::TimeZone time_zone = absl::LocalTimeZone();
  };

  WatchRenderer(std::string job_id, Options options);

  // Consumes one event; returns the text to write (possibly empty).
  std::string Consume(const v1::WatchJobEvent& event);

  // Returns the text to write when the watch ends (ends the live line on a tty).
  std::string Finish();

  // True once a terminal state (SUCCEEDED, FAILED, CANCELLED) was seen.
  bool done() const;

  const WatchProgress& progress() const { return progress_; }

  // How many distinct events were consumed (duplicates of earlier events are not counted).
  int64_t events_consumed() const { return static_cast<int64_t>(seen_.size()); }

 private:
  std::string OnStateChange(const v1::JobStateChange& change);
  std::string OnMetricPoint(const v1::MetricPoint& point);
  std::string OnTrainerEvent(const v1::TrainerEvent& event);
  // Starts tracking a newer attempt (forgets the previous attempt's rate window and step).
  void SeeAttempt(int64_t attempt);
  // A permanent line, with the live line cleared before and redrawn after on a tty.
  std::string Line(int64_t time_us, const std::string& text);
  std::string LiveLine();

  const std::string job_id_;
  const Options options_;
  WatchProgress progress_;
  absl::flat_hash_set<std::string> seen_;
  bool live_line_shown_ = false;
};

}  // namespace peco::cli

#endif  // PECO_CLI_WATCH_H_
