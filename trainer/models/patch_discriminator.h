// The PatchGAN discriminator of VQGAN (taming's NLayerDiscriminator, ndf 64, 3 layers).
//
// conv4x4/2 + LeakyReLU(0.2), then (n_layers - 1) conv4x4/2 + BatchNorm + LeakyReLU with doubling
// channels (capped at 8x), one conv4x4/1 + BN + LeakyReLU, and a conv4x4/1 to one logit per
// patch. Padding 1; convolutions before BatchNorm have no bias. Parameters live under `main.<i>`.
// Initialisation: conv weights N(0, 0.02), BN weight N(1, 0.02) and bias 0.
//
// Data parallel: SetRankSum() makes training-mode BatchNorm use the statistics of the global
// batch (models/synced_batch_norm.h), so N ranks x batch b train as 1 rank x batch N b; in
// evaluation mode, and without a rank sum, BatchNorm is LibTorch's.
//
// Not thread-safe (a LibTorch module).
#ifndef PECO_TRAINER_MODELS_PATCH_DISCRIMINATOR_H_
#define PECO_TRAINER_MODELS_PATCH_DISCRIMINATOR_H_

#include <torch/torch.h>

#include "trainer/models/synced_batch_norm.h"

namespace peco::trainer {

struct PatchDiscriminatorConfig {
  int64_t in_channels = 3;
  int64_t ndf = 64;
  int64_t n_layers = 3;
};

class PatchDiscriminatorImpl : public torch::nn::Module {
 public:
  PatchDiscriminatorImpl(const PatchDiscriminatorConfig& config, uint64_t seed);
  // [B, C, H, W] -> logits [B, 1, h, w].
  torch::Tensor forward(const torch::Tensor& x);

  // Sums BatchNorm statistics over the ranks of a job (empty: this process's batch only).
  void SetRankSum(RankSum sum_over_ranks) { sum_over_ranks_ = std::move(sum_over_ranks); }

 private:
  torch::nn::Sequential main_{nullptr};
  RankSum sum_over_ranks_;
};
TORCH_MODULE(PatchDiscriminator);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_PATCH_DISCRIMINATOR_H_
