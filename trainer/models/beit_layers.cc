#include "trainer/models/beit_layers.h"

#include <cmath>

#include "trainer/models/fused_linear.h"

namespace peco::trainer {
namespace {

// table [R, heads] gathered by index [T, T] into the additive bias [heads, T, T].
torch::Tensor GatherBias(const torch::Tensor& table, const torch::Tensor& index) {
  const int64_t tokens = index.size(0);
  return table.index_select(0, index.reshape({-1}))
      .reshape({tokens, tokens, -1})
      .permute({2, 0, 1})
      .contiguous();
}

}  // namespace

int64_t BeitNumRelativeDistance(int64_t grid) { return (2 * grid - 1) * (2 * grid - 1) + 3; }

torch::Tensor BeitRelativePositionIndex(int64_t grid) {
  const int64_t patches = grid * grid;
  const int64_t entries = BeitNumRelativeDistance(grid);
  torch::Tensor pos = torch::arange(patches, torch::kInt64);
  torch::Tensor row = pos.div(grid, "floor"), col = pos.remainder(grid);
  torch::Tensor dh = row.unsqueeze(1) - row.unsqueeze(0) + (grid - 1);
  torch::Tensor dw = col.unsqueeze(1) - col.unsqueeze(0) + (grid - 1);
  torch::Tensor index = torch::empty({patches + 1, patches + 1}, torch::kInt64);
  index.slice(0, 1).slice(1, 1).copy_(dh * (2 * grid - 1) + dw);
  index[0].fill_(entries - 3);
  index.select(1, 0).fill_(entries - 2);
  index[0][0].fill_(entries - 1);
  return index;
}

torch::Tensor DropPath(const torch::Tensor& x, double drop_prob, bool training) {
  if (!training || drop_prob == 0.0) return x;
  const double keep = 1.0 - drop_prob;
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  torch::Tensor keep_mask = (torch::rand(shape, x.options()) + keep).floor_();
  return x.div(keep) * keep_mask;
}

BeitRelativePositionBiasImpl::BeitRelativePositionBiasImpl(int64_t grid, int64_t num_heads)
    : tokens_(grid * grid + 1) {
  table_ = register_parameter("relative_position_bias_table",
                              torch::zeros({BeitNumRelativeDistance(grid), num_heads}));
  index_ = register_buffer("relative_position_index", BeitRelativePositionIndex(grid));
}

torch::Tensor BeitRelativePositionBiasImpl::forward() { return GatherBias(table_, index_); }

BeitAttentionImpl::BeitAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias,
                                     int64_t own_bias_grid)
    : num_heads_(num_heads) {
  if (qkv_bias) {
    q_bias_ = register_parameter("q_bias", torch::zeros({dim}));
    v_bias_ = register_parameter("v_bias", torch::zeros({dim}));
  }
  if (own_bias_grid > 0) {
    table_ = register_parameter("relative_position_bias_table",
                                torch::zeros({BeitNumRelativeDistance(own_bias_grid), num_heads}));
    index_ = register_buffer("relative_position_index", BeitRelativePositionIndex(own_bias_grid));
  }
  qkv_ =
      register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(false)));
  proj_ = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor BeitAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& shared_bias) {
  const int64_t b = x.size(0), t = x.size(1), c = x.size(2);
  const int64_t head_dim = c / num_heads_;
  torch::Tensor bias;
  if (q_bias_.defined()) bias = torch::cat({q_bias_, torch::zeros_like(v_bias_), v_bias_});
  torch::Tensor qkv = torch::linear(x, qkv_->weight, bias)
                          .reshape({b, t, 3, num_heads_, head_dim})
                          .permute({2, 0, 3, 1, 4});
  torch::Tensor q = qkv[0] * std::pow(static_cast<double>(head_dim), -0.5);
  torch::Tensor attn = torch::matmul(q, qkv[1].transpose(-2, -1));  // [B, heads, T, T]
  if (table_.defined()) attn = attn + GatherBias(table_, index_).unsqueeze(0);
  if (shared_bias.defined()) attn = attn + shared_bias.unsqueeze(0);
  attn = torch::softmax(attn, -1);
  torch::Tensor out = torch::matmul(attn, qkv[2]).transpose(1, 2).reshape({b, t, c});
  return FusedLinear(proj_, out);
}

BeitMlpImpl::BeitMlpImpl(int64_t dim, int64_t hidden) {
  fc1_ = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor BeitMlpImpl::forward(const torch::Tensor& x) {
  return FusedLinear(fc2_, torch::gelu(FusedLinear(fc1_, x)));
}

BeitBlockImpl::BeitBlockImpl(const BeitBlockOptions& o) : drop_path_(o.drop_path) {
  // Parameters before submodules, as the official state_dict lists them.
  if (o.layer_scale_init_value > 0) {
    gamma_1_ = register_parameter("gamma_1", torch::full({o.dim}, o.layer_scale_init_value));
    gamma_2_ = register_parameter("gamma_2", torch::full({o.dim}, o.layer_scale_init_value));
  }
  norm1_ = register_module("norm1", Fp32LayerNorm(o.dim, o.norm_eps));
  attn_ = register_module("attn", BeitAttention(o.dim, o.num_heads, o.qkv_bias, o.own_bias_grid));
  norm2_ = register_module("norm2", Fp32LayerNorm(o.dim, o.norm_eps));
  mlp_ = register_module("mlp", BeitMlp(o.dim, static_cast<int64_t>(o.dim * o.mlp_ratio)));
}

torch::Tensor BeitBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& shared_bias) {
  torch::Tensor a = attn_(norm1_(x), shared_bias);
  if (gamma_1_.defined()) a = gamma_1_ * a;
  torch::Tensor h = x + DropPath(a, drop_path_, is_training());
  torch::Tensor m = mlp_(norm2_(h));
  if (gamma_2_.defined()) m = gamma_2_ * m;
  return h + DropPath(m, drop_path_, is_training());
}

}  // namespace peco::trainer
