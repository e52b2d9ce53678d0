#include "trainer/models/patch_discriminator.h"

#include <algorithm>

namespace peco::trainer {
namespace {

torch::nn::Conv2d Conv4(int64_t in, int64_t out, int64_t stride, bool bias) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, 4).stride(stride).padding(1).bias(bias));
}

torch::nn::LeakyReLU Leaky() {
  return torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(0.2).inplace(true));
}

}  // namespace

PatchDiscriminatorImpl::PatchDiscriminatorImpl(const PatchDiscriminatorConfig& config,
                                               uint64_t seed) {
  torch::nn::Sequential seq;
  seq->push_back(Conv4(config.in_channels, config.ndf, 2, true));
  seq->push_back(Leaky());
  int64_t mult = 1;
  for (int64_t n = 1; n < config.n_layers; ++n) {
    const int64_t prev = mult;
    mult = std::min<int64_t>(int64_t{1} << n, 8);
    seq->push_back(Conv4(config.ndf * prev, config.ndf * mult, 2, false));
    seq->push_back(torch::nn::BatchNorm2d(config.ndf * mult));
    seq->push_back(Leaky());
  }
  const int64_t prev = mult;
  mult = std::min<int64_t>(int64_t{1} << config.n_layers, 8);
  seq->push_back(Conv4(config.ndf * prev, config.ndf * mult, 1, false));
  seq->push_back(torch::nn::BatchNorm2d(config.ndf * mult));
  seq->push_back(Leaky());
  seq->push_back(Conv4(config.ndf * mult, 1, 1, true));
  main_ = register_module("main", seq);

  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    const bool is_bn = p.dim() == 1 && name.find("bias") == std::string::npos;
    if (p.dim() == 4) {
      p.normal_(0.0, 0.02, generator);
    } else if (is_bn) {
      p.normal_(1.0, 0.02, generator);
    } else if (name.find("bias") != std::string::npos) {
      // BatchNorm biases are 0 (taming); conv biases keep that too for a seeded, simple start.
      p.zero_();
    }
  }
}

torch::Tensor PatchDiscriminatorImpl::forward(const torch::Tensor& x) {
  if (!sum_over_ranks_ || !is_training()) return main_->forward(x);
  torch::Tensor h = x;
  for (auto& layer : *main_) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(layer.ptr().get())) {
      h = SyncedBatchNorm2d(h, *bn, sum_over_ranks_);
    } else {
      h = layer.forward<torch::Tensor>(h);
    }
  }
  return h;
}

}  // namespace peco::trainer
