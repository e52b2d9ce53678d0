#include "coordinator/scheduler_policy.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace peco::coordinator {
namespace {

// A worker's devices during one Schedule() call; the id points into the snapshot.
struct Capacity {
  absl::string_view worker_id;
  int32_t gpus = 0;
  int32_t cpu_slots = 0;
};

// Ranks of a gang per worker, as (index into the capacity list, rank count), rank 0 first.
using GangPlacement = std::vector<std::pair<size_t, int32_t>>;

// How many ranks of `job` fit in `capacity`.
int32_t RanksThatFit(const PendingJob& job, int32_t gpus, int32_t cpu_slots) {
  int32_t fit = std::numeric_limits<int32_t>::max();
  if (job.gpus_per_rank > 0) fit = std::min(fit, gpus / job.gpus_per_rank);
  if (job.cpu_slots_per_rank > 0) fit = std::min(fit, cpu_slots / job.cpu_slots_per_rank);
  return fit;
}

// Places every rank of `job` on `workers` (see rule 4), or returns nullopt. Does not modify
// `workers`. Runs for every pending job of every pass over every worker: no allocation unless
// the gang has to spread.
std::optional<GangPlacement> PlaceGang(const PendingJob& job,
                                       const std::vector<Capacity>& workers) {
  // One worker for the whole gang: the tightest fit, ties by id (workers are sorted by id).
  size_t best = workers.size();
  int64_t best_left = 0;
  for (size_t i = 0; i < workers.size(); ++i) {
    const Capacity& worker = workers[i];
    if (RanksThatFit(job, worker.gpus, worker.cpu_slots) < job.world_size) continue;
    int64_t left = static_cast<int64_t>(worker.gpus) - job.gpus_per_rank * job.world_size +
                   worker.cpu_slots - job.cpu_slots_per_rank * job.world_size;
    if (best == workers.size() || left < best_left) {
      best = i;
      best_left = left;
    }
  }
  if (best != workers.size()) return GangPlacement{{best, job.world_size}};
  // Spread: workers that host the most ranks first, so the gang spans as few workers as possible.
  std::vector<std::pair<int32_t, size_t>> hosts;
  for (size_t i = 0; i < workers.size(); ++i) {
    int32_t fit = RanksThatFit(job, workers[i].gpus, workers[i].cpu_slots);
    if (fit > 0) hosts.emplace_back(fit, i);
  }
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  GangPlacement placement;
  int32_t placed = 0;
  for (const auto& [fit, index] : hosts) {
    if (placed == job.world_size) break;
    const int32_t n = std::min(fit, job.world_size - placed);
    placement.emplace_back(index, n);
    placed += n;
  }
  if (placed < job.world_size) return std::nullopt;
  return placement;
}

void Subtract(const PendingJob& job, const GangPlacement& placement,
              std::vector<Capacity>& workers) {
  for (const auto& [index, n] : placement) {
    workers[index].gpus -= n * job.gpus_per_rank;
    workers[index].cpu_slots -= n * job.cpu_slots_per_rank;
  }
}

// Numbers the ranks in placement order: rank 0 on the first worker listed.
Placement ToPlacement(const PendingJob& job, const GangPlacement& gang,
                      const std::vector<Capacity>& workers) {
  Placement placement;
  placement.job_id = job.job_id;
  int32_t next_rank = 0;
  for (const auto& [index, n] : gang) {
    WorkerRanks ranks{std::string(workers[index].worker_id), {}};
    for (int32_t i = 0; i < n; ++i) ranks.ranks.push_back(next_rank++);
    placement.workers.push_back(std::move(ranks));
  }
  return placement;
}

std::string InvalidRequestReason(const PendingJob& job) {
  if (job.world_size < 1) return absl::StrCat("world_size ", job.world_size, " is below 1");
  if (job.gpus_per_rank < 0 || job.cpu_slots_per_rank < 0) {
    return "negative device count per rank";
  }
  if (job.gpus_per_rank == 0 && job.cpu_slots_per_rank == 0) {
    return "a rank must ask for at least one GPU or CPU slot";
  }
  return "";
}

}  // namespace

