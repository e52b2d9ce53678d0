#include "trainer/models/timm_vit.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "trainer/models/fused_linear.h"

namespace peco::trainer {

absl::Status TimmVitConfig::Validate(const std::string& prefix) const {
  if (patch_size <= 0 || img_size <= 0 || img_size % patch_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "patch_size: expected a divisor of img_size ", img_size, ", got ", patch_size));
  }
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "num_heads: expected a divisor of embed_dim ", embed_dim, ", got ", num_heads));
  }
  if (embed_dim % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "embed_dim: expected a multiple of 4 (2-D sin-cos embedding), got ", embed_dim));
  }
  if (depth <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "depth: expected > 0, got ", depth));
  }
  if (mlp_ratio <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "mlp_ratio: expected > 0, got ", mlp_ratio));
  }
  return absl::OkStatus();
}

torch::Tensor SinCosPositionEmbedding(int64_t grid, int64_t dim, double temperature) {
  const int64_t quarter = dim / 4;
  torch::Tensor coords = torch::arange(grid, torch::kFloat32);
  // torch.meshgrid(grid_w, grid_h) with 'ij' indexing: the first output varies along rows.
  std::vector<torch::Tensor> mesh = torch::meshgrid({coords, coords}, "ij");
  torch::Tensor omega = torch::arange(quarter, torch::kFloat32) / static_cast<double>(quarter);
  omega = 1.0 / torch::pow(temperature, omega);
  torch::Tensor out_w = torch::outer(mesh[0].flatten(), omega);
  torch::Tensor out_h = torch::outer(mesh[1].flatten(), omega);
  torch::Tensor pos =
      torch::cat({torch::sin(out_w), torch::cos(out_w), torch::sin(out_h), torch::cos(out_h)}, 1);
  return torch::cat({torch::zeros({1, dim}), pos}, 0).unsqueeze(0);
}

TimmAttentionImpl::TimmAttentionImpl(int64_t dim, int64_t num_heads) : num_heads_(num_heads) {
  qkv_ =
      register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(true)));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor TimmAttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), n = x.size(1), c = x.size(2);
  const int64_t head_dim = c / num_heads_;
  torch::Tensor qkv = qkv_(x).reshape({b, n, 3, num_heads_, head_dim}).permute({2, 0, 3, 1, 4});
  torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  torch::Tensor attn =
      torch::softmax(torch::matmul(q, k.transpose(-2, -1)) * std::pow(head_dim, -0.5), -1);
  torch::Tensor out = torch::matmul(attn, v).transpose(1, 2).reshape({b, n, c});
  return FusedLinear(proj_, out);
}

TimmMlpImpl::TimmMlpImpl(int64_t dim, int64_t hidden) {
  fc1_ = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor TimmMlpImpl::forward(const torch::Tensor& x) {
  return FusedLinear(fc2_, torch::gelu(FusedLinear(fc1_, x)));
}

TimmBlockImpl::TimmBlockImpl(int64_t dim, int64_t num_heads, double mlp_ratio, double eps) {
  norm1_ = register_module("norm1", Fp32LayerNorm(dim, eps));
  attn_ = register_module("attn", TimmAttention(dim, num_heads));
  norm2_ = register_module("norm2", Fp32LayerNorm(dim, eps));
  mlp_ = register_module("mlp", TimmMlp(dim, static_cast<int64_t>(dim * mlp_ratio)));
}

torch::Tensor TimmBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = x + attn_(norm1_(x));
  return h + mlp_(norm2_(h));
}

TimmVitImpl::TimmVitImpl(const TimmVitConfig& config) : config_(config) {
  const int64_t dim = config.embed_dim;
  cls_token_ = register_parameter("cls_token", torch::zeros({1, 1, dim}));
  pos_embed_ = register_parameter("pos_embed", SinCosPositionEmbedding(config.grid(), dim),
                                  /*requires_grad=*/false);
  auto patch = std::make_shared<torch::nn::Module>();
  patch_proj_ = patch->register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.in_channels, dim, config.patch_size)
                                    .stride(config.patch_size)));
  register_module("patch_embed", patch);
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth; ++i) {
    blocks_->push_back(TimmBlock(dim, config.num_heads, config.mlp_ratio, config.ln_eps));
  }
  norm_ = register_module("norm", Fp32LayerNorm(dim, config.ln_eps));
}

