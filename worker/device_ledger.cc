#include "worker/device_ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace peco::worker {

DeviceLedger::DeviceLedger(int gpus, int cpu_slots) : free_cpu_slots_(std::max(cpu_slots, 0)) {
  for (int gpu = 0; gpu < gpus; ++gpu) free_gpus_.insert(gpu);
}

HeldDevices DeviceLedger::Need(const v1::DeviceRequest& per_rank, int ranks) {
  HeldDevices need;
  need.gpus.resize(static_cast<size_t>(std::max(per_rank.gpus(), 0) * std::max(ranks, 0)));
  need.cpu_slots = (per_rank.gpus() <= 0 ? std::max(per_rank.cpu_slots(), 1)
                                         : std::max(per_rank.cpu_slots(), 0)) *
                   std::max(ranks, 0);
  return need;
}

absl::StatusOr<HeldDevices> DeviceLedger::Acquire(const v1::DeviceRequest& per_rank, int ranks) {
  HeldDevices held = Need(per_rank, ranks);
  const size_t need_gpus = held.gpus.size();
  if (need_gpus > free_gpus_.size() || held.cpu_slots > free_cpu_slots_) {
    return absl::ResourceExhaustedError(absl::StrCat("need ", need_gpus, " gpus and ",
                                                     held.cpu_slots, " cpu slots, free ",
                                                     free_gpus_.size(), " and ", free_cpu_slots_));
  }
  for (int& gpu : held.gpus) {
    gpu = *free_gpus_.begin();
    free_gpus_.erase(free_gpus_.begin());
  }
  free_cpu_slots_ -= held.cpu_slots;
  return held;
}

void DeviceLedger::Release(const HeldDevices& held) {
  free_gpus_.insert(held.gpus.begin(), held.gpus.end());
  free_cpu_slots_ += held.cpu_slots;
}

v1::WorkerDevices DeviceLedger::Free() const {
  v1::WorkerDevices free;
  free.set_gpus(static_cast<int32_t>(free_gpus_.size()));
  free.set_cpu_slots(free_cpu_slots_);
  return free;
}

}  // namespace peco::worker
