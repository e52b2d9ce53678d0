#include "trainer/models/vq_tokenizer.h"

#include "common/status_macros.h"

namespace peco::trainer {

absl::Status VqTokenizerConfig::Validate(const std::string& prefix) const {
  RETURN_IF_ERROR(vqgan.Validate(prefix));
  return quantizer.Validate(prefix);
}

VqTokenizerImpl::VqTokenizerImpl(const VqTokenizerConfig& config) : config_(config) {
  encoder_ = register_module("encoder", VqganEncoder(config.vqgan));
  decoder_ = register_module("decoder", VqganDecoder(config.vqgan));
  quantize_ = register_module("quantize", VectorQuantizer(config.quantizer));
  quant_conv_ =
      register_module("quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                        config.vqgan.z_channels, config.quantizer.dim, 1)));
  post_quant_conv_ =
      register_module("post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                             config.quantizer.dim, config.vqgan.z_channels, 1)));
}

torch::Tensor VqTokenizerImpl::EncodeLatent(const torch::Tensor& x) {
  return quant_conv_(encoder_(x));
}

TokenizerOutput VqTokenizerImpl::forward(const torch::Tensor& x) {
  TokenizerOutput out;
  // The quantizer works in fp32 even under autocast: nearest-code ties and the codebook loss
  // must not depend on bf16 rounding.
  out.z = EncodeLatent(x).to(torch::kFloat32);
  out.quantized = quantize_(out.z);
  out.reconstruction = decoder_(post_quant_conv_(out.quantized.z_q));
  return out;
}

torch::Tensor VqTokenizerImpl::Tokenize(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  return quantize_->Encode(EncodeLatent(x));
}

torch::Tensor VqTokenizerImpl::DecodeIndices(const torch::Tensor& indices) {
  return decoder_(post_quant_conv_(quantize_->Lookup(indices)));
}

}  // namespace peco::trainer