absl::Status SchedulerOptions::Validate() const {
  if (reservation_after < absl::ZeroDuration() || reservation_after == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        "SchedulerOptions.reservation_after must be finite and not negative");
  }
  if (max_placements_per_pass < 0) {
    return absl::InvalidArgumentError("SchedulerOptions.max_placements_per_pass must be >= 0");
  }
  return absl::OkStatus();
}

ScheduleDecision Schedule(const ClusterSnapshot& snapshot, const SchedulerOptions& options) {
  ScheduleDecision decision;
  std::vector<const PendingJob*> order;
  for (const PendingJob& job : snapshot.jobs) order.push_back(&job);
  std::sort(order.begin(), order.end(), [](const PendingJob* a, const PendingJob* b) {
    return std::make_tuple(-static_cast<int64_t>(a->priority), a->submit_seq, a->job_id) <
           std::make_tuple(-static_cast<int64_t>(b->priority), b->submit_seq, b->job_id);
  });

  std::vector<Capacity> free;
  std::vector<Capacity> total;
  free.reserve(snapshot.workers.size());
  total.reserve(snapshot.workers.size());
  for (const WorkerCapacity& worker : snapshot.workers) {
    free.push_back(
        {worker.worker_id, std::max(0, worker.free_gpus), std::max(0, worker.free_cpu_slots)});
    total.push_back(
        {worker.worker_id, std::max(0, worker.total_gpus), std::max(0, worker.total_cpu_slots)});
  }
  auto by_id = [](const Capacity& a, const Capacity& b) { return a.worker_id < b.worker_id; };
  // The coordinator lists workers in id order already.
  if (!std::is_sorted(free.begin(), free.end(), by_id)) {
    std::sort(free.begin(), free.end(), by_id);
    std::sort(total.begin(), total.end(), by_id);
  }

  for (const PendingJob* job : order) {
    if (job->dependency == DependencyState::kFailed) {
      decision.failed.push_back({job->job_id, "dependency failed"});
      continue;
    }
    if (job->dependency == DependencyState::kPending) {
      decision.waiting.push_back(job->job_id);
      continue;
    }
    if (std::string reason = InvalidRequestReason(*job); !reason.empty()) {
      decision.failed.push_back({job->job_id, reason});
      continue;
    }
    if (!PlaceGang(*job, total).has_value()) {
      decision.unplaceable.push_back(
          {job->job_id,
           absl::StrCat("needs ", job->world_size, " ranks of ", job->gpus_per_rank, " GPUs and ",
                        job->cpu_slots_per_rank, " CPU slots; no set of workers has them")});
      continue;
    }
    if (!decision.reserved_job_id.empty()) continue;  // behind a reservation: rule 5
    if (options.max_placements_per_pass > 0 &&
        static_cast<int>(decision.placements.size()) >= options.max_placements_per_pass) {
      decision.capped = true;  // the rest wait for the next pass
      continue;
    }
    std::optional<GangPlacement> placement = PlaceGang(*job, free);
    if (placement.has_value()) {
      Subtract(*job, *placement, free);
      decision.placements.push_back(ToPlacement(*job, *placement, free));
      continue;
    }
    if (snapshot.now - job->pending_since >= options.reservation_after) {
      decision.reserved_job_id = job->job_id;
    }
  }
  return decision;
}

int64_t RanksThatFitWhenIdle(const PendingJob& job, const std::vector<WorkerCapacity>& workers) {
  if (job.gpus_per_rank <= 0 && job.cpu_slots_per_rank <= 0) return 0;
  int64_t ranks = 0;
  for (const WorkerCapacity& worker : workers) {
    ranks += RanksThatFit(job, std::max(0, worker.total_gpus), std::max(0, worker.total_cpu_slots));
  }
  return ranks;
}

}  // namespace peco::coordinator
