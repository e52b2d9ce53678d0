// Helpers shared by the files that implement Coordinator (coordinator.cc, the JobService side;
// coordinator_workers.cc, the WorkerService side; coordinator_scheduling.cc, attempt outcomes
// and scheduling). Not part of the coordinator's interface.
//
// Thread-safety: pure functions, except AllJobs, which is as thread-safe as the store (every
// JobStore is). Errors: AllJobs returns the store's.
#ifndef PECO_COORDINATOR_COORDINATOR_INTERNAL_H_
#define PECO_COORDINATOR_COORDINATOR_INTERNAL_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/job_store.h"
#include "peco/v1/checkpoint.pb.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator::internal {

// Every job in the given states (all states when empty), all pages, in submit order.
absl::StatusOr<std::vector<v1::Job>> AllJobs(JobStore* store, std::vector<v1::JobState> states);

// Whether an attempt places ranks on `worker_id`; its placement there (nullptr when none);
// whether that placement holds rank 0.
bool PlacedOn(const v1::Attempt& attempt, const std::string& worker_id);
const v1::RankPlacement* PlacementOf(const v1::Attempt& attempt, const std::string& worker_id);
bool HoldsRankZero(const v1::Attempt& attempt, const std::string& worker_id);

// A fresh random worker id ("worker-3f9a0c1b22de").
std::string NewWorkerId();

// The id of an uploaded checkpoint: <job>-a<attempt>-step-<12 digits>.
std::string CheckpointIdFor(const v1::CheckpointHeader& header);

// One line on stderr, prefixed with the daemon's name.
void Log(const std::string& line);

}  // namespace peco::coordinator::internal

#endif  // PECO_COORDINATOR_COORDINATOR_INTERNAL_H_
