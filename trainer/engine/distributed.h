// Data-parallel process group for one training job (DESIGN.md section 6).
//
// Ranks follow torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT,
// plus PECO_JOB_ID and PECO_ATTEMPT. With world_size 1 (or no WORLD_SIZE at all) the context is a
// single process: no store, no sockets, and every collective is the identity. Otherwise rank 0
// hosts a c10d TCPStore on MASTER_PORT, every rank reaches it through a PrefixStore keyed by
// "peco/<job>/<attempt>/" (so a stale rank of an earlier attempt never meets a new one), and the
// collectives run over ProcessGroupGloo for CPU tensors, or ProcessGroupNCCL for CUDA tensors when
// this trainer was built with it (BuiltWithNccl(), distributed_backend.h).
//
// Failure model: every collective waits at most `collective_timeout`. A peer that died makes the
// collective fail at once (its sockets close) and a stalled one makes it fail at the timeout; the
// error is Unavailable, naming the operation and this rank, and the context is unusable after it
// (the job restarts as a whole from its last checkpoint).
// Joining a group with world_size > 1 sets SIGPIPE to ignored (process-wide, unless the program
// installed a handler): a write to a dead peer's socket must become an error, not kill the rank.
//
// Thread-safety: collectives must be issued in the same order on every rank; call them from one
// thread at a time. Accessors are const and safe from any thread.
#ifndef PECO_TRAINER_ENGINE_DISTRIBUTED_H_
#define PECO_TRAINER_ENGINE_DISTRIBUTED_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "torch/torch.h"

namespace peco::trainer {

struct DistributedOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;  // device index on this host
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;       // rank 0's TCPStore port
  std::string job_id = "local";  // store key prefix, with attempt
  int64_t attempt = 0;
  torch::Device device = torch::kCPU;  // where collectives run: CPU -> Gloo, CUDA -> NCCL
  // How long a collective may wait for its peers before it fails. Seconds, not c10d's 30 minutes,
  // so that a dead or stalled rank restarts the job promptly.
  std::chrono::milliseconds collective_timeout = std::chrono::seconds(30);
  // How long creating the group waits for every rank to reach the store (ranks start at
  // different times; loading data and models comes first on some).
  std::chrono::milliseconds rendezvous_timeout = std::chrono::seconds(300);

  // Returns InvalidArgument naming the field, e.g. "distributed.rank: expected in [0, 2), got 2".
  absl::Status Validate() const;
};

// Looks an environment variable up; nullopt when unset. Tests pass a map-backed lookup.
using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

// The process environment (getenv).
std::optional<std::string> ProcessEnv(const char* name);

// Builds options from torchrun's variables. Without WORLD_SIZE, or with WORLD_SIZE=1, returns a
// single-process configuration (RANK, if set, must then be 0). With WORLD_SIZE > 1, RANK,
// MASTER_ADDR and MASTER_PORT are required; LOCAL_RANK defaults to 0, PECO_JOB_ID to "local",
// PECO_ATTEMPT to 0. Other fields keep their defaults. InvalidArgument names the variable:
// "environment RANK: expected an integer in [0, 4), got 'x'".
absl::StatusOr<DistributedOptions> DistributedOptionsFromEnv(const EnvLookup& env = ProcessEnv);

class CollectiveGroup;  // distributed_backend.h

// A joined process group. Owns the store and the backend; destroying it leaves the group.
//
//   ASSIGN_OR_RETURN(DistributedOptions options, DistributedOptionsFromEnv());
//   ASSIGN_OR_RETURN(std::unique_ptr<DistributedContext> dist,
//   DistributedContext::Create(options)); RETURN_IF_ERROR(BroadcastModuleState(*dist, *model)); //
//   distributed_module.h
//   ... backward; RETURN_IF_ERROR(reducer.AllReduce()); optimizer.step(); ...
class DistributedContext {
 public:
  // Validates `options` and, for world_size > 1, creates or joins the store and the backend,
  // waiting up to rendezvous_timeout for all ranks. Errors: InvalidArgument (options),
  // Unavailable (store or peers unreachable in time), FailedPrecondition (CUDA device without a
  // NCCL build). Messages name the rank.
  static absl::StatusOr<std::unique_ptr<DistributedContext>> Create(
      const DistributedOptions& options);

  // Wraps an already-connected group (tests inject fakes here). `group` may be null only when
  // options.world_size == 1.
  static absl::StatusOr<std::unique_ptr<DistributedContext>> CreateWithGroup(
      const DistributedOptions& options, std::unique_ptr<CollectiveGroup> group);

  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  int local_rank() const { return options_.local_rank; }
  bool is_distributed() const { return options_.world_size > 1; }
  bool is_main() const { return options_.rank == 0; }  // writes checkpoints and reports
  const DistributedOptions& options() const { return options_; }

  // Sums each tensor element-wise across ranks, in place. Tensors must be contiguous, on the
  // context's device, and of identical shapes and dtypes on every rank.
  absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors);

  // Replaces each tensor with rank `root`'s copy, in place (same requirements).
  absl::Status Broadcast(std::vector<torch::Tensor>& tensors, int root = 0);

  // Returns the element-wise mean across ranks of `values` (same length on every rank), e.g. loss
  // and accuracy for logging. Reduced in float64 on the context's device.
  absl::StatusOr<std::vector<double>> AllReduceMean(const std::vector<double>& values);

  // Returns once every rank has reached the barrier (or fails at the timeout).
  absl::Status Barrier();

 private:
  DistributedContext(const DistributedOptions& options, std::unique_ptr<CollectiveGroup> group);

  const DistributedOptions options_;
  std::unique_ptr<CollectiveGroup> group_;  // null for world_size 1
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_DISTRIBUTED_H_
