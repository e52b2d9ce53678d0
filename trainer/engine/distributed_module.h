// Data-parallel operations on a module's tensors: start every rank from rank 0's weights, and
// average gradients across ranks after backward (DESIGN.md section 6).
//
// With one rank per process and each rank taking its equal share of the global batch, a loss
// that is a mean over the local batch, averaged over ranks, equals the mean over the global
// batch; so 2 ranks x batch b follow the same trajectory as 1 rank x batch 2b (up to float
// summation order).
#ifndef PECO_TRAINER_ENGINE_DISTRIBUTED_MODULE_H_
#define PECO_TRAINER_ENGINE_DISTRIBUTED_MODULE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "torch/torch.h"
#include "trainer/engine/distributed.h"

namespace peco::trainer {

// Replaces every parameter and buffer of `module` with rank 0's values (in place, without
// recording autograd history). Call once after building the model and before the optimizer's
// first step, on every rank. Errors as DistributedContext::Broadcast.
absl::Status BroadcastModuleState(DistributedContext& context, torch::nn::Module& module);

struct GradientAllReducerOptions {
  // Gradients are flattened into buckets of about this many bytes (a single larger tensor gets a
  // bucket of its own); one collective per bucket. 25 MiB as torch's DistributedDataParallel.
  int64_t bucket_bytes = 25 * 1024 * 1024;

  // Returns InvalidArgument naming the field.
  absl::Status Validate() const;
};

// Averages the gradients of a fixed list of parameters across ranks.
//
//   ASSIGN_OR_RETURN(GradientAllReducer reducer,
//                    GradientAllReducer::Create(dist.get(), model->parameters()));
//   loss.backward();
//   RETURN_IF_ERROR(reducer.AllReduce());  // every rank, every step, same order
//   optimizer.step();
//
// Buckets are planned once, in parameter order, grouping tensors of one dtype and device, so
// every rank with the same model issues the same collectives. A parameter whose gradient is
// undefined on this step gets a zero gradient first (a rank that skipped a branch must still
// contribute to the bucket layout its peers expect).
//
// Borrows `context`, which must outlive the reducer. Not thread-safe: call from the training
// thread.
class GradientAllReducer {
 public:
  // Keeps the parameters with requires_grad (others are ignored). Errors: InvalidArgument for bad
  // options or a parameter not on the context's device.
  static absl::StatusOr<GradientAllReducer> Create(DistributedContext* context,
                                                   std::vector<torch::Tensor> parameters,
                                                   const GradientAllReducerOptions& options = {});

  // Sums each bucket across ranks and divides by world_size, writing back into the parameters'
  // .grad tensors. No-op for world_size 1. Errors as DistributedContext::AllReduceSum.
  absl::Status AllReduce();

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  GradientAllReducer(DistributedContext* context, std::vector<torch::Tensor> parameters,
                     std::vector<std::vector<int64_t>> buckets);

  DistributedContext* context_;
  std::vector<torch::Tensor> parameters_;
  std::vector<std::vector<int64_t>> buckets_;  // indices into parameters_
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_DISTRIBUTED_MODULE_H_
