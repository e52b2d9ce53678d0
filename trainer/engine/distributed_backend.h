// The collective operations DistributedContext needs, behind an interface, and their c10d
// implementation (TCPStore + PrefixStore + ProcessGroupGloo / ProcessGroupNCCL).
//
// distributed_backend.cc is the only file that includes c10d headers and the one place that
// knows how c10d changed between LibTorch 1.13 (backends derive from ProcessGroup) and 2.x
// (backends derive from c10d::Backend).
#ifndef PECO_TRAINER_ENGINE_DISTRIBUTED_BACKEND_H_
#define PECO_TRAINER_ENGINE_DISTRIBUTED_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "torch/torch.h"
#include "trainer/engine/distributed.h"

namespace peco::trainer {

// A connected group of ranks. Every method blocks until the collective has completed on this
// rank, or fails after the group's timeout; errors are Unavailable and name the operation and
// rank. Calls must be issued in the same order on every rank, from one thread at a time.
class CollectiveGroup {
 public:
  virtual ~CollectiveGroup() = default;

  // Element-wise sum across ranks, in place.
  virtual absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors) = 0;

  // Replaces each tensor with rank `root`'s, in place.
  virtual absl::Status Broadcast(std::vector<torch::Tensor>& tensors, int root) = 0;

  virtual absl::Status Barrier() = 0;
};

// Connects to the job's group as described in distributed.h (rank 0 hosts the TCPStore).
// `options` must be valid (DistributedContext calls it for world_size > 1; a group of one is
// allowed, for tests of a backend). Errors: Unavailable (store or peers unreachable
// within rendezvous_timeout), FailedPrecondition (CUDA device but no NCCL in this build).
absl::StatusOr<std::unique_ptr<CollectiveGroup>> ConnectC10dGroup(
    const DistributedOptions& options);

// Whether this trainer was built with ProcessGroupNCCL: LibTorch built with CUDA and NCCL
// (it defines USE_C10D_NCCL) and not configured with -DPECO_WITH_NCCL=OFF. Thread-safe.
bool BuiltWithNccl();

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_DISTRIBUTED_BACKEND_H_
