#include "trainer/models/vqgan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

namespace peco::trainer {
namespace {

namespace F = torch::nn::functional;

torch::Tensor Swish(const torch::Tensor& x) { return x * torch::sigmoid(x); }

torch::nn::Conv2d Conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

bool Contains(const std::vector<int64_t>& values, int64_t value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

absl::Status VqganConfig::Validate(const std::string& prefix) const {
  auto field = [&](absl::string_view name) { return absl::StrCat(prefix, name); };
  if (ch <= 0 || ch % 32 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        field("ch"), ": expected a positive multiple of 32 (GroupNorm has 32 groups), got ", ch));
  }
  if (ch_mult.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field("ch_mult"), ": expected at least one level"));
  }
  for (int64_t m : ch_mult) {
    if (m <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field("ch_mult"), ": expected positive multipliers, got ", m));
    }
  }
  if (ch_mult.size() > 8) {
    return absl::InvalidArgumentError(absl::StrCat(field("ch_mult"), ": at most 8 levels"));
  }
  if (resolution <= 0 || resolution % downsample_factor() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field("ch_mult"), ": ", ch_mult.size(), " levels downsample by ",
                     downsample_factor(), ", which does not divide the image size ", resolution));
  }
  if (num_res_blocks <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field("num_res_blocks"), ": expected a value > 0, got ", num_res_blocks));
  }
  if (z_channels <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field("z_channels"), ": expected a value > 0, got ", z_channels));
  }
  if (dropout < 0 || dropout >= 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(field("dropout"), ": expected a value in [0, 1), got ", dropout));
  }
  return absl::OkStatus();
}

Fp32GroupNorm MakeNormalize(int64_t channels) { return Fp32GroupNorm(32, channels, 1e-6); }

ResnetBlockImpl::ResnetBlockImpl(int64_t in_channels, int64_t out_channels, double dropout)
    : in_channels_(in_channels), out_channels_(out_channels) {
  norm1_ = register_module("norm1", MakeNormalize(in_channels));
  conv1_ = register_module("conv1", Conv(in_channels, out_channels, 3, 1, 1));
  norm2_ = register_module("norm2", MakeNormalize(out_channels));
  dropout_ = register_module("dropout", torch::nn::Dropout(dropout));
  conv2_ = register_module("conv2", Conv(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels) {
    nin_shortcut_ = register_module("nin_shortcut", Conv(in_channels, out_channels, 1, 1, 0));
  }
}

torch::Tensor ResnetBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv1_(Swish(norm1_(x)));
  h = conv2_(dropout_(Swish(norm2_(h))));
  torch::Tensor shortcut = nin_shortcut_ ? nin_shortcut_(x) : x;
  return shortcut + h;
}

AttnBlockImpl::AttnBlockImpl(int64_t channels) {
  norm_ = register_module("norm", MakeNormalize(channels));
  q_ = register_module("q", Conv(channels, channels, 1, 1, 0));
  k_ = register_module("k", Conv(channels, channels, 1, 1, 0));
  v_ = register_module("v", Conv(channels, channels, 1, 1, 0));
  proj_out_ = register_module("proj_out", Conv(channels, channels, 1, 1, 0));
}

torch::Tensor AttnBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = norm_(x);
  const int64_t b = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  torch::Tensor q = q_(h).reshape({b, c, height * width}).transpose(1, 2);  // [b, hw, c]
  torch::Tensor k = k_(h).reshape({b, c, height * width});                  // [b, c, hw]
  torch::Tensor v = v_(h).reshape({b, c, height * width});                  // [b, c, hw]
  torch::Tensor weights = torch::softmax(torch::bmm(q, k) * (1.0 / std::sqrt(double(c))), 2);
  torch::Tensor out = torch::bmm(v, weights.transpose(1, 2)).reshape({b, c, height, width});
  return x + proj_out_(out);
}

DownsampleImpl::DownsampleImpl(int64_t channels) {
  conv_ = register_module("conv", Conv(channels, channels, 3, 2, 0));
}

torch::Tensor DownsampleImpl::forward(const torch::Tensor& x) {
  return conv_(F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).mode(torch::kConstant).value(0)));
}

UpsampleImpl::UpsampleImpl(int64_t channels) {
  conv_ = register_module("conv", Conv(channels, channels, 3, 1, 1));
}

torch::Tensor UpsampleImpl::forward(const torch::Tensor& x) {
  torch::Tensor up = F::interpolate(x, F::InterpolateFuncOptions()
                                           .scale_factor(std::vector<double>{2.0, 2.0})
                                           .mode(torch::kNearest));
  return conv_(up);
}

