#include "trainer/models/beit_vit.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "trainer/models/fused_linear.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

// A sample of N(0, std^2) restricted to [a, b] by inverting the normal CDF of a uniform draw
// over [CDF(a), CDF(b)] (how timm's trunc_normal_ works), on the CPU in fp32.
torch::Tensor TruncNormal(at::IntArrayRef shape, double std, double a, double b,
                          at::Generator& generator) {
  auto cdf = [](double z) { return 0.5 * (1.0 + std::erf(z / std::sqrt(2.0))); };
  const double low = 2.0 * cdf(a / std) - 1.0, high = 2.0 * cdf(b / std) - 1.0;
  torch::Tensor t = torch::empty(shape, torch::kFloat32).uniform_(low, high, generator);
  return t.erfinv_().mul_(std * std::sqrt(2.0)).clamp_(a, b);
}

enum class InitRecipe {
  kPretrain,  // modeling_pretrain.py: cut at +-std, conv weights truncated normal too
  kFinetune,  // modeling_finetune.py: cut at +-2, conv keeps PyTorch's default, head scaled
};

// The official initialisation of either model (see the header), drawing from `seed`'s own
// generator or, without a seed, from the global one.
void InitializeBeit(torch::nn::Module& model, const BeitVitConfig& config, InitRecipe recipe,
                    std::optional<uint64_t> seed) {
  torch::NoGradGuard no_grad;
  at::Generator generator = seed.has_value() ? at::detail::createCPUGenerator(*seed)
                                             : at::detail::getDefaultCPUGenerator();
  const double std = config.init_std;
  const double bound = recipe == InitRecipe::kPretrain ? std : 2.0;
  auto set = [](torch::Tensor& p, const torch::Tensor& value) { p.copy_(value); };
  auto trunc = [&](torch::Tensor& p) {
    set(p, TruncNormal(p.sizes(), std, -bound, bound, generator));
  };
  // PyTorch's Conv2d default (kaiming_uniform with a = sqrt(5), and its bias rule): both
  // uniform in +-1/sqrt(fan_in).
  const double conv_bound =
      1.0 / std::sqrt(static_cast<double>(config.in_chans * config.patch_size * config.patch_size));
  auto conv_default = [&](torch::Tensor& p) {
    set(p, torch::empty(p.sizes(), torch::kFloat32).uniform_(-conv_bound, conv_bound, generator));
  };
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    const bool conv = absl::StartsWith(name, "patch_embed.");
    if (conv && recipe == InitRecipe::kFinetune) {
      conv_default(p);
    } else if (name == "cls_token" || name == "mask_token" || name == "pos_embed") {
      trunc(p);
    } else if (absl::EndsWith(name, "gamma_1") || absl::EndsWith(name, "gamma_2")) {
      p.fill_(config.layer_scale_init_value);
    } else if (absl::EndsWith(name, "bias") || absl::EndsWith(name, "bias_table")) {
      p.zero_();  // Linear/Conv/LayerNorm biases, q_bias, v_bias, relative position tables
    } else if (absl::EndsWith(name, "norm.weight") || absl::EndsWith(name, "norm1.weight") ||
               absl::EndsWith(name, "norm2.weight")) {
      p.fill_(1.0);  // norm, fc_norm, norm1, norm2
    } else {
      trunc(p);  // Linear weights (qkv, proj, fc1, fc2, lm_head, head) and the pretrain conv
    }
  }
  // fix_init_weight: the residual-branch outputs of block i shrink by sqrt(2 (i + 1)).
  auto params = model.named_parameters();
  for (int64_t i = 0; i < config.depth; ++i) {
    const double scale = std::sqrt(2.0 * static_cast<double>(i + 1));
    for (const char* leaf : {"attn.proj.weight", "mlp.fc2.weight"}) {
      params[absl::StrCat("blocks.", i, ".", leaf)].div_(scale);
    }
  }
  if (recipe == InitRecipe::kFinetune && params.contains("head.weight")) {
    params["head.weight"].mul_(config.init_scale);
    params["head.bias"].mul_(config.init_scale);
  }
}

void CheckConfig(const BeitVitConfig& config) {
  absl::Status status = config.Validate();
  TORCH_CHECK(status.ok(), "invalid BEiT config: ", std::string(status.message()));
}

}  // namespace

