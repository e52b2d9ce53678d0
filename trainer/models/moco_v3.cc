#include "trainer/models/moco_v3.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "trainer/models/synced_batch_norm.h"

namespace peco::trainer {

absl::Status MocoV3Config::Validate(const std::string& prefix) const {
  if (dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "dim: expected > 0, got ", dim));
  }
  if (mlp_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "mlp_dim: expected > 0, got ", mlp_dim));
  }
  return vit.Validate(prefix);
}

MocoMlpImpl::MocoMlpImpl(int64_t layers, int64_t input_dim, int64_t mlp_dim, int64_t output_dim) {
  // Indices of the official nn.Sequential: Linear, BN, ReLU per hidden layer; Linear, BN last.
  int64_t index = 0;
  for (int64_t l = 0; l < layers; ++l) {
    const int64_t in = l == 0 ? input_dim : mlp_dim;
    const bool last = l == layers - 1;
    const int64_t out = last ? output_dim : mlp_dim;
    linears_.push_back(register_module(
        std::to_string(index++), torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false))));
    norms_.push_back(
        register_module(std::to_string(index++),
                        torch::nn::BatchNorm1d(torch::nn::BatchNormOptions(out).affine(!last))));
    if (!last) ++index;  // ReLU
  }
}

torch::Tensor MocoMlpImpl::forward(const torch::Tensor& x, const RankSum& sum_over_ranks) {
  torch::Tensor h = x;
  for (size_t l = 0; l < linears_.size(); ++l) {
    h = linears_[l](h);
    torch::nn::BatchNorm1dImpl& bn = *norms_[l];
    // Statistics in fp32 under autocast, as torch's batch_norm keeps them.
    h = is_training() && sum_over_ranks ? SyncedBatchNorm1d(h, bn, sum_over_ranks)
                                        : bn.forward(h.to(torch::kFloat32));
    if (l + 1 < linears_.size()) h = torch::relu(h);
  }
  return h;
}

torch::Tensor ContrastiveLoss(const torch::Tensor& queries, const torch::Tensor& all_keys,
                              const ContrastiveLossOptions& options) {
  namespace F = torch::nn::functional;
  const torch::Tensor q =
      F::normalize(queries.to(torch::kFloat32), F::NormalizeFuncOptions().dim(1));
  const torch::Tensor k =
      F::normalize(all_keys.to(torch::kFloat32), F::NormalizeFuncOptions().dim(1));
  const torch::Tensor logits = torch::matmul(q, k.t()) / options.temperature;
  const int64_t n = q.size(0);
  const torch::Tensor labels =
      torch::arange(n, torch::TensorOptions(q.device()).dtype(torch::kLong)) + n * options.rank;
  return F::cross_entropy(logits, labels) * (2 * options.temperature);
}

MocoV3Impl::MocoV3Impl(const MocoV3Config& config) : config_(config) {
  auto encoder = [&](const char* name, MocoMlp* head) {
    TimmVit vit = register_module(name, TimmVit(config.vit));
    *head =
        vit->register_module("head", MocoMlp(3, config.vit.embed_dim, config.mlp_dim, config.dim));
    return vit;
  };
  base_ = encoder("base_encoder", &base_head_);
  momentum_ = encoder("momentum_encoder", &momentum_head_);
  predictor_ = register_module("predictor", MocoMlp(2, config.dim, config.mlp_dim, config.dim));
  for (torch::Tensor& p : momentum_->parameters()) p.set_requires_grad(false);
  if (config.stop_grad_conv1) {
    for (auto& item : base_->named_parameters()) {
      if (item.key().rfind("patch_embed.", 0) == 0) item.value().set_requires_grad(false);
    }
  }
}

void MocoV3Impl::InitializeMocoV3(uint64_t seed) {
  base_->InitializeMocoV3(seed);
  torch::NoGradGuard no_grad;
  auto base = base_->named_parameters();
  for (auto& item : momentum_->named_parameters()) item.value().copy_(base[item.key()]);
}

torch::Tensor MocoV3Impl::Queries(const torch::Tensor& images, const RankSum& sum_over_ranks) {
  return predictor_->forward(base_head_->forward(base_->ClsOutput(images), sum_over_ranks),
                             sum_over_ranks);
}

torch::Tensor MocoV3Impl::Keys(const torch::Tensor& images, const RankSum& sum_over_ranks) {
  torch::NoGradGuard no_grad;
  return momentum_head_->forward(momentum_->ClsOutput(images), sum_over_ranks);
}

void MocoV3Impl::UpdateMomentumEncoder(double m) {
  torch::NoGradGuard no_grad;
  auto base = base_->named_parameters();
  for (auto& item : momentum_->named_parameters()) {
    item.value().mul_(m).add_(base[item.key()], 1 - m);
  }
}

torch::Tensor MocoV3Impl::Loss(const torch::Tensor& view1, const torch::Tensor& view2, double m,
                               const ContrastiveLossOptions& options,
                               const RankSum& sum_over_ranks) {
  const RankSum batch_norm_sum = options.sync_batch_norm ? sum_over_ranks : RankSum();
  const torch::Tensor q1 = Queries(view1, batch_norm_sum);
  const torch::Tensor q2 = Queries(view2, batch_norm_sum);
  UpdateMomentumEncoder(m);
  auto gather = [&](const torch::Tensor& keys) {
    if (!sum_over_ranks || options.world_size == 1) return keys;
    torch::NoGradGuard no_grad;
    const int64_t n = keys.size(0);
    torch::Tensor all = torch::zeros({n * options.world_size, keys.size(1)}, keys.options());
    all.narrow(0, n * options.rank, n).copy_(keys);
    return sum_over_ranks(all);
  };
  const torch::Tensor k1 = gather(Keys(view1, batch_norm_sum));
  const torch::Tensor k2 = gather(Keys(view2, batch_norm_sum));
  return ContrastiveLoss(q1, k2, options) + ContrastiveLoss(q2, k1, options);
}

std::vector<torch::Tensor> MocoV3Impl::TrainableParameters() {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& p : base_->parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  for (const torch::Tensor& p : predictor_->parameters()) out.push_back(p);
  return out;
}

double MocoEncoderForwardFlops(const MocoV3Config& config) {
  const TimmVitConfig& c = config.vit;
  const double n = static_cast<double>(c.grid() * c.grid()), t = n + 1, d = c.embed_dim;
  const double hidden = static_cast<double>(static_cast<int64_t>(d * c.mlp_ratio));
  const double patch = 2 * n * c.in_channels * c.patch_size * c.patch_size * d;
  const double block = 2 * t * d * 3 * d    // qkv
                       + 2 * 2 * t * t * d  // q k^T and attention x v
                       + 2 * t * d * d      // proj
                       + 2 * 2 * t * d * hidden;
  const double head =
      2 * (d * config.mlp_dim + config.mlp_dim * config.mlp_dim + config.mlp_dim * config.dim);
  return patch + c.depth * block + head;
}

}  // namespace peco::trainer
