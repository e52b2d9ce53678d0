// GroupNorm and LayerNorm that always normalise in fp32, with the usual `weight`/`bias` names.
//
// Under bf16 autocast, LibTorch 1.13's CPU autocast passes group_norm/layer_norm through with a
// bf16 input and fp32 affine parameters, which fails ("expected scalar type BFloat16"). These
// modules cast the input to fp32 (as CUDA autocast does for norms) and return fp32, which the
// next convolution or matmul casts back down. Without autocast they equal the LibTorch modules.
// Not thread-safe (LibTorch modules).
#ifndef PECO_TRAINER_MODELS_FP32_NORM_H_
#define PECO_TRAINER_MODELS_FP32_NORM_H_

#include <torch/torch.h>

namespace peco::trainer {

class Fp32GroupNormImpl : public torch::nn::Module {
 public:
  Fp32GroupNormImpl(int64_t num_groups, int64_t channels, double eps);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t num_groups_;
  double eps_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(Fp32GroupNorm);

class Fp32LayerNormImpl : public torch::nn::Module {
 public:
  Fp32LayerNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t dim_;
  double eps_;
  torch::Tensor weight_, bias_;
};
TORCH_MODULE(Fp32LayerNorm);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_FP32_NORM_H_
