#include "trainer/models/vector_quantizer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {

absl::Status ValidateCodebookShape(const std::string& prefix, int64_t num_codes, int64_t dim) {
  if (num_codes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "n_embed: expected at least 2 codes, got ", num_codes));
  }
  if (dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "embed_dim: expected a value > 0, got ", dim));
  }
  return absl::OkStatus();
}

CodeUsage UsageFromCounts(const torch::Tensor& counts) {
  CodeUsage usage;
  const torch::Tensor host = counts.to(torch::kCPU, torch::kFloat64);
  const double total = host.sum().item<double>();
  usage.codes_used = (host > 0).sum().item<int64_t>();
  if (total > 0) {
    torch::Tensor p = host / total;
    torch::Tensor entropy = -(p * torch::log(p.clamp_min(1e-30))).sum();
    usage.perplexity = std::exp(entropy.item<double>());
  }
  return usage;
}

absl::Status VectorQuantizerConfig::Validate(const std::string& prefix) const {
  RETURN_IF_ERROR(ValidateCodebookShape(prefix, num_codes, dim));
  if (beta < 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "beta: expected >= 0, got ", beta));
  }
  if (dead_code_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "dead_code_steps: expected >= 0, got ", dead_code_steps));
  }
  if (dead_code_until_step < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "dead_code_until_step: expected a step >= 0 (0 = restarts throughout), got ",
        dead_code_until_step));
  }
  return absl::OkStatus();
}

VectorQuantizerImpl::VectorQuantizerImpl(const VectorQuantizerConfig& config) : config_(config) {
  embedding_ = register_module("embedding", torch::nn::Embedding(config.num_codes, config.dim));
  {
    torch::NoGradGuard no_grad;
    embedding_->weight.uniform_(-1.0 / config.num_codes, 1.0 / config.num_codes);
  }
  window_counts_ = torch::zeros({config.num_codes}, torch::kInt64);
  // Only tracked (and checkpointed) when dead-code restarts are on, so that exported state
  // dicts keep exactly the official keys otherwise.
  steps_since_used_ = torch::zeros({config.num_codes}, torch::kInt64);
  if (config.dead_code_steps > 0) {
    steps_since_used_ = register_buffer("steps_since_used", steps_since_used_);
  }
}

torch::Tensor VectorQuantizerImpl::NearestCodes(const torch::Tensor& flat) {
  const torch::Tensor& codes = embedding_->weight;
  // ||z||^2 + ||e||^2 - 2 z.e, in fp32 even under autocast so ties break as in fp32.
  torch::Tensor z32 = flat.to(torch::kFloat32);
  torch::Tensor e32 = codes.to(torch::kFloat32);
  torch::Tensor distances =
      z32.pow(2).sum(1, /*keepdim=*/true) + e32.pow(2).sum(1) - 2 * torch::matmul(z32, e32.t());
  return distances.argmin(1);
}

QuantizerOutput VectorQuantizerImpl::forward(const torch::Tensor& z) {
  const int64_t b = z.size(0), d = z.size(1), h = z.size(2), w = z.size(3);
  torch::Tensor z_last = z.permute({0, 2, 3, 1}).contiguous();  // [B, H, W, D]
  torch::Tensor flat = z_last.view({-1, d});
  torch::Tensor indices;
  {
    torch::NoGradGuard no_grad;
    indices = NearestCodes(flat.detach());
  }
  torch::Tensor z_q = embedding_(indices).view({b, h, w, d}).to(z.scalar_type());
  torch::Tensor codebook_term = torch::mean((z_q - z_last.detach()).pow(2));
  torch::Tensor commitment_term = torch::mean((z_q.detach() - z_last).pow(2));
  torch::Tensor loss = config_.legacy_loss ? commitment_term + config_.beta * codebook_term
                                           : codebook_term + config_.beta * commitment_term;
  torch::Tensor straight_through = z_last + (z_q - z_last).detach();
  if (is_training()) {
    torch::NoGradGuard no_grad;
    torch::Tensor counts = torch::bincount(indices, /*weights=*/{}, config_.num_codes);
    if (sum_counts_) counts = sum_counts_(counts);
    // Not a buffer (usage is not checkpointed), so it follows the codes to their device here.
    if (window_counts_.device() != counts.device())
      window_counts_ = window_counts_.to(counts.device());
    window_counts_ += counts;
    if (config_.dead_code_steps > 0) {
      steps_since_used_.add_(1).masked_fill_(counts > 0, 0);
    }
  }
  return {straight_through.permute({0, 3, 1, 2}).contiguous(), loss, indices.view({b, h, w})};
}

torch::Tensor VectorQuantizerImpl::Encode(const torch::Tensor& z) {
  torch::NoGradGuard no_grad;
  const int64_t b = z.size(0), d = z.size(1), h = z.size(2), w = z.size(3);
  torch::Tensor flat = z.permute({0, 2, 3, 1}).reshape({-1, d});
  return NearestCodes(flat).view({b, h, w});
}

torch::Tensor VectorQuantizerImpl::Lookup(const torch::Tensor& indices) {
  return embedding_(indices).permute({0, 3, 1, 2}).contiguous();
}

CodeUsage VectorQuantizerImpl::TakeUsage() {
  CodeUsage usage = UsageFromCounts(window_counts_);
  window_counts_.zero_();
  return usage;
}

bool VectorQuantizerImpl::HasDeadCodes() const {
  if (config_.dead_code_steps <= 0) return false;
  return (steps_since_used_ >= config_.dead_code_steps).any().item<bool>();
}

int64_t VectorQuantizerImpl::RestartDeadCodes(const torch::Tensor& z, at::Generator generator) {
  if (config_.dead_code_steps <= 0) return 0;
  torch::NoGradGuard no_grad;
  torch::Tensor dead = (steps_since_used_ >= config_.dead_code_steps).nonzero().flatten();
  const int64_t count = dead.numel();
  if (count == 0) return 0;
  torch::Tensor flat =
      z.detach().permute({0, 2, 3, 1}).reshape({-1, config_.dim}).to(torch::kFloat32);
  // Drawn on the CPU generator whatever the device, so a run restarts the same codes anywhere.
  torch::Tensor pick = torch::randint(flat.size(0), {count}, generator, torch::kInt64);
  embedding_->weight.index_copy_(
      0, dead, flat.index_select(0, pick.to(flat.device())).to(embedding_->weight.options()));
  steps_since_used_.index_fill_(0, dead, 0);
  return count;
}

}  // namespace peco::trainer