VqganMidImpl::VqganMidImpl(int64_t channels, double dropout) {
  block_1_ = register_module("block_1", ResnetBlock(channels, channels, dropout));
  attn_1_ = register_module("attn_1", AttnBlock(channels));
  block_2_ = register_module("block_2", ResnetBlock(channels, channels, dropout));
}

torch::Tensor VqganMidImpl::forward(torch::Tensor x) { return block_2_(attn_1_(block_1_(x))); }

VqganEncoderImpl::VqganEncoderImpl(const VqganConfig& config) {
  const int64_t levels = static_cast<int64_t>(config.ch_mult.size());
  conv_in_ = register_module("conv_in", Conv(config.in_channels, config.ch, 3, 1, 1));
  torch::nn::ModuleList down;
  int64_t resolution = config.resolution;
  int64_t block_in = config.ch;
  for (int64_t level = 0; level < levels; ++level) {
    VqganLevel stage;
    stage->blocks = stage->register_module("block", torch::nn::ModuleList());
    stage->attns = stage->register_module("attn", torch::nn::ModuleList());
    const int64_t block_out = config.ch * config.ch_mult[level];
    for (int64_t i = 0; i < config.num_res_blocks; ++i) {
      stage->blocks->push_back(ResnetBlock(block_in, block_out, config.dropout));
      block_in = block_out;
      if (Contains(config.attn_resolutions, resolution))
        stage->attns->push_back(AttnBlock(block_in));
    }
    if (level != levels - 1) {
      stage->downsample = stage->register_module("downsample", Downsample(block_in));
      resolution /= 2;
    }
    down->push_back(stage);
    levels_.push_back(stage);
  }
  register_module("down", down);
  mid_ = register_module("mid", VqganMid(block_in, config.dropout));
  norm_out_ = register_module("norm_out", MakeNormalize(block_in));
  conv_out_ = register_module("conv_out", Conv(block_in, config.z_channels, 3, 1, 1));
}

torch::Tensor VqganEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in_(x);
  for (VqganLevel& level : levels_) {
    const size_t blocks = level->blocks->size();
    const bool attention = !level->attns->is_empty();
    for (size_t i = 0; i < blocks; ++i) {
      h = level->blocks[i]->as<ResnetBlock>()->forward(h);
      if (attention) h = level->attns[i]->as<AttnBlock>()->forward(h);
    }
    if (level->downsample) h = level->downsample(h);
  }
  h = mid_(h);
  return conv_out_(Swish(norm_out_(h)));
}

VqganDecoderImpl::VqganDecoderImpl(const VqganConfig& config) {
  const int64_t levels = static_cast<int64_t>(config.ch_mult.size());
  int64_t block_in = config.ch * config.ch_mult.back();
  int64_t resolution = config.resolution / config.downsample_factor();
  conv_in_ = register_module("conv_in", Conv(config.z_channels, block_in, 3, 1, 1));
  mid_ = register_module("mid", VqganMid(block_in, config.dropout));
  levels_.resize(levels);
  for (int64_t level = levels - 1; level >= 0; --level) {
    VqganLevel stage;
    stage->blocks = stage->register_module("block", torch::nn::ModuleList());
    stage->attns = stage->register_module("attn", torch::nn::ModuleList());
    const int64_t block_out = config.ch * config.ch_mult[level];
    for (int64_t i = 0; i < config.num_res_blocks + 1; ++i) {
      stage->blocks->push_back(ResnetBlock(block_in, block_out, config.dropout));
      block_in = block_out;
      if (Contains(config.attn_resolutions, resolution))
        stage->attns->push_back(AttnBlock(block_in));
    }
    if (level != 0) {
      stage->upsample = stage->register_module("upsample", Upsample(block_in));
      resolution *= 2;
    }
    levels_[level] = stage;
  }
  torch::nn::ModuleList up;
  for (VqganLevel& stage : levels_) up->push_back(stage);
  register_module("up", up);
  norm_out_ = register_module("norm_out", MakeNormalize(block_in));
  conv_out_ = register_module("conv_out", Conv(block_in, config.out_channels, 3, 1, 1));
}

torch::Tensor VqganDecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_(conv_in_(z));
  for (auto it = levels_.rbegin(); it != levels_.rend(); ++it) {
    VqganLevel& level = *it;
    const size_t blocks = level->blocks->size();
    const bool attention = !level->attns->is_empty();
    for (size_t i = 0; i < blocks; ++i) {
      h = level->blocks[i]->as<ResnetBlock>()->forward(h);
      if (attention) h = level->attns[i]->as<AttnBlock>()->forward(h);
    }
    if (level->upsample) h = level->upsample(h);
  }
  return conv_out_(Swish(norm_out_(h)));
}

}  // namespace peco::trainer
