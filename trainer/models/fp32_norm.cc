#include "trainer/models/fp32_norm.h"

namespace peco::trainer {

Fp32GroupNormImpl::Fp32GroupNormImpl(int64_t num_groups, int64_t channels, double eps)
    : num_groups_(num_groups), eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({channels}));
  bias_ = register_parameter("bias", torch::zeros({channels}));
}

torch::Tensor Fp32GroupNormImpl::forward(const torch::Tensor& x) {
  return torch::group_norm(x.to(torch::kFloat32), num_groups_, weight_, bias_, eps_);
}

Fp32LayerNormImpl::Fp32LayerNormImpl(int64_t dim, double eps) : dim_(dim), eps_(eps) {
  weight_ = register_parameter("weight", torch::ones({dim}));
  bias_ = register_parameter("bias", torch::zeros({dim}));
}

torch::Tensor Fp32LayerNormImpl::forward(const torch::Tensor& x) {
  return torch::layer_norm(x.to(torch::kFloat32), {dim_}, weight_, bias_, eps_);
}

}  // namespace peco::trainer
