// The PeCo tokenizer: VQGAN encoder, quant_conv, vector quantizer, post_quant_conv, decoder.
//
// Submodule names are taming's `VQModel` ones (encoder., decoder., quantize.embedding.weight,
// quant_conv., post_quant_conv.), so named_parameters() is exactly the official key list
// (shared/spec/keys/vqgan_f16_8192_224.txt for the paper preset).
//
// Not thread-safe (a LibTorch module).
#ifndef PECO_TRAINER_MODELS_VQ_TOKENIZER_H_
#define PECO_TRAINER_MODELS_VQ_TOKENIZER_H_

#include <torch/torch.h>

#include "absl/status/status.h"
#include "trainer/models/gumbel_quantizer.h"
#include "trainer/models/vector_quantizer.h"
#include "trainer/models/vqgan.h"

namespace peco::trainer {

struct VqTokenizerConfig {
  VqganConfig vqgan;
  // "vq": nearest code, straight-through (VQGAN); "gumbel": Gumbel-softmax relaxation (dVAE).
  std::string quantizer_kind = "vq";
  VectorQuantizerConfig quantizer;  // num_codes and dim apply to both kinds
  GumbelQuantizerConfig gumbel;     // schedules of the gumbel kind

  bool gumbel_kind() const { return quantizer_kind == "gumbel"; }
  absl::Status Validate(const std::string& prefix) const;
};

struct TokenizerOutput {
  torch::Tensor reconstruction;  // [B, 3, R, R]
  torch::Tensor z;               // quant_conv output [B, D, r, r]
  QuantizerOutput quantized;
};

class VqTokenizerImpl : public torch::nn::Module {
 public:
  explicit VqTokenizerImpl(const VqTokenizerConfig& config);

  // Full autoencoder pass with straight-through quantization (vq), or the Gumbel relaxation at
  // the temperature of the step SetStep() gave (gumbel). For gumbel, quantized.loss is the KL
  // term already weighted: KlWeight(step) * mean KL per position * positions / input values,
  // DALL-E's per-pixel scaling.
  TokenizerOutput forward(const torch::Tensor& x);
  // Sets the schedules' step (gumbel; a no-op for vq).
  void SetStep(int64_t step) { step_ = step; }
  double temperature() const;  // the relaxation temperature at the current step (gumbel)
  double kl_weight() const;    // the KL weight at the current step (gumbel)
  // Code-usage statistics of the window since the last call (either kind).
  CodeUsage TakeUsage();

  // Data parallel, as rank `rank` of `world_size`: code counts (usage, dead codes) are summed
  // over the ranks with `sum_counts` (a collective, so every rank's training forwards and
  // TakeUsage calls must line up) and Gumbel noise is drawn for the global batch
  // (GumbelQuantizer::SetDataParallel). Call before training.
  void SetDataParallel(int rank, int world_size, RankSum sum_counts);
  // quant_conv(encoder(x)).
  torch::Tensor EncodeLatent(const torch::Tensor& x);
  // Token ids [B, r, r] for images in [-1, 1] (no gradients).
  torch::Tensor Tokenize(const torch::Tensor& x);
  // Images from token ids.
  torch::Tensor DecodeIndices(const torch::Tensor& indices);

  VqganDecoder& decoder() { return decoder_; }
  // The vq kind's quantizer (null for gumbel).
  VectorQuantizer& quantizer() { return quantize_; }
  const VqTokenizerConfig& config() const { return config_; }

 private:
  VqTokenizerConfig config_;
  VqganEncoder encoder_{nullptr};
  VqganDecoder decoder_{nullptr};
  VectorQuantizer quantize_{nullptr};  // vq kind
  GumbelQuantizer gumbel_{nullptr};    // gumbel kind; both are registered as "quantize"
  int64_t step_ = 0;
  torch::nn::Conv2d quant_conv_{nullptr};
  torch::nn::Conv2d post_quant_conv_{nullptr};
};
TORCH_MODULE(VqTokenizer);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_VQ_TOKENIZER_H_
