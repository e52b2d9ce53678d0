// DeviceLedger: which of a worker's devices are free — GPU indices (a rank is given specific
// ones, exported to it as CUDA_VISIBLE_DEVICES) and a count of CPU slots. An attempt takes what
// its local ranks need at launch and gives it back when its trainers have exited.
//
// Thread-safety: not thread-safe; the agent calls it under its mutex.
#ifndef PECO_WORKER_DEVICE_LEDGER_H_
#define PECO_WORKER_DEVICE_LEDGER_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peco/v1/job.pb.h"
#include "peco/v1/worker.pb.h"

namespace peco::worker {

// What an attempt holds.
struct HeldDevices {
  std::vector<int> gpus;  // indices, ascending
  int cpu_slots = 0;
};

class DeviceLedger {
 public:
  // A worker with GPUs 0..gpus-1 and `cpu_slots` CPU slots, all free.
  DeviceLedger(int gpus, int cpu_slots);

  // What `ranks` ranks of `per_rank` need: a CPU rank (no GPU) takes at least one slot.
  static HeldDevices Need(const v1::DeviceRequest& per_rank, int ranks);

  // Takes the devices for `ranks` ranks of `per_rank` (the lowest free GPU indices).
  // ResourceExhausted saying what is needed and what is free when they are not all free (then
  // nothing is taken).
  absl::StatusOr<HeldDevices> Acquire(const v1::DeviceRequest& per_rank, int ranks);
  // Gives back what Acquire returned.
  void Release(const HeldDevices& held);

  v1::WorkerDevices Free() const;

 private:
  std::set<int> free_gpus_;
  int free_cpu_slots_ = 0;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_DEVICE_LEDGER_H_
