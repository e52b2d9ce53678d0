// A plain ViT with timm's parameter names, as MoCo v3 trains it (the perceptual network).
//
// Names: cls_token [1,1,D], pos_embed [1,N+1,D] (fixed 2-D sin-cos, zero CLS position, not
// trained), patch_embed.proj, blocks.<i>.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2},
// norm. LayerNorm eps 1e-6, GELU (erf), qkv with bias. MoCo v3 release checkpoints store these
// under `module.base_encoder.`.
//
// Not thread-safe (a LibTorch module).
#ifndef PECO_TRAINER_MODELS_TIMM_VIT_H_
#define PECO_TRAINER_MODELS_TIMM_VIT_H_

#include <torch/torch.h>

#include <vector>

#include "absl/status/status.h"
#include "trainer/models/fp32_norm.h"

namespace peco::trainer {

struct TimmVitConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_channels = 3;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  double ln_eps = 1e-6;

  int64_t grid() const { return img_size / patch_size; }
  absl::Status Validate(const std::string& prefix) const;
};

// The 2-D sin-cos position embedding of MoCo v3 ([1, 1 + grid^2, dim], CLS row zero).
torch::Tensor SinCosPositionEmbedding(int64_t grid, int64_t dim, double temperature = 10000.0);

class TimmAttentionImpl : public torch::nn::Module {
 public:
  TimmAttentionImpl(int64_t dim, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  int64_t num_heads_;
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr};
};
TORCH_MODULE(TimmAttention);

class TimmMlpImpl : public torch::nn::Module {
 public:
  TimmMlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TimmMlp);

class TimmBlockImpl : public torch::nn::Module {
 public:
  TimmBlockImpl(int64_t dim, int64_t num_heads, double mlp_ratio, double eps);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  Fp32LayerNorm norm1_{nullptr}, norm2_{nullptr};
  TimmAttention attn_{nullptr};
  TimmMlp mlp_{nullptr};
};
TORCH_MODULE(TimmBlock);

class TimmVitImpl : public torch::nn::Module {
 public:
  explicit TimmVitImpl(const TimmVitConfig& config);

  // Token sequences [B, 1+N, D] after each block in `blocks` (counted from 1), before the final
  // norm, in the order given. Runs only as deep as the largest requested block.
  std::vector<torch::Tensor> BlockOutputs(const torch::Tensor& x,
                                          const std::vector<int64_t>& blocks);

  // The CLS token after every block and the final norm [B, D] (the input of MoCo v3's heads and
  // the feature its evaluations read out).
  torch::Tensor ClsOutput(const torch::Tensor& x);

  // MoCo v3's initialisation (vits.py) from `seed`: qkv weights uniform with bound
  // sqrt(6 / (out / 3 + in)), other Linear weights xavier-uniform, zero biases, LayerNorms
  // (1, 0), CLS N(0, 1e-6), the patch projection uniform with bound
  // sqrt(6 / (in_channels * p^2 + dim)). Independent of the global RNG. Parameters under
  // `head.` (a head an owner registered on this module) are left as they are.
  void InitializeMocoV3(uint64_t seed);

  // Random initialisation from `seed` (timm-style: trunc-normal 0.02 linears, zero biases,
  // xavier-uniform patch projection), independent of the global RNG.
  void InitializeRandom(uint64_t seed);

  const TimmVitConfig& config() const { return config_; }

 private:
  TimmVitConfig config_;
  torch::Tensor cls_token_, pos_embed_;
  torch::nn::Conv2d patch_proj_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  Fp32LayerNorm norm_{nullptr};
};
TORCH_MODULE(TimmVit);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_TIMM_VIT_H_
