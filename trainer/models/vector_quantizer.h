// Nearest-code vector quantizer with a straight-through gradient (VQ-VAE / VQGAN).
//
// Parameter name: `embedding.weight` [num_codes, dim] (taming's `quantize.embedding.weight`
// when registered as `quantize`). Codebook initialised uniform in [-1/K, 1/K] as taming does.
//
// Loss forms (peco_method.md section 1.3):
//   legacy (taming's default): mean((sg[z_q] - z)^2) + beta * mean((z_q - sg[z])^2)
//   standard (textbook VQ-VAE): mean((z_q - sg[z])^2) + beta * mean((sg[z_q] - z)^2)
//
// Not thread-safe (a LibTorch module). Usage statistics are accumulated across calls until
// TakeUsage() resets them.
#ifndef PECO_TRAINER_MODELS_VECTOR_QUANTIZER_H_
#define PECO_TRAINER_MODELS_VECTOR_QUANTIZER_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "trainer/models/rank_sum.h"

namespace peco::trainer {

struct VectorQuantizerConfig {
  int64_t num_codes = 8192;
  int64_t dim = 256;
  double beta = 0.25;
  bool legacy_loss = true;
  // Replace codes unused for `dead_code_steps` training steps by random encoder outputs of the
  // current batch (0 = never). Off by default: not part of taming's recipe.
  int64_t dead_code_steps = 0;
  // Restarts happen only before this training step (0 = throughout): an early window lets the
  // codebook find its footing, then leaves the codes to settle (the tokenizer task applies it).
  int64_t dead_code_until_step = 0;

  absl::Status Validate(const std::string& prefix) const;
};

struct QuantizerOutput {
  torch::Tensor z_q;      // [B, D, H, W], straight-through: forward = codes, gradient = identity
  torch::Tensor loss;     // scalar codebook + commitment loss
  torch::Tensor indices;  // [B, H, W] int64
};

// Code-usage statistics over a window of batches.
struct CodeUsage {
  int64_t codes_used = 0;  // distinct codes assigned at least once
  double perplexity = 0;   // exp(entropy of the assignment histogram)
};

// Statistics of an assignment histogram `counts` [K] (any integer dtype and device).
CodeUsage UsageFromCounts(const torch::Tensor& counts);

// InvalidArgument naming `prefix`n_embed or `prefix`embed_dim unless num_codes >= 2 and dim > 0.
absl::Status ValidateCodebookShape(const std::string& prefix, int64_t num_codes, int64_t dim);

class VectorQuantizerImpl : public torch::nn::Module {
 public:
  explicit VectorQuantizerImpl(const VectorQuantizerConfig& config);

  // z: [B, D, H, W] encoder output after quant_conv.
  QuantizerOutput forward(const torch::Tensor& z);

  // Nearest code indices only, [B, H, W] (no loss, no statistics).
  torch::Tensor Encode(const torch::Tensor& z);
  // Code vectors for indices [B, H, W] -> [B, D, H, W].
  torch::Tensor Lookup(const torch::Tensor& indices);

  // Statistics since the last call; resets the window.
  CodeUsage TakeUsage();

  // Data parallel: each training forward's code counts are summed over the ranks with
  // `sum_counts` (a collective) before they enter the usage window and the dead-code counters,
  // so every rank sees the global batch's usage and restarts the same codes. Empty: local counts.
  void SetCountSum(RankSum sum_counts) { sum_counts_ = std::move(sum_counts); }

  // Whether RestartDeadCodes would restart any code now (the same answer on every rank).
  bool HasDeadCodes() const;

  // Restarts codes that were unused for config.dead_code_steps calls, drawing replacements from
  // `z` ([B, D, H, W], any device) with `generator` (a CPU generator, so that the same codes
  // restart on every device). Returns the number of restarted codes.
  int64_t RestartDeadCodes(const torch::Tensor& z, at::Generator generator);

  const torch::Tensor& codebook() const { return embedding_->weight; }
  const VectorQuantizerConfig& config() const { return config_; }

 private:
  torch::Tensor NearestCodes(const torch::Tensor& flat);  // [N, D] -> [N]

  VectorQuantizerConfig config_;
  torch::nn::Embedding embedding_{nullptr};
  torch::Tensor window_counts_;     // [K] assignments in the current statistics window
  torch::Tensor steps_since_used_;  // [K] buffer "steps_since_used", part of the checkpoint
  RankSum sum_counts_;
};
TORCH_MODULE(VectorQuantizer);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_VECTOR_QUANTIZER_H_
