// The scheduling policy: a pure function from a snapshot of the queue and the workers' free
// devices to the gang placements to start now (style anchors section 12, habit 6). No I/O, no
// clock, no locks: the coordinator builds the snapshot under its lock, calls Schedule(), applies
// the decision, and only then sends RPCs.
//
// NOTE [scheduling rules]
//  1. Order: priority (higher first), then submit order (lower submit_seq first).
//  2. Dependencies: a job whose dependency is pending is reported `waiting` and not placed; one
//     whose dependency failed is reported `failed`.
//  3. Device matching: a rank needs devices_per_rank.gpus GPUs and devices_per_rank.cpu_slots CPU
//     slots on one worker. A GPU job never lands on a worker without free GPUs.
//  4. Gang placement: all world_size ranks of a job are placed in one decision or none are;
//     nothing is held for a job that does not fit. Ranks fill one worker when one can host them
//     all (the one left with the fewest free devices, then the lowest id); otherwise they spread
//     over the workers that can host the most ranks first (ties by id). Ranks are numbered in
//     placement order, so rank 0 lands on the first worker listed.
//  5. Backfill with an aging reservation: a job that does not fit is skipped and later jobs may
//     use the free devices (backfill), unless the job has waited at least
//     Options::reservation_after. Such a starving job gets a reservation: no job after it in the
//     order is started until it has been placed, so running jobs drain and it eventually fits.
//     Only a job that fits the cluster's *total* capacity can reserve; one that could not run
//     even on an idle cluster is reported `unplaceable` and never blocks others.
//
// Thread-safety: Schedule() is a pure function and may be called concurrently.
#ifndef PECO_COORDINATOR_SCHEDULER_POLICY_H_
#define PECO_COORDINATOR_SCHEDULER_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace peco::coordinator {

enum class DependencyState {
  kNone,     // no dependency, or it has succeeded
  kPending,  // the job it depends on has not finished
  kFailed,   // the job it depends on failed or was cancelled
};

// A job the scheduler may start (QUEUED, WAITING or RESTARTING).
struct PendingJob {
  std::string job_id;
  int32_t priority = 0;
  int64_t submit_seq = 0;
  int32_t world_size = 1;
  int32_t gpus_per_rank = 0;
  int32_t cpu_slots_per_rank = 0;
  DependencyState dependency = DependencyState::kNone;
  // When the job became schedulable (submitted, dependency satisfied, or restart requested).
  absl::Time pending_since = absl::InfinitePast();
};

// A live worker that accepts work (dead and draining workers are left out of the snapshot).
struct WorkerCapacity {
  std::string worker_id;
  int32_t total_gpus = 0;
  int32_t total_cpu_slots = 0;
  int32_t free_gpus = 0;
  int32_t free_cpu_slots = 0;
};

struct ClusterSnapshot {
  std::vector<PendingJob> jobs;  // any order
  std::vector<WorkerCapacity> workers;
  absl::Time now;
};

struct WorkerRanks {
  std::string worker_id;
  std::vector<int32_t> ranks;  // global ranks, ascending
};

struct Placement {
  std::string job_id;
  std::vector<WorkerRanks> workers;  // rank 0 is on workers[0]
};

struct JobVerdict {
  std::string job_id;
  std::string reason;
};

struct ScheduleDecision {
  std::vector<Placement> placements;    // in scheduling order
  std::vector<std::string> waiting;     // dependency pending
  std::vector<JobVerdict> failed;       // dependency failed or an invalid request
  std::vector<JobVerdict> unplaceable;  // does not fit even an idle cluster (yet)
  std::string reserved_job_id;          // the starving job that holds the reservation, if any
  // Whether max_placements_per_pass stopped the placing: another pass may place more at once.
  bool capped = false;
};

struct SchedulerOptions {
  // How long a job that does not fit may be overtaken by smaller jobs before it reserves.
  absl::Duration reservation_after = absl::Minutes(10);
  // At most this many gangs are placed by one pass (0: no limit); the others wait for the next
  // pass (ScheduleDecision::capped). Bounds how long a pass over a long queue holds the
  // coordinator, whose heartbeats wait for it.
  int max_placements_per_pass = 1000;

  // Returns InvalidArgument when reservation_after is negative or infinite, or
  // max_placements_per_pass negative.
  absl::Status Validate() const;
};

// Returns the placements to start now and the verdicts on the jobs not started (see NOTE
// [scheduling rules]). A job with world_size < 1, negative device counts, or no device at all
// per rank is reported in `failed`. `options` must be valid.
ScheduleDecision Schedule(const ClusterSnapshot& snapshot, const SchedulerOptions& options);

// Returns how many ranks of `job` the `workers` could host at once were they idle (their total
// devices, one rank never split across workers). A gang larger than this never starts on these
// workers; the coordinator refuses such a job at submit.
int64_t RanksThatFitWhenIdle(const PendingJob& job, const std::vector<WorkerCapacity>& workers);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_SCHEDULER_POLICY_H_
