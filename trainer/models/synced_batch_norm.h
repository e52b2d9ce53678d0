// BatchNorm whose training-mode statistics are those of the global batch of a data-parallel job
// (every rank's images), as torch.nn.SyncBatchNorm computes them; with it, N ranks x batch b
// train a BatchNorm layer as 1 rank x batch N b does.
//
// The layer's parameters and buffers stay those of `bn` (weight, bias, running_mean,
// running_var, num_batches_tracked), so checkpoints are unchanged. Statistics are summed over
// the ranks by `sum_over_ranks` (engine/distributed_autograd.h's differentiable all-reduce);
// they are accumulated around the running mean, which every rank holds alike, so that the
// variance does not cancel catastrophically. The running statistics are updated as BatchNorm
// does (momentum, unbiased variance, num_batches_tracked), identically on every rank.
//
// Free functions; thread-compatible (update `bn`'s buffers).
#ifndef PECO_TRAINER_MODELS_SYNCED_BATCH_NORM_H_
#define PECO_TRAINER_MODELS_SYNCED_BATCH_NORM_H_

#include "torch/torch.h"
#include "trainer/models/rank_sum.h"

namespace peco::trainer {

// Training-mode BatchNorm2d of `x` [B, C, H, W] over the global batch; `bn` must be in training
// mode with affine parameters and running statistics; `sum_over_ranks` must be differentiable.
torch::Tensor SyncedBatchNorm2d(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn,
                                const RankSum& sum_over_ranks);

// Training-mode BatchNorm1d of `x` [B, C] over the global batch; `bn` must track running
// statistics; affine parameters are optional (MoCo v3's last BatchNorm has none).
torch::Tensor SyncedBatchNorm1d(const torch::Tensor& x, torch::nn::BatchNorm1dImpl& bn,
                                const RankSum& sum_over_ranks);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_SYNCED_BATCH_NORM_H_
