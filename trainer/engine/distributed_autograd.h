// A sum over the ranks of a data-parallel job that autograd differentiates, for state that must
// be computed from the whole global batch inside a forward pass (synchronised BatchNorm).
//
// Forward: every rank gets the element-wise sum of every rank's `tensor`. Backward: the
// gradient reaching each rank's input is the sum of every rank's incoming gradient (the adjoint
// of the forward when the ranks' losses are averaged, as GradientAllReducer averages their
// gradients). Both directions are collectives: every rank must run the same forward and backward.
//
// Errors: a failed collective throws (std::runtime_error naming the operation and the rank);
// the training loop turns it into a Status (trainer/util/torch_status.h).
// Thread-safety: as DistributedContext; `group` is borrowed and must outlive the graph.
#ifndef PECO_TRAINER_ENGINE_DISTRIBUTED_AUTOGRAD_H_
#define PECO_TRAINER_ENGINE_DISTRIBUTED_AUTOGRAD_H_

#include <functional>

#include "torch/torch.h"
#include "trainer/engine/distributed.h"

namespace peco::trainer {

// The differentiable sum of `tensor` over the ranks of `group` (the identity for world size 1).
torch::Tensor DifferentiableAllReduceSum(DistributedContext* group, const torch::Tensor& tensor);

// DifferentiableAllReduceSum bound to `group`, or an empty function when the group has one rank
// (so that callers can keep their single-process path).
std::function<torch::Tensor(const torch::Tensor&)> SumOverRanks(DistributedContext* group);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_DISTRIBUTED_AUTOGRAD_H_
