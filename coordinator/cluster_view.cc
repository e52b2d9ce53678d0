#include "coordinator/cluster_view.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace peco::coordinator {
namespace {

WorkerCapacity TotalCapacity(const std::string& id, const v1::WorkerInfo& info) {
  WorkerCapacity capacity;
  capacity.worker_id = id;
  capacity.total_gpus = info.devices().gpus();
  capacity.total_cpu_slots = info.devices().cpu_slots();
  return capacity;
}

}  // namespace

void ClusterView::PutWorker(v1::WorkerInfo info, absl::Time last_heartbeat) {
  const std::string id = info.id();
  workers_[id] = Worker{std::move(info), last_heartbeat};
  InvalidateCapacity();
}

void ClusterView::InvalidateCapacity() {
  capacity_cache_valid_ = false;
  if (capacity_lent_) changed_while_lent_ = true;
}

const ClusterView::Worker* ClusterView::FindWorker(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  return it == workers_.end() ? nullptr : &it->second;
}

const ClusterView::Worker* ClusterView::NoteHeartbeat(const std::string& worker_id, absl::Time now,
                                                      const v1::WorkerDevices& free_devices) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return nullptr;
  it->second.last_heartbeat = now;
  *it->second.info.mutable_free_devices() = free_devices;
  return &it->second;
}

bool ClusterView::SetWorkerState(const std::string& worker_id, v1::WorkerState state) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return false;
  if (it->second.info.state() != state) {
    it->second.info.set_state(state);
    InvalidateCapacity();
  }
  return true;
}

void ClusterView::SetActive(const std::string& job_id, Active active) {
  EraseActive(job_id);
  const v1::DeviceRequest& per_rank = active.job.spec().devices_per_rank();
  for (const v1::RankPlacement& placement : active.attempt.placements()) {
    active_by_worker_[placement.worker_id()].insert(job_id);
    Devices& held = held_[placement.worker_id()];
    held.gpus += int64_t{per_rank.gpus()} * placement.ranks_size();
    held.cpu_slots += int64_t{per_rank.cpu_slots()} * placement.ranks_size();
  }
  active_[job_id] = std::move(active);
}

void ClusterView::EraseActive(const std::string& job_id) {
  auto it = active_.find(job_id);
  if (it == active_.end()) return;
  const v1::DeviceRequest& per_rank = it->second.job.spec().devices_per_rank();
  for (const v1::RankPlacement& placement : it->second.attempt.placements()) {
    auto index = active_by_worker_.find(placement.worker_id());
    if (index != active_by_worker_.end()) {
      index->second.erase(job_id);
      if (index->second.empty()) active_by_worker_.erase(index);
    }
    auto held = held_.find(placement.worker_id());
    if (held != held_.end()) {
      held->second.gpus -= int64_t{per_rank.gpus()} * placement.ranks_size();
      held->second.cpu_slots -= int64_t{per_rank.cpu_slots()} * placement.ranks_size();
      if (held->second.gpus <= 0 && held->second.cpu_slots <= 0) held_.erase(held);
    }
  }
  active_.erase(it);
}

const ClusterView::Active* ClusterView::FindActive(const std::string& job_id) const {
  auto it = active_.find(job_id);
  return it == active_.end() ? nullptr : &it->second;
}

ClusterView::Active* ClusterView::FindActive(const std::string& job_id) {
  auto it = active_.find(job_id);
  return it == active_.end() ? nullptr : &it->second;
}

const ClusterView::Active* ClusterView::FindCurrent(const std::string& job_id,
                                                    int64_t attempt) const {
  const Active* active = FindActive(job_id);
  return active != nullptr && active->attempt.number() == attempt ? active : nullptr;
}

const std::set<std::string>& ClusterView::ActiveOn(const std::string& worker_id) const {
  static const std::set<std::string>* const kNone = new std::set<std::string>();
  auto it = active_by_worker_.find(worker_id);
  return it == active_by_worker_.end() ? *kNone : it->second;
}

ClusterView::Devices ClusterView::HeldOn(const std::string& worker_id) const {
  auto it = held_.find(worker_id);
  return it == held_.end() ? Devices() : it->second;
}

