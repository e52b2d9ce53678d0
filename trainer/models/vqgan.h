// The VQGAN encoder and decoder (the convolutional halves of a PeCo tokenizer).
//
// Architecture and parameter names follow taming-transformers' `Encoder`/`Decoder`
// (peco_method.md section 1.3) so that state dicts round-trip with the official `VQModel`
// names: `conv_in`, `down.<level>.block.<i>`, `down.<level>.attn.<i>`, `down.<level>.downsample`,
// `mid.block_1`, `mid.attn_1`, `mid.block_2`, `norm_out`, `conv_out`, and in the decoder
// `up.<level>.block.<i>`, `up.<level>.upsample` with level 0 at the highest resolution.
//
// Modules are LibTorch modules: not thread-safe; one thread runs forward/backward at a time.
// Construction throws c10::Error on an invalid config; call VqganConfig::Validate() first.
#ifndef PECO_TRAINER_MODELS_VQGAN_H_
#define PECO_TRAINER_MODELS_VQGAN_H_

#include <torch/torch.h>

#include <vector>

#include "absl/status/status.h"
#include "trainer/models/fp32_norm.h"

namespace peco::trainer {

// taming's `ddconfig`.
struct VqganConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t resolution = 256;
  int64_t ch = 128;
  std::vector<int64_t> ch_mult = {1, 1, 2, 2, 4};
  int64_t num_res_blocks = 2;
  std::vector<int64_t> attn_resolutions = {16};
  int64_t z_channels = 256;
  double dropout = 0.0;

  // Downsampling factor 2^(levels-1).
  int64_t downsample_factor() const { return int64_t{1} << (ch_mult.size() - 1); }
  // Side of the latent grid.
  int64_t latent_side() const { return resolution / downsample_factor(); }

  // InvalidArgument naming `prefix`.field: channels that GroupNorm(32) cannot split, an image
  // size not divisible by the downsampling factor, and so on.
  absl::Status Validate(const std::string& prefix) const;
};

// GroupNorm(32, eps 1e-6, affine), as taming's Normalize (computed in fp32).
Fp32GroupNorm MakeNormalize(int64_t channels);

class ResnetBlockImpl : public torch::nn::Module {
 public:
  ResnetBlockImpl(int64_t in_channels, int64_t out_channels, double dropout);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t in_channels_, out_channels_;
  Fp32GroupNorm norm1_{nullptr}, norm2_{nullptr};
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, nin_shortcut_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};
TORCH_MODULE(ResnetBlock);

// Single-head spatial self-attention with 1x1 q/k/v/proj_out convolutions and a residual.
class AttnBlockImpl : public torch::nn::Module {
 public:
  explicit AttnBlockImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Fp32GroupNorm norm_{nullptr};
  torch::nn::Conv2d q_{nullptr}, k_{nullptr}, v_{nullptr}, proj_out_{nullptr};
};
TORCH_MODULE(AttnBlock);

// Zero-pad right and bottom by one, then 3x3 stride-2 convolution without padding.
class DownsampleImpl : public torch::nn::Module {
 public:
  explicit DownsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Downsample);

// Nearest x2 upsampling, then 3x3 convolution.
class UpsampleImpl : public torch::nn::Module {
 public:
  explicit UpsampleImpl(int64_t channels);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Upsample);

// One resolution level: res blocks, optional attention after each, optional resampler.
class VqganLevelImpl : public torch::nn::Module {
 public:
  VqganLevelImpl() = default;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::ModuleList attns{nullptr};
  Downsample downsample{nullptr};
  Upsample upsample{nullptr};
};
TORCH_MODULE(VqganLevel);

// Mid section: ResnetBlock, AttnBlock, ResnetBlock.
class VqganMidImpl : public torch::nn::Module {
 public:
  VqganMidImpl(int64_t channels, double dropout);
  torch::Tensor forward(torch::Tensor x);

 private:
  ResnetBlock block_1_{nullptr};
  AttnBlock attn_1_{nullptr};
  ResnetBlock block_2_{nullptr};
};
TORCH_MODULE(VqganMid);

class VqganEncoderImpl : public torch::nn::Module {
 public:
  explicit VqganEncoderImpl(const VqganConfig& config);
  // [B, in_channels, R, R] -> [B, z_channels, R/f, R/f].
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Conv2d conv_in_{nullptr};
  std::vector<VqganLevel> levels_;
  VqganMid mid_{nullptr};
  Fp32GroupNorm norm_out_{nullptr};
  torch::nn::Conv2d conv_out_{nullptr};
};
TORCH_MODULE(VqganEncoder);

class VqganDecoderImpl : public torch::nn::Module {
 public:
  explicit VqganDecoderImpl(const VqganConfig& config);
  // [B, z_channels, r, r] -> [B, out_channels, r*f, r*f].
  torch::Tensor forward(const torch::Tensor& z);
  // The last convolution's weight (VQGAN's adaptive GAN weight is measured on it).
  torch::Tensor last_layer_weight() const { return conv_out_->weight; }

 private:
  torch::nn::Conv2d conv_in_{nullptr};
  VqganMid mid_{nullptr};
  std::vector<VqganLevel> levels_;  // index = level, 0 at the highest resolution
  Fp32GroupNorm norm_out_{nullptr};
  torch::nn::Conv2d conv_out_{nullptr};
};
TORCH_MODULE(VqganDecoder);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_VQGAN_H_
