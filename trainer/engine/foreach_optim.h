// Multi-tensor versions of the trainers' optimizer step and gradient clipping.
//
// LibTorch's AdamW and clip_grad_norm_ loop over parameters, issuing ~9 and ~2 kernels per
// parameter: on a GPU a ViT-B step then spends thousands of kernel launches on them, more time
// than the math. These do the same arithmetic with ATen's _foreach_* operators, which on CUDA
// update every parameter of a group in a handful of multi-tensor kernels (and on the CPU run the
// same per-tensor kernels as LibTorch's loop, so results there are bit-identical).
//
// Thread-compatible, like torch::optim::Optimizer.
#ifndef PECO_TRAINER_ENGINE_FOREACH_OPTIM_H_
#define PECO_TRAINER_ENGINE_FOREACH_OPTIM_H_

#include <vector>

#include "torch/torch.h"

namespace peco::trainer {

// torch::optim::AdamW with a multi-tensor step. Same options, param groups, per-parameter state
// (step, exp_avg, exp_avg_sq) and serialisation as the base class, so checkpoints written by
// either load into the other. amsgrad and sparse gradients take the base class's step.
class ForeachAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  torch::Tensor step(LossClosure closure = nullptr) override;
};

// torch::optim::Adam (L2 weight decay added to the gradient, as taming's VQGAN trains) with a
// multi-tensor step; otherwise as ForeachAdamW.
class ForeachAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;

  torch::Tensor step(LossClosure closure = nullptr) override;
};

// torch::nn::utils::clip_grad_norm_ with the 2-norm, multi-tensor: scales the gradients of
// `params` (those that have one) so that their global 2-norm is at most `max_norm`, and returns
// the norm before scaling. Waits for the device once, to read the norm.
double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_FOREACH_OPTIM_H_