BeitTrunkImpl::BeitTrunkImpl(const BeitVitConfig& config, bool with_mask_token) : config_(config) {
  CheckConfig(config);
  const int64_t dim = config.embed_dim;
  cls_token_ = register_parameter("cls_token", torch::zeros({1, 1, dim}));
  if (with_mask_token) mask_token_ = register_parameter("mask_token", torch::zeros({1, 1, dim}));
  if (config.use_abs_pos_emb) {
    pos_embed_ = register_parameter("pos_embed", torch::zeros({1, config.num_patches() + 1, dim}));
  }
  auto patch_embed = std::make_shared<torch::nn::Module>();
  patch_proj_ = patch_embed->register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(config.in_chans, dim, config.patch_size)
                                    .stride(config.patch_size)));
  register_module("patch_embed", patch_embed);
  if (config.use_shared_rel_pos_bias) {
    rel_pos_bias_ =
        register_module("rel_pos_bias", BeitRelativePositionBias(config.grid(), config.num_heads));
  }
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.depth; ++i) {
    BeitBlockOptions block;
    block.dim = dim;
    block.num_heads = config.num_heads;
    block.mlp_ratio = config.mlp_ratio;
    block.qkv_bias = config.qkv_bias;
    // torch.linspace(0, drop_path_rate, depth)[i]
    block.drop_path = config.depth > 1 ? config.drop_path_rate * static_cast<double>(i) /
                                             static_cast<double>(config.depth - 1)
                                       : 0.0;
    block.layer_scale_init_value = config.layer_scale_init_value;
    block.norm_eps = config.norm_eps;
    block.own_bias_grid = config.use_rel_pos_bias ? config.grid() : 0;
    blocks_->push_back(BeitBlock(block));
  }
}

torch::Tensor BeitTrunkImpl::Embed(const torch::Tensor& images,
                                   const torch::Tensor& bool_masked_pos) {
  torch::Tensor x = patch_proj_(images).flatten(2).transpose(1, 2);  // [B, N, D]
  const int64_t batch = x.size(0);
  if (bool_masked_pos.defined()) {
    TORCH_CHECK(mask_token_.defined(), "this BEiT model has no mask token");
    TORCH_CHECK(bool_masked_pos.dim() == 2 && bool_masked_pos.size(0) == batch &&
                    bool_masked_pos.size(1) == x.size(1),
                "bool_masked_pos: expected [", batch, ", ", x.size(1), "], got ",
                bool_masked_pos.sizes());
    // x (1 - w) + mask_token w, before CLS and any position term, as the official model does.
    torch::Tensor w = bool_masked_pos.unsqueeze(-1).to(mask_token_.scalar_type());
    x = x * (1 - w) + mask_token_ * w;
  }
  x = torch::cat({cls_token_.expand({batch, -1, -1}).to(x.scalar_type()), x}, 1);
  if (pos_embed_.defined()) x = x + pos_embed_;
  return x;
}

torch::Tensor BeitTrunkImpl::RunBlocks(torch::Tensor tokens, int64_t count) {
  torch::Tensor shared = rel_pos_bias_.is_empty() ? torch::Tensor() : rel_pos_bias_->forward();
  for (int64_t i = 0; i < count; ++i) tokens = blocks_[i]->as<BeitBlock>()->forward(tokens, shared);
  return tokens;
}

std::vector<torch::Tensor> BeitTrunkImpl::BlockTokens(const torch::Tensor& images,
                                                      const std::vector<int64_t>& blocks) {
  for (int64_t b : blocks) {
    TORCH_CHECK(b >= 1 && b <= config_.depth, "block ", b, " is not in [1, ", config_.depth, "]");
  }
  const int64_t deepest = blocks.empty() ? 0 : *std::max_element(blocks.begin(), blocks.end());
  std::vector<bool> wanted(deepest + 1, false);
  for (int64_t b : blocks) wanted[b] = true;
  torch::Tensor shared = rel_pos_bias_.is_empty() ? torch::Tensor() : rel_pos_bias_->forward();
  torch::Tensor h = Embed(images, torch::Tensor());
  std::vector<torch::Tensor> after(deepest + 1);
  for (int64_t i = 0; i < deepest; ++i) {
    h = blocks_[i]->as<BeitBlock>()->forward(h, shared);
    if (wanted[i + 1]) after[i + 1] = h;
  }
  std::vector<torch::Tensor> out;
  out.reserve(blocks.size());
  for (int64_t b : blocks) out.push_back(after[b]);
  return out;
}

