// How a model reaches the other ranks of a data-parallel job without knowing about process
// groups: a function that returns the element-wise sum of a tensor over every rank (a collective:
// every rank calls it at the same point). engine/distributed_autograd.h makes one from a group
// (differentiable, for statistics inside the graph); an empty function means one process.
// Thread-safety and errors are the function's: the group's collectives must be issued from one
// thread in the same order on every rank, and a failed collective throws (the training loop
// turns it into a Status).
#ifndef PECO_TRAINER_MODELS_RANK_SUM_H_
#define PECO_TRAINER_MODELS_RANK_SUM_H_

#include <functional>

#include "torch/torch.h"

namespace peco::trainer {

using RankSum = std::function<torch::Tensor(const torch::Tensor&)>;

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_RANK_SUM_H_
