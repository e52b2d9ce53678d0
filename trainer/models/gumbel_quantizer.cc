#include "trainer/models/gumbel_quantizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {

double GumbelSchedule::Temperature(int64_t step) const {
  if (temperature_steps <= 0 || step >= temperature_steps) return temperature_end;
  const double progress = static_cast<double>(std::max<int64_t>(step, 0)) / temperature_steps;
  return temperature_end +
         0.5 * (temperature_start - temperature_end) * (1 + std::cos(M_PI * progress));
}

double GumbelSchedule::KlWeight(int64_t step) const {
  if (kl_warmup_steps <= 0 || step >= kl_warmup_steps) return kl_weight;
  return kl_weight * static_cast<double>(std::max<int64_t>(step, 0)) / kl_warmup_steps;
}

absl::Status GumbelSchedule::Validate(const std::string& prefix) const {
  if (!(temperature_start > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "temperature_start: expected a temperature > 0, got ", temperature_start));
  }
  if (!(temperature_end > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "temperature_end: expected a temperature > 0, got ", temperature_end));
  }
  if (temperature_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "temperature_steps: expected a value >= 0, got ", temperature_steps));
  }
  if (!(kl_weight >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "kl_weight: expected a value >= 0, got ", kl_weight));
  }
  if (kl_warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "kl_warmup_steps: expected a value >= 0, got ", kl_warmup_steps));
  }
  return absl::OkStatus();
}

absl::Status GumbelQuantizerConfig::Validate(const std::string& prefix) const {
  RETURN_IF_ERROR(ValidateCodebookShape(prefix, num_codes, dim));
  return schedule.Validate(absl::StrCat(prefix, "gumbel."));
}

torch::Tensor KlToUniform(const torch::Tensor& logits) {
  torch::Tensor log_q = torch::log_softmax(logits.to(torch::kFloat32), /*dim=*/1);
  // sum_k q_k (log q_k + log K)
  return (log_q.exp() * (log_q + std::log(static_cast<double>(logits.size(1))))).sum(1);
}

GumbelQuantizerImpl::GumbelQuantizerImpl(const GumbelQuantizerConfig& config) : config_(config) {
  proj_ = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.dim, config.num_codes, 1)));
  embed_ = register_module("embed", torch::nn::Embedding(config.num_codes, config.dim));
  window_counts_ = torch::zeros({config.num_codes}, torch::kInt64);
}

GumbelOutput GumbelQuantizerImpl::forward(const torch::Tensor& z, double temperature,
                                          c10::optional<at::Generator> generator) {
  GumbelOutput out;
  // fp32 even under autocast: the relaxation at low temperatures needs the range.
  out.logits = proj_(z).to(torch::kFloat32);  // [B, K, H, W]
  out.indices = out.logits.argmax(1);
  out.kl = KlToUniform(out.logits).mean();
  const torch::Tensor& codes = embed_->weight;
  torch::Tensor weights;  // [B, K, H, W]
  if (is_training()) {
    // Gumbel(0, 1) noise: -log(-log(u)), u uniform in (0, 1).
    torch::Tensor u;
    if (world_size_ > 1) {
      std::vector<int64_t> shape = out.logits.sizes().vec();
      shape[0] *= world_size_;
      u = torch::empty(shape, out.logits.options());
      u.uniform_(std::numeric_limits<float>::min(), 1.0, generator);
      shape[0] = out.logits.size(0);
      shape.insert(shape.begin() + 1, world_size_);
      u = u.view(shape).select(1, rank_);
    } else {
      u = torch::empty_like(out.logits);
      u.uniform_(std::numeric_limits<float>::min(), 1.0, generator);
    }
    torch::Tensor gumbel = -torch::log(-torch::log(u));
    torch::Tensor y = torch::softmax((out.logits + gumbel) / temperature, /*dim=*/1);
    if (config_.straight_through) {
      torch::Tensor hard = torch::zeros_like(y).scatter_(1, y.argmax(1, /*keepdim=*/true), 1.0);
      weights = hard + (y - y.detach());
    } else {
      weights = y;
    }
    torch::NoGradGuard no_grad;
    torch::Tensor counts =
        torch::bincount(out.indices.flatten(), /*weights=*/{}, config_.num_codes);
    if (window_counts_.device() != counts.device())
      window_counts_ = window_counts_.to(counts.device());
    window_counts_ += counts;
  } else {
    weights = torch::zeros_like(out.logits).scatter_(1, out.indices.unsqueeze(1), 1.0);
  }
  out.z_q =
      torch::einsum("bkhw,kd->bdhw", {weights, codes.to(torch::kFloat32)}).to(z.scalar_type());
  return out;
}

torch::Tensor GumbelQuantizerImpl::Encode(const torch::Tensor& z) {
  torch::NoGradGuard no_grad;
  return proj_(z).argmax(1);
}

torch::Tensor GumbelQuantizerImpl::Lookup(const torch::Tensor& indices) {
  return embed_(indices).permute({0, 3, 1, 2}).contiguous();
}

void GumbelQuantizerImpl::SetDataParallel(int rank, int world_size, RankSum sum_counts) {
  rank_ = rank;
  world_size_ = world_size;
  sum_counts_ = std::move(sum_counts);
}

CodeUsage GumbelQuantizerImpl::TakeUsage() {
  CodeUsage usage =
      UsageFromCounts(sum_counts_ ? sum_counts_(window_counts_.clone()) : window_counts_);
  window_counts_.zero_();
  return usage;
}

}  // namespace peco::trainer
