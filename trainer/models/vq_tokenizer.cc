#include "trainer/models/vq_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {

absl::Status VqTokenizerConfig::Validate(const std::string& prefix) const {
  RETURN_IF_ERROR(vqgan.Validate(prefix));
  if (quantizer_kind != "vq" && quantizer_kind != "gumbel") {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "quantizer: expected vq or gumbel, got '", quantizer_kind, "'"));
  }
  RETURN_IF_ERROR(quantizer.Validate(prefix));
  if (gumbel_kind()) {
    if (quantizer.dead_code_steps > 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "dead_code_steps: dead-code restarts are for quantizer: vq"));
    }
    return gumbel.Validate(prefix);
  }
  return absl::OkStatus();
}

VqTokenizerImpl::VqTokenizerImpl(const VqTokenizerConfig& config) : config_(config) {
  encoder_ = register_module("encoder", VqganEncoder(config.vqgan));
  decoder_ = register_module("decoder", VqganDecoder(config.vqgan));
  if (config.gumbel_kind()) {
    gumbel_ = register_module("quantize", GumbelQuantizer(config.gumbel));
  } else {
    quantize_ = register_module("quantize", VectorQuantizer(config.quantizer));
  }
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

double VqTokenizerImpl::temperature() const { return config_.gumbel.schedule.Temperature(step_); }

double VqTokenizerImpl::kl_weight() const { return config_.gumbel.schedule.KlWeight(step_); }

TokenizerOutput VqTokenizerImpl::forward(const torch::Tensor& x) {
  TokenizerOutput out;
  // The quantizer works in fp32 even under autocast: nearest-code ties and the codebook loss
  // must not depend on bf16 rounding.
  out.z = EncodeLatent(x).to(torch::kFloat32);
  if (gumbel_) {
    GumbelOutput g = gumbel_->forward(out.z, temperature());
    // DALL-E divides its loss by the number of input values: per position, the KL weighs
    // positions / (pixels * channels) as much as the mean pixel loss.
    const double scale = static_cast<double>(out.z.size(2) * out.z.size(3)) /
                         static_cast<double>(x.size(1) * x.size(2) * x.size(3));
    out.quantized = {g.z_q, g.kl * (kl_weight() * scale), g.indices};
  } else {
    out.quantized = quantize_(out.z);
  }
  out.reconstruction = decoder_(post_quant_conv_(out.quantized.z_q));
  return out;
}

void VqTokenizerImpl::SetDataParallel(int rank, int world_size, RankSum sum_counts) {
  if (gumbel_) {
    gumbel_->SetDataParallel(rank, world_size, std::move(sum_counts));
  } else {
    quantize_->SetCountSum(std::move(sum_counts));
  }
}

CodeUsage VqTokenizerImpl::TakeUsage() {
  return gumbel_ ? gumbel_->TakeUsage() : quantize_->TakeUsage();
}

torch::Tensor VqTokenizerImpl::Tokenize(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  torch::Tensor z = EncodeLatent(x);
  return gumbel_ ? gumbel_->Encode(z) : quantize_->Encode(z);
}

torch::Tensor VqTokenizerImpl::DecodeIndices(const torch::Tensor& indices) {
  return decoder_(
      post_quant_conv_(gumbel_ ? gumbel_->Lookup(indices) : quantize_->Lookup(indices)));
}

}  // namespace peco::trainer