std::vector<torch::Tensor> BeitTrunkImpl::BlockFeatures(const torch::Tensor& images,
                                                        const std::vector<int64_t>& blocks) {
  std::vector<torch::Tensor> out = BlockTokens(images, blocks);
  for (torch::Tensor& tokens : out) tokens = tokens.slice(1, 1).mean(1);
  return out;
}

BeitMimImpl::BeitMimImpl(const BeitVitConfig& config)
    : BeitTrunkImpl(config, /*with_mask_token=*/true) {
  norm_ = register_module("norm", Fp32LayerNorm(config.embed_dim, config.norm_eps));
  lm_head_ = register_module("lm_head", torch::nn::Linear(config.embed_dim, config.vocab_size));
  InitializeBeit(*this, config_, InitRecipe::kPretrain, std::nullopt);
}

torch::Tensor BeitMimImpl::PatchFeatures(const torch::Tensor& images,
                                         const torch::Tensor& bool_masked_pos) {
  return norm_(RunBlocks(Embed(images, bool_masked_pos), config_.depth)).slice(1, 1);
}

torch::Tensor BeitMimImpl::forward(const torch::Tensor& images,
                                   const torch::Tensor& bool_masked_pos) {
  TORCH_CHECK(bool_masked_pos.defined() && bool_masked_pos.scalar_type() == torch::kBool,
              "bool_masked_pos: expected a bool tensor [B, N]");
  return FusedLinear(lm_head_, PatchFeatures(images, bool_masked_pos).index({bool_masked_pos}));
}

torch::Tensor BeitMimImpl::AllTokenLogits(const torch::Tensor& images,
                                          const torch::Tensor& bool_masked_pos) {
  return FusedLinear(lm_head_, PatchFeatures(images, bool_masked_pos));
}

void BeitMimImpl::InitializeRandom(uint64_t seed) {
  InitializeBeit(*this, config_, InitRecipe::kPretrain, seed);
}

BeitClassifierImpl::BeitClassifierImpl(const BeitVitConfig& config)
    : BeitTrunkImpl(config, /*with_mask_token=*/false) {
  if (config.use_mean_pooling) {
    fc_norm_ = register_module("fc_norm", Fp32LayerNorm(config.embed_dim, config.norm_eps));
  } else {
    norm_ = register_module("norm", Fp32LayerNorm(config.embed_dim, config.norm_eps));
  }
  if (config.num_classes > 0) {
    head_ = register_module("head", torch::nn::Linear(config.embed_dim, config.num_classes));
  }
  InitializeBeit(*this, config_, InitRecipe::kFinetune, std::nullopt);
}

torch::Tensor BeitClassifierImpl::PooledFeatures(const torch::Tensor& images) {
  torch::Tensor h = RunBlocks(Embed(images, torch::Tensor()), config_.depth);
  if (config_.use_mean_pooling) return fc_norm_(h.slice(1, 1).mean(1));
  return norm_(h.select(1, 0));
}

torch::Tensor BeitClassifierImpl::forward(const torch::Tensor& images) {
  torch::Tensor pooled = PooledFeatures(images);
  return head_.is_empty() ? pooled : FusedLinear(head_, pooled);
}

void BeitClassifierImpl::InitializeRandom(uint64_t seed) {
  InitializeBeit(*this, config_, InitRecipe::kFinetune, seed);
}

absl::StatusOr<BeitMim> CreateBeitMim(const BeitVitConfig& config) {
  absl::Status status = config.Validate();
  if (!status.ok()) return status;
  return TorchCall("building the BEiT MIM model", [&] { return BeitMim(config); });
}

absl::StatusOr<BeitClassifier> CreateBeitClassifier(const BeitVitConfig& config) {
  absl::Status status = config.Validate();
  if (!status.ok()) return status;
  return TorchCall("building the BEiT classifier", [&] { return BeitClassifier(config); });
}

}  // namespace peco::trainer
