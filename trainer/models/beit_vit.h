// The BEiT vision transformer: the MIM pre-training model and the fine-tuning classifier.
//
// BeitMim is `VisionTransformerForMaskedImageModeling` (BEiT's modeling_pretrain.py): patch
// embedding, mask token, CLS token, blocks, final norm, lm_head on masked positions.
// BeitClassifier is BEiT's fine-tuning `VisionTransformer` (modeling_finetune.py): the same trunk
// without mask token, mean pooling of patch tokens + fc_norm (or the CLS token after norm), head.
//
// Parameter and buffer names are the official ones, registered in the official order, so
// StateDictInOfficialOrder (beit_weights.h) lists exactly Python's state_dict:
//   cls_token [1,1,D], mask_token [1,1,D] (MIM only), pos_embed [1,1+N,D] (use_abs_pos_emb),
//   patch_embed.proj.{weight,bias}, rel_pos_bias.{relative_position_bias_table,
//   relative_position_index} (use_shared_rel_pos_bias), blocks.<i>.{gamma_1, gamma_2, norm1.*,
//   attn.q_bias, attn.v_bias, attn.relative_position_bias_table, attn.relative_position_index
//   (use_rel_pos_bias), attn.qkv.weight, attn.proj.*, norm2.*, mlp.fc1.*, mlp.fc2.*},
//   then MIM: norm.*, lm_head.*; classifier: norm.* (CLS pooling) or fc_norm.* (mean pooling),
//   head.* (num_classes > 0).
// The ViT-B/16 presets give shared/spec/keys/beit_base_patch16_224_8k_vocab_pretrain.txt and
// beit_base_patch16_224_finetune.txt exactly (tests/trainer/beit_vit_test.cc).
//
// Initialisation (the constructor, from the global LibTorch generator, or InitializeRandom(seed)
// from a private one): official. MIM: truncated normal (std init_std, cut at +-init_std, the
// pretrain file's bounds) for every Linear and Conv2d weight, cls_token, mask_token, pos_embed
// and lm_head; zero biases, q_bias, v_bias and relative position tables; LayerNorm 1 and 0;
// gamma = layer_scale_init_value; then blocks.<i>.attn.proj.weight and blocks.<i>.mlp.fc2.weight
// divided by sqrt(2 (i+1)). Classifier: the same but cut at +-2 absolute (timm's default bounds,
// i.e. effectively an untruncated normal), and head weight and bias multiplied by init_scale.
//
// Usage:
//   auto mim = CreateBeitMim(BeitSmallFashionMnistConfig());   // StatusOr<BeitMim>
//   torch::Tensor logits = (*mim)->forward(images, bool_masked_pos);  // [masked, vocab]
//   torch::Tensor loss = torch::cross_entropy(logits, token_ids.index({bool_masked_pos}));
//
// Errors: constructors and forward throw c10::Error on a config that fails Validate() or on
// mis-shaped inputs (programmer errors); CreateBeitMim / CreateBeitClassifier return
// InvalidArgument instead. Not thread-safe (LibTorch modules).
#ifndef PECO_TRAINER_MODELS_BEIT_VIT_H_
#define PECO_TRAINER_MODELS_BEIT_VIT_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_layers.h"
#include "trainer/models/fp32_norm.h"

namespace peco::trainer {

// What the MIM model and the classifier share: tokens, position terms and blocks. Not used on
// its own; the derived modules register their heads after it, as the official models do.
class BeitTrunkImpl : public torch::nn::Module {
 public:
  const BeitVitConfig& config() const { return config_; }

  // Returns the input tokens [B, 1+N, D] for images [B, C, H, W]: patch embeddings, masked ones
  // replaced by mask_token (when `bool_masked_pos` [B, N] is defined; the MIM model only), CLS
  // prepended, then pos_embed added (use_abs_pos_emb).
  torch::Tensor Embed(const torch::Tensor& images, const torch::Tensor& bool_masked_pos);

  // Returns the token sequence [B, 1+N, D] after the first `count` blocks (before any norm).
  torch::Tensor RunBlocks(torch::Tensor tokens, int64_t count);

  // Returns, for each block in `blocks` (counted from 1, in the order given), the token sequence
  // [B, 1+N, D] after it (before any norm) for unmasked `images`: perceptual-loss features. Runs
  // no deeper than the largest requested block. Every entry must be in [1, depth].
  std::vector<torch::Tensor> BlockTokens(const torch::Tensor& images,
                                         const std::vector<int64_t>& blocks);

  // Returns, for each block in `blocks` (counted from 1, in the order given), the mean of its
  // patch-token outputs [B, D] (CLS excluded, before any norm): linear-probe features. Runs no
  // deeper than the largest requested block. Every entry must be in [1, depth].
  std::vector<torch::Tensor> BlockFeatures(const torch::Tensor& images,
                                           const std::vector<int64_t>& blocks);

 protected:
  BeitTrunkImpl(const BeitVitConfig& config, bool with_mask_token);

  BeitVitConfig config_;
  torch::Tensor cls_token_, mask_token_, pos_embed_;  // mask_token_, pos_embed_ may be undefined
  torch::nn::Conv2d patch_proj_{nullptr};
  BeitRelativePositionBias rel_pos_bias_{nullptr};  // null without the shared bias
  torch::nn::ModuleList blocks_{nullptr};
};

class BeitMimImpl : public BeitTrunkImpl {
 public:
  explicit BeitMimImpl(const BeitVitConfig& config);

  // Returns lm_head logits [M, vocab_size] of the masked positions only, M = number of true
  // entries of `bool_masked_pos` [B, N] (bool), rows in row-major (sample, position) order.
  torch::Tensor forward(const torch::Tensor& images, const torch::Tensor& bool_masked_pos);

  // Returns lm_head logits [B, N, vocab_size] of every patch token (masked embeddings still
  // replaced by the mask token), the official return_all_tokens path.
  torch::Tensor AllTokenLogits(const torch::Tensor& images, const torch::Tensor& bool_masked_pos);

  // Returns the patch tokens [B, N, D] after the final norm.
  torch::Tensor PatchFeatures(const torch::Tensor& images, const torch::Tensor& bool_masked_pos);

  // Re-initialises every parameter as the constructor does, from a private generator seeded by
  // `seed` (the global generator is untouched). Parameters may live on any device.
  void InitializeRandom(uint64_t seed);

 private:
  Fp32LayerNorm norm_{nullptr};
  torch::nn::Linear lm_head_{nullptr};
};
TORCH_MODULE(BeitMim);

class BeitClassifierImpl : public BeitTrunkImpl {
 public:
  explicit BeitClassifierImpl(const BeitVitConfig& config);

  // Returns head logits [B, num_classes], or the pooled features [B, D] when num_classes == 0.
  torch::Tensor forward(const torch::Tensor& images);

  // Returns fc_norm(mean of the final patch tokens) (use_mean_pooling) or norm(CLS), [B, D].
  torch::Tensor PooledFeatures(const torch::Tensor& images);

  // As BeitMimImpl::InitializeRandom.
  void InitializeRandom(uint64_t seed);

 private:
  Fp32LayerNorm norm_{nullptr}, fc_norm_{nullptr};  // one of them, by use_mean_pooling
  torch::nn::Linear head_{nullptr};                 // null when num_classes == 0
};
TORCH_MODULE(BeitClassifier);

// Validates `config` and builds the model; InvalidArgument naming the field on a bad config.
absl::StatusOr<BeitMim> CreateBeitMim(const BeitVitConfig& config);
absl::StatusOr<BeitClassifier> CreateBeitClassifier(const BeitVitConfig& config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_BEIT_VIT_H_
