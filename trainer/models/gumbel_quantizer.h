// Gumbel-softmax quantizer: the discrete VAE (DALL-E's dVAE) form of the tokenizer's bottleneck,
// the alternative to VectorQuantizer's nearest-code lookup (issue "dVAE tokenizer";
// ../shared/research/peco_method.md section 5.1).
//
// A 1x1 convolution `proj` turns the latent [B, D, H, W] into K logits per position. Training
// draws a relaxed one-hot sample y = softmax((logits + g) / tau), g ~ Gumbel(0, 1), and mixes the
// code vectors `embed.weight` [K, D] with it; with `straight_through`, the forward pass uses the
// one-hot of argmax(y) and the gradient flows through y. Evaluation and Encode() take the argmax
// of the logits (no noise). The regulariser is KL(q || uniform) = sum_k q_k log(q_k K), q =
// softmax(logits), averaged over positions; the caller weighs it (GumbelSchedule::KlWeight).
//
// Parameter names: `proj.weight`, `proj.bias`, `embed.weight` (taming's GumbelQuantize, so a
// tokenizer registered as `quantize` has `quantize.proj.*` and `quantize.embed.weight`).
//
// Not thread-safe (a LibTorch module). Usage statistics accumulate across training calls until
// TakeUsage() resets them, as in VectorQuantizer.
#ifndef PECO_TRAINER_MODELS_GUMBEL_QUANTIZER_H_
#define PECO_TRAINER_MODELS_GUMBEL_QUANTIZER_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"
#include "trainer/models/rank_sum.h"
#include "trainer/models/vector_quantizer.h"

namespace peco::trainer {

// Temperature and KL-weight schedules of the relaxation; pure functions of the step, so a resumed
// run continues them exactly.
struct GumbelSchedule {
  // Temperature: cosine from temperature_start to temperature_end over temperature_steps, then
  // held (DALL-E: 1 -> 1/16 over 150k updates).
  double temperature_start = 1.0;
  double temperature_end = 1.0 / 16;
  int64_t temperature_steps = 150000;
  // KL weight: linear from 0 to kl_weight over kl_warmup_steps, then held (DALL-E: 6.6 over 5k).
  double kl_weight = 6.6;
  int64_t kl_warmup_steps = 5000;

  double Temperature(int64_t step) const;
  double KlWeight(int64_t step) const;

  // InvalidArgument naming `prefix` + the field: temperatures must be > 0, steps >= 0 (0 = the
  // end value from the start), kl_weight >= 0.
  absl::Status Validate(const std::string& prefix) const;
};

struct GumbelQuantizerConfig {
  int64_t num_codes = 8192;
  int64_t dim = 256;              // latent channels in and code-vector size
  bool straight_through = false;  // hard one-hot forward, relaxed gradient
  GumbelSchedule schedule;

  absl::Status Validate(const std::string& prefix) const;
};

struct GumbelOutput {
  torch::Tensor z_q;      // [B, D, H, W] mixed (or straight-through one-hot) code vectors
  torch::Tensor kl;       // scalar: mean over positions of KL(softmax(logits) || uniform)
  torch::Tensor indices;  // [B, H, W] int64, argmax of the logits
  torch::Tensor logits;   // [B, K, H, W]
};

class GumbelQuantizerImpl : public torch::nn::Module {
 public:
  explicit GumbelQuantizerImpl(const GumbelQuantizerConfig& config);

  // z: [B, D, H, W]. Draws the Gumbel noise from `generator` when given (tests), else from
  // LibTorch's default generator. Relaxed at `temperature` in training mode; in evaluation mode
  // z_q is the code of the argmax.
  GumbelOutput forward(const torch::Tensor& z, double temperature,
                       c10::optional<at::Generator> generator = c10::nullopt);

  // Argmax code indices [B, H, W] (no noise, no statistics).
  torch::Tensor Encode(const torch::Tensor& z);
  // Code vectors for indices [B, H, W] -> [B, D, H, W].
  torch::Tensor Lookup(const torch::Tensor& indices);

  // Argmax statistics since the last call; resets the window.
  CodeUsage TakeUsage();

  // Data parallel, as rank `rank` of `world_size`: training noise is drawn for the global batch
  // (world_size x B rows, from the same generator state on every rank) and this rank takes rows
  // rank, rank + world_size, ... (the data loader's shard order), so N ranks x batch b draw what
  // 1 rank x batch N b draws; TakeUsage sums the window's counts over the ranks with
  // `sum_counts` (a collective). world_size 1: the process's own batch.
  void SetDataParallel(int rank, int world_size, RankSum sum_counts);

  const GumbelQuantizerConfig& config() const { return config_; }

 private:
  GumbelQuantizerConfig config_;
  torch::nn::Conv2d proj_{nullptr};
  torch::nn::Embedding embed_{nullptr};
  torch::Tensor window_counts_;  // [K] argmax assignments in the current window
  int rank_ = 0, world_size_ = 1;
  RankSum sum_counts_;
};
TORCH_MODULE(GumbelQuantizer);

// KL(softmax(logits) || uniform over K) per position, logits [B, K, H, W] -> [B, H, W].
torch::Tensor KlToUniform(const torch::Tensor& logits);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_GUMBEL_QUANTIZER_H_
