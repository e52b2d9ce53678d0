// The building blocks of the BEiT vision transformer, with the official parameter names.
//
//   BeitRelativePositionBias  relative_position_bias_table [(2W-1)(2H-1)+3, heads] (zeros),
//                             relative_position_index [1+N, 1+N] (int64 buffer, saved in the
//                             state dict as the official code does).
//   BeitAttention             q_bias, v_bias [D] (zeros; the k bias is fixed at zero), optional
//                             relative_position_bias_table / relative_position_index of its own,
//                             qkv (Linear D -> 3D without bias), proj (Linear D -> D).
//   BeitMlp                   fc1, GELU (erf), fc2.
//   BeitBlock                 gamma_1, gamma_2 (LayerScale, when enabled), norm1, attn, norm2,
//                             mlp; pre-norm: x += DropPath(gamma_1 * attn(norm1(x))), then the same
//                             with mlp, norm2 and gamma_2.
//
// NOTE [BEiT relative position index] For a W x H patch grid and tokens [CLS, patches in
// row-major order], the bias of query i on key j is table[index[i][j]] with, for patches
// i = (hi, wi) and j = (hj, wj), index = (hi - hj + H - 1) * (2W - 1) + (wi - wj + W - 1); CLS as
// query (row 0) uses entry R - 3, CLS as key (column 0) uses R - 2, and CLS on CLS uses R - 1,
// where R = (2H-1)(2W-1)+3. This is the official layout, so official tables and indexes load
// as they are. Peco uses square grids only (H = W).
//
// LayerNorms compute in fp32 (Fp32LayerNorm) so that bf16 autocast works on CPU.
// Not thread-safe (LibTorch modules). Shapes are preconditions (CHECK-level, LibTorch throws).
#ifndef PECO_TRAINER_MODELS_BEIT_LAYERS_H_
#define PECO_TRAINER_MODELS_BEIT_LAYERS_H_

#include <torch/torch.h>

#include <cstdint>

#include "trainer/models/fp32_norm.h"

namespace peco::trainer {

// Returns the number of table entries for a grid x grid patch layout: (2g-1)^2 + 3.
int64_t BeitNumRelativeDistance(int64_t grid);

// Returns the official relative_position_index [1+g*g, 1+g*g] (int64) for a g x g grid; see
// NOTE [BEiT relative position index].
torch::Tensor BeitRelativePositionIndex(int64_t grid);

// Returns x with whole samples dropped with probability `drop_prob` and the kept ones scaled by
// 1/(1-drop_prob) (stochastic depth; one draw per sample from the global generator). Identity
// when not training or drop_prob == 0.
torch::Tensor DropPath(const torch::Tensor& x, double drop_prob, bool training);

// The shared relative position bias of BEiT pre-training (`rel_pos_bias`).
class BeitRelativePositionBiasImpl : public torch::nn::Module {
 public:
  BeitRelativePositionBiasImpl(int64_t grid, int64_t num_heads);
  // Returns the bias [heads, 1+N, 1+N] that every block adds to its attention logits.
  torch::Tensor forward();

 private:
  int64_t tokens_;
  torch::Tensor table_, index_;
};
TORCH_MODULE(BeitRelativePositionBias);

class BeitAttentionImpl : public torch::nn::Module {
 public:
  // `own_bias_grid` > 0 gives the block its own relative position bias for that grid (BEiT
  // fine-tuning); 0 gives none.
  BeitAttentionImpl(int64_t dim, int64_t num_heads, bool qkv_bias, int64_t own_bias_grid);
  // x [B, T, D]; `shared_bias` [heads, T, T] or undefined. Returns [B, T, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& shared_bias);

 private:
  int64_t num_heads_;
  torch::Tensor q_bias_, v_bias_;  // undefined without qkv_bias
  torch::Tensor table_, index_;    // undefined without an own bias
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(BeitAttention);

class BeitMlpImpl : public torch::nn::Module {
 public:
  BeitMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(BeitMlp);

struct BeitBlockOptions {
  int64_t dim = 768;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double drop_path = 0.0;
  double layer_scale_init_value = 0.1;  // 0: no gamma_1/gamma_2
  double norm_eps = 1e-6;
  int64_t own_bias_grid = 0;  // see BeitAttentionImpl
};

class BeitBlockImpl : public torch::nn::Module {
 public:
  explicit BeitBlockImpl(const BeitBlockOptions& options);
  // x [B, T, D]; `shared_bias` as for BeitAttention.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& shared_bias);

 private:
  double drop_path_;
  torch::Tensor gamma_1_, gamma_2_;  // undefined without LayerScale
  Fp32LayerNorm norm1_{nullptr}, norm2_{nullptr};
  BeitAttention attn_{nullptr};
  BeitMlp mlp_{nullptr};
};
TORCH_MODULE(BeitBlock);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_BEIT_LAYERS_H_
