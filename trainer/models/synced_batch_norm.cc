#include "trainer/models/synced_batch_norm.h"

namespace peco::trainer {

torch::Tensor SyncedBatchNorm2d(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn,
                                const RankSum& sum_over_ranks) {
  const int64_t channels = x.size(1);
  const torch::Tensor input = x.to(torch::kFloat32);
  // Shifted by the running mean (the same on every rank): sums of (x - K) and (x - K)^2.
  const torch::Tensor shift = bn.running_mean.detach().view({1, channels, 1, 1});
  const torch::Tensor centred = input - shift;
  const double local_count = static_cast<double>(x.numel() / channels);
  torch::Tensor stats = torch::cat({centred.sum({0, 2, 3}), centred.pow(2).sum({0, 2, 3}),
                                    torch::full({1}, local_count, input.options())});
  stats = sum_over_ranks(stats);
  const torch::Tensor count = stats.slice(0, 2 * channels).detach();
  const torch::Tensor shifted_mean = stats.slice(0, 0, channels) / count;
  const torch::Tensor var =
      (stats.slice(0, channels, 2 * channels) / count - shifted_mean.pow(2)).clamp_min(0);
  const torch::Tensor mean = shifted_mean + bn.running_mean.detach();
  {
    torch::NoGradGuard no_grad;
    const double momentum = bn.options.momentum().value_or(0.1);
    const double n = count.item<double>();
    bn.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum);
    bn.running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / std::max(n - 1, 1.0)));
    bn.num_batches_tracked.add_(1);
  }
  const torch::Tensor scale = torch::rsqrt(var + bn.options.eps()) * bn.weight;
  return ((input - mean.view({1, channels, 1, 1})) * scale.view({1, channels, 1, 1}) +
          bn.bias.view({1, channels, 1, 1}))
      .to(x.scalar_type());
}

}  // namespace peco::trainer
