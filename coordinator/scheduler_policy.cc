#include "coordinator/scheduler_policy.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace peco::coordinator {
namespace {

struct Capacity {
  std::string worker_id;
  int32_t gpus = 0;
  int32_t cpu_slots = 0;
};

// How many ranks of `job` fit in `capacity`.
int32_t RanksThatFit(const PendingJob& job, int32_t gpus, int32_t cpu_slots) {
  int32_t fit = std::numeric_limits<int32_t>::max();
  if (job.gpus_per_rank > 0) fit = std::min(fit, gpus / job.gpus_per_rank);
  if (job.cpu_slots_per_rank > 0) fit = std::min(fit, cpu_slots / job.cpu_slots_per_rank);
  return fit;
}

// Places every rank of `job` on `workers` (see rule 4), or returns nullopt. Does not modify
// `workers`.
std::optional<Placement> PlaceGang(const PendingJob& job, const std::vector<Capacity>& workers) {
  // One worker for the whole gang: the tightest fit, ties by id (workers are sorted by id).
  const Capacity* best = nullptr;
  int64_t best_left = 0;
  for (const Capacity& worker : workers) {
    if (RanksThatFit(job, worker.gpus, worker.cpu_slots) < job.world_size) continue;
    int64_t left = static_cast<int64_t>(worker.gpus) - job.gpus_per_rank * job.world_size +
                   worker.cpu_slots - job.cpu_slots_per_rank * job.world_size;
    if (best == nullptr || left < best_left) {
      best = &worker;
      best_left = left;
    }
  }
  Placement placement;
  placement.job_id = job.job_id;
  if (best != nullptr) {
    WorkerRanks ranks{best->worker_id, {}};
    for (int32_t r = 0; r < job.world_size; ++r) ranks.ranks.push_back(r);
    placement.workers.push_back(std::move(ranks));
    return placement;
  }
  // Spread: workers that host the most ranks first, so the gang spans as few workers as possible.
  std::vector<std::pair<int32_t, const Capacity*>> hosts;
  for (const Capacity& worker : workers) {
    int32_t fit = RanksThatFit(job, worker.gpus, worker.cpu_slots);
    if (fit > 0) hosts.emplace_back(fit, &worker);
  }
  std::stable_sort(hosts.begin(), hosts.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  int32_t next_rank = 0;
  for (const auto& [fit, worker] : hosts) {
    if (next_rank == job.world_size) break;
    WorkerRanks ranks{worker->worker_id, {}};
    for (int32_t i = 0; i < fit && next_rank < job.world_size; ++i) {
      ranks.ranks.push_back(next_rank++);
    }
    placement.workers.push_back(std::move(ranks));
  }
  if (next_rank < job.world_size) return std::nullopt;
  return placement;
}

void Subtract(const PendingJob& job, const Placement& placement, std::vector<Capacity>& workers) {
  for (const WorkerRanks& ranks : placement.workers) {
    for (Capacity& worker : workers) {
      if (worker.worker_id != ranks.worker_id) continue;
      int32_t n = static_cast<int32_t>(ranks.ranks.size());
      worker.gpus -= n * job.gpus_per_rank;
      worker.cpu_slots -= n * job.cpu_slots_per_rank;
    }
  }
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
  for (const WorkerCapacity& worker : snapshot.workers) {
    free.push_back(
        {worker.worker_id, std::max(0, worker.free_gpus), std::max(0, worker.free_cpu_slots)});
    total.push_back(
        {worker.worker_id, std::max(0, worker.total_gpus), std::max(0, worker.total_cpu_slots)});
  }
  auto by_id = [](const Capacity& a, const Capacity& b) { return a.worker_id < b.worker_id; };
  std::sort(free.begin(), free.end(), by_id);
  std::sort(total.begin(), total.end(), by_id);

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
    std::optional<Placement> placement = PlaceGang(*job, free);
    if (placement.has_value()) {
      Subtract(*job, *placement, free);
      decision.placements.push_back(std::move(*placement));
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