std::vector<torch::Tensor> TimmVitImpl::BlockOutputs(const torch::Tensor& x,
                                                     const std::vector<int64_t>& blocks) {
  const int64_t deepest = blocks.empty() ? 0 : *std::max_element(blocks.begin(), blocks.end());
  torch::Tensor h = patch_proj_(x).flatten(2).transpose(1, 2);  // [B, N, D]
  h = torch::cat({cls_token_.expand({h.size(0), -1, -1}).to(h.scalar_type()), h}, 1) +
      pos_embed_.to(h.scalar_type());
  std::vector<torch::Tensor> by_depth(deepest + 1);
  for (int64_t i = 0; i < deepest; ++i) {
    h = blocks_[i]->as<TimmBlock>()->forward(h);
    by_depth[i + 1] = h;
  }
  std::vector<torch::Tensor> out;
  out.reserve(blocks.size());
  for (int64_t b : blocks) out.push_back(by_depth[b]);
  return out;
}

torch::Tensor TimmVitImpl::ClsOutput(const torch::Tensor& x) {
  torch::Tensor h = BlockOutputs(x, {config_.depth})[0];
  return norm_(h.select(1, 0));
}

void TimmVitImpl::InitializeMocoV3(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  auto uniform = [&](torch::Tensor t, double bound) { t.uniform_(-bound, bound, generator); };
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    // The fixed embedding, and a head registered by an owner (MoCo v3's projector), keep theirs.
    if (name == "pos_embed" || name.rfind("head.", 0) == 0) continue;
    if (name == "cls_token") {
      p.normal_(0.0, 1e-6, generator);
    } else if (name.find("norm") != std::string::npos) {
      if (is_bias) {
        p.zero_();
      } else {
        p.fill_(1.0);
      }
    } else if (is_bias) {
      p.zero_();
    } else if (name == "patch_embed.proj.weight") {
      const double fan = static_cast<double>(p.size(1) * p.size(2) * p.size(3) + p.size(0));
      uniform(p, std::sqrt(6.0 / fan));
    } else if (name.find("qkv") != std::string::npos) {
      uniform(p, std::sqrt(6.0 / static_cast<double>(p.size(0) / 3 + p.size(1))));
    } else {  // xavier_uniform_ of a Linear weight [out, in]
      uniform(p, std::sqrt(6.0 / static_cast<double>(p.size(0) + p.size(1))));
    }
  }
}

void TimmVitImpl::InitializeRandom(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  auto trunc_normal = [&](torch::Tensor t, double std) {
    // Resample until inside +-2 std (timm's trunc_normal_ bounds), elementwise.
    torch::Tensor sample = torch::empty_like(t).normal_(0.0, std, generator);
    for (int iteration = 0; iteration < 100; ++iteration) {
      torch::Tensor outside = sample.abs() > 2 * std;
      if (!outside.any().item<bool>()) break;
      torch::Tensor fresh = torch::empty_like(t).normal_(0.0, std, generator);
      sample = torch::where(outside, fresh, sample);
    }
    t.copy_(sample);
  };
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor p = item.value();
    if (name == "pos_embed") continue;
    if (name == "cls_token") {
      p.normal_(0.0, 1e-6, generator);
    } else if (name.find("norm") != std::string::npos) {
      if (name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0)
        p.fill_(1.0);
      else
        p.zero_();
    } else if (name.compare(name.size() - 4, 4, "bias") == 0) {
      p.zero_();
    } else if (name == "patch_embed.proj.weight") {
      const double fan = static_cast<double>(p.size(1) * p.size(2) * p.size(3) + p.size(0));
      const double bound = std::sqrt(6.0 / fan);
      p.uniform_(-bound, bound, generator);
    } else {
      trunc_normal(p, 0.02);
    }
  }
}

}  // namespace peco::trainer
