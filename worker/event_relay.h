// What one trainer event becomes on its way to the coordinator, decided in one pure function
// (the worker agent applies the result: buffers the reports, sets the per-rank gauges, queues
// the checkpoint for upload).
//
//  - step and eval events carry metrics: one MetricPoint with their numeric fields (not "event"
//    or "step"; strings and booleans are not metrics);
//  - every event but step (eval included) is also relayed as a TrainerEvent, the line verbatim;
//  - heartbeats only keep the supervisor's stall clock moving: they are not history;
//  - rank 0's checkpoint event names a committed checkpoint: a CheckpointHeader (final when the
//    event says so) and its directory, relative paths resolved against the attempt directory
//    (the ranks' working directory).
// An event without a step is stamped with the rank's last step; step events advance it.
//
// Thread-safety: pure.
#ifndef PECO_WORKER_EVENT_RELAY_H_
#define PECO_WORKER_EVENT_RELAY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "peco/v1/checkpoint.pb.h"
#include "peco/v1/worker_service.pb.h"
#include "worker/trainer_supervisor.h"

namespace peco::worker {

struct RelayedEvent {
  // The rank's last step after this event.
  int64_t last_step = 0;
  // Reports for the coordinator, in order.
  std::vector<v1::ReportProgressRequest> reports;
  // Per-rank gauge values (name -> value) for the worker's Prometheus metrics.
  std::map<std::string, double> rank_values;
  // Rank 0's committed checkpoint: what to upload, and from where.
  std::optional<v1::CheckpointHeader> checkpoint;
  std::string checkpoint_dir;
  // Set when the event could not be used as it should (a checkpoint event without a path).
  std::string problem;
};

// Relays `event` of a rank whose last step so far is `last_step`, in attempt directory
// `attempt_dir`.
RelayedEvent RelayTrainerEvent(const TrainerEvent& event, int64_t last_step,
                               absl::string_view attempt_dir);

}  // namespace peco::worker

#endif  // PECO_WORKER_EVENT_RELAY_H_