int32_t ClusterView::PickMasterPort(const std::string& worker_id,
                                    const std::set<int32_t>& also_taken) const {
  const Worker* worker = FindWorker(worker_id);
  if (worker == nullptr) return 0;
  std::set<int32_t> used = also_taken;
  for (const std::string& job_id : ActiveOn(worker_id)) {
    const Active& active = active_.at(job_id);
    if (!active.attempt.placements().empty() &&
        active.attempt.placements(0).worker_id() == worker_id) {
      used.insert(active.attempt.master_port());
    }
  }
  for (int32_t port = worker->info.ports().first(); port <= worker->info.ports().last(); ++port) {
    if (used.count(port) == 0) return port;
  }
  return 0;
}

void ClusterView::LendCapacity(std::vector<WorkerCapacity>* out, bool* any_free) {
  if (!capacity_cache_valid_) {
    capacity_cache_.clear();
    for (const auto& [id, worker] : workers_) {
      if (worker.info.state() != v1::WORKER_STATE_ALIVE) continue;
      capacity_cache_.push_back(TotalCapacity(id, worker.info));
    }
    capacity_cache_valid_ = true;
  }
  *out = std::move(capacity_cache_);
  capacity_cache_.clear();
  capacity_cache_valid_ = false;  // until it comes back
  capacity_lent_ = true;
  changed_while_lent_ = false;
  *any_free = false;
  // The cache and held_ are both in worker id order: one merged walk, no lookups.
  auto held_it = held_.begin();
  for (WorkerCapacity& capacity : *out) {
    while (held_it != held_.end() && held_it->first < capacity.worker_id) ++held_it;
    const Devices held = held_it != held_.end() && held_it->first == capacity.worker_id
                             ? held_it->second
                             : Devices();
    capacity.free_gpus =
        static_cast<int32_t>(std::max<int64_t>(0, capacity.total_gpus - held.gpus));
    capacity.free_cpu_slots =
        static_cast<int32_t>(std::max<int64_t>(0, capacity.total_cpu_slots - held.cpu_slots));
    *any_free |= capacity.free_gpus > 0 || capacity.free_cpu_slots > 0;
  }
}

void ClusterView::ReturnCapacity(std::vector<WorkerCapacity>&& capacity) {
  // A worker may have joined or changed state while the list was lent: then it is stale.
  if (capacity_lent_ && !changed_while_lent_) {
    capacity_cache_ = std::move(capacity);
    capacity_cache_valid_ = true;
  }
  capacity_lent_ = false;
}

absl::Status ClusterView::CheckGangFits(const v1::JobSpec& spec) const {
  PendingJob job;
  job.world_size = spec.world_size();
  job.gpus_per_rank = spec.devices_per_rank().gpus();
  job.cpu_slots_per_rank = spec.devices_per_rank().cpu_slots();
  // Runs per submit over every worker: stops as soon as the gang fits.
  int64_t fit = 0;
  bool any = false;
  for (const auto& [id, worker] : workers_) {
    if (worker.info.state() == v1::WORKER_STATE_DEAD) continue;
    any = true;
    fit += RanksThatFitWhenIdle(job, {TotalCapacity(id, worker.info)});
    if (fit >= job.world_size) return absl::OkStatus();
  }
  // With no worker registered yet (a cluster coming up) the job waits for one.
  if (!any) return absl::OkStatus();
  std::string listed;
  for (const auto& [id, worker] : workers_) {
    if (worker.info.state() == v1::WORKER_STATE_DEAD) continue;
    absl::StrAppend(&listed, listed.empty() ? "" : ", ", id, ": ", worker.info.devices().gpus(),
                    " GPUs ", worker.info.devices().cpu_slots(), " CPU slots");
  }
  return absl::FailedPreconditionError(
      absl::StrCat("spec.world_size: ", job.world_size, " ranks of ", job.gpus_per_rank,
                   " GPUs and ", job.cpu_slots_per_rank,
                   " CPU slots each can never start: the registered workers host at most ", fit,
                   " such ranks at once (", listed, ")"));
}

}  // namespace peco::coordinator
