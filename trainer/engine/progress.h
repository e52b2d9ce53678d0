// The trainer's progress channel (DESIGN.md section 2).
//
// Each event is one JSON object on one line of the machine stream (stdout by default, read by
// the worker daemon through an inherited pipe); a readable summary goes to the human stream
// (stderr). Lines are written whole with a single write() each.
//
// An observer (the run record, engine/run_record.h) may see every event after it is written.
//
// Thread-safe: events from several threads are serialised by a mutex.
#ifndef PECO_TRAINER_ENGINE_PROGRESS_H_
#define PECO_TRAINER_ENGINE_PROGRESS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/json_writer.h"

namespace peco::trainer {

// Sees each event a ProgressSink emits, in order, one call at a time (under the sink's lock):
// `line` is the event's JSON object without a newline. Must not call back into the sink.
class ProgressObserver {
 public:
  virtual ~ProgressObserver() = default;
  virtual void OnEvent(absl::string_view line) = 0;
};

// {"event":"error","code":<status code name>,"message":<message>}: the last event of a failed
// run (common/trainer_protocol.h kEventError).
JsonWriter ErrorEvent(const absl::Status& status);

class ProgressSink {
 public:
  // File descriptors are borrowed, not closed.
  ProgressSink(int machine_fd = 1, int human_fd = 2)
      : machine_fd_(machine_fd), human_fd_(human_fd) {}

  // Writes `event` (whose "event" field names its type) as one line to the machine stream.
  void Emit(const JsonWriter& event);
  // Writes a readable line to the human stream.
  void Log(absl::string_view line);
  // {"event":"heartbeat","phase":<phase>,"done":<done>}: work between steps (an evaluation) is
  // moving. The worker's stall detector counts it as progress and does not relay it.
  void Heartbeat(absl::string_view phase, int64_t done);
  // Shows every later event except heartbeats to `observer` (borrowed; null detaches it). The
  // observer must outlive its attachment.
  void SetObserver(ProgressObserver* observer);

 private:
  void WriteAll(int fd, const std::string& text);

  absl::Mutex mu_;
  int machine_fd_;
  int human_fd_;
  ProgressObserver* observer_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_PROGRESS_H_
