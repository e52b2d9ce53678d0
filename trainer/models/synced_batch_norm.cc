#include "trainer/models/synced_batch_norm.h"

#include <algorithm>
#include <vector>

namespace peco::trainer {
namespace {

// x [B, C, ...] normalised per channel C over every other dimension of every rank's x.
torch::Tensor SyncedBatchNorm(const torch::Tensor& x, const torch::nn::BatchNormOptions& options,
                              torch::Tensor& running_mean, torch::Tensor& running_var,
                              torch::Tensor& num_batches_tracked, const torch::Tensor& weight,
                              const torch::Tensor& bias, const RankSum& sum_over_ranks) {
  const int64_t channels = x.size(1);
  std::vector<int64_t> reduce = {0};
  std::vector<int64_t> shape(x.dim(), 1);
  shape[1] = channels;
  for (int64_t d = 2; d < x.dim(); ++d) reduce.push_back(d);
  const torch::Tensor input = x.to(torch::kFloat32);
  // Shifted by the running mean (the same on every rank): sums of (x - K) and (x - K)^2.
  const torch::Tensor shift = running_mean.detach().view(shape);
  const torch::Tensor centred = input - shift;
  const double local_count = static_cast<double>(x.numel() / channels);
  torch::Tensor stats = torch::cat({centred.sum(reduce), centred.pow(2).sum(reduce),
                                    torch::full({1}, local_count, input.options())});
  stats = sum_over_ranks(stats);
  const torch::Tensor count = stats.slice(0, 2 * channels).detach();
  const torch::Tensor shifted_mean = stats.slice(0, 0, channels) / count;
  const torch::Tensor var =
      (stats.slice(0, channels, 2 * channels) / count - shifted_mean.pow(2)).clamp_min(0);
  const torch::Tensor mean = shifted_mean + running_mean.detach();
  {
    torch::NoGradGuard no_grad;
    const double momentum = options.momentum().value_or(0.1);
    const double n = count.item<double>();
    running_mean.mul_(1 - momentum).add_(mean.detach() * momentum);
    running_var.mul_(1 - momentum).add_(var.detach() * (momentum * n / std::max(n - 1, 1.0)));
    num_batches_tracked.add_(1);
  }
  torch::Tensor scale = torch::rsqrt(var + options.eps());
  if (weight.defined()) scale = scale * weight;
  torch::Tensor out = (input - mean.view(shape)) * scale.view(shape);
  if (bias.defined()) out = out + bias.view(shape);
  return out.to(x.scalar_type());
}

}  // namespace

torch::Tensor SyncedBatchNorm2d(const torch::Tensor& x, torch::nn::BatchNorm2dImpl& bn,
                                const RankSum& sum_over_ranks) {
  return SyncedBatchNorm(x, bn.options, bn.running_mean, bn.running_var, bn.num_batches_tracked,
                         bn.weight, bn.bias, sum_over_ranks);
}

torch::Tensor SyncedBatchNorm1d(const torch::Tensor& x, torch::nn::BatchNorm1dImpl& bn,
                                const RankSum& sum_over_ranks) {
  return SyncedBatchNorm(x, bn.options, bn.running_mean, bn.running_var, bn.num_batches_tracked,
                         bn.weight, bn.bias, sum_over_ranks);
}

}  // namespace peco::trainer
