// Hyperparameters of the BEiT vision transformer (MIM pre-training and fine-tuning) and presets.
//
// One struct serves both heads: the MIM model reads vocab_size, the classifier reads
// num_classes, use_mean_pooling and init_scale. Field meanings follow the official BEiT code
// (shared/research/peco_method.md §2.1, §3.1); `layer_scale_init_value` is its `init_values`.
//
// Position terms, any combination (the official switches):
//   use_abs_pos_emb          a learned pos_embed [1, 1+N, D] (off in BEiT).
//   use_shared_rel_pos_bias  one rel_pos_bias module used by every block (BEiT pre-training).
//   use_rel_pos_bias         a relative position bias per block (BEiT fine-tuning).
//
// A value type; thread-compatible.
#ifndef PECO_TRAINER_MODELS_BEIT_CONFIG_H_
#define PECO_TRAINER_MODELS_BEIT_CONFIG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace peco::trainer {

struct BeitVitConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t embed_dim = 768;
  int64_t depth = 12;
  int64_t num_heads = 12;
  double mlp_ratio = 4.0;
  // q_bias and v_bias vectors next to a bias-free qkv (the k bias is always zero).
  bool qkv_bias = true;
  // DropPath rates rise linearly from 0 (block 0) to this (last block).
  double drop_path_rate = 0.1;
  // LayerScale gamma_1/gamma_2 start at this value; 0 disables LayerScale (no gamma parameters).
  double layer_scale_init_value = 0.1;
  bool use_abs_pos_emb = false;
  bool use_shared_rel_pos_bias = true;
  bool use_rel_pos_bias = false;
  // Truncated-normal std of linear and conv weights, tokens and heads.
  double init_std = 0.02;
  double norm_eps = 1e-6;

  // MIM head (lm_head): the tokenizer's codebook size.
  int64_t vocab_size = 8192;

  // Classifier: classes of `head` (0: no head, forward returns the pooled features); mean
  // pooling of patch tokens + fc_norm (true) or the CLS token after `norm` (false); the head's
  // weight and bias are multiplied by init_scale after initialisation.
  int64_t num_classes = 1000;
  bool use_mean_pooling = true;
  double init_scale = 0.001;

  // Patches per side and in all.
  int64_t grid() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }

  // InvalidArgument naming the first bad field, as `prefix` + field name.
  absl::Status Validate(absl::string_view prefix = "") const;
};

// BEiT-base MIM at 224 with 8192 codes, as in the paper (`beit_base_patch16_224_8k_vocab`):
// 768 wide, 12 blocks, 12 heads, LayerScale 0.1, shared relative position bias, drop path 0.1.
// About 92M parameters with lm_head (86M without).
BeitVitConfig BeitBasePatch16Config();

// BEiT-large MIM at 224 with 8192 codes: 1024 wide, 24 blocks, 16 heads, LayerScale 1e-5.
BeitVitConfig BeitLargePatch16Config();

// The fine-tuning form of a pre-training config (`beit_base_patch16_224` from
// `beit_base_patch16_224_8k_vocab`): a relative position bias per block instead of the shared
// one, mean pooling with fc_norm, `num_classes` classes.
BeitVitConfig FinetuneConfigFrom(const BeitVitConfig& pretrain, int64_t num_classes);

// A small preset for Fashion-MNIST on a few CPU cores (peco's choice, not from the paper):
// 32x32 RGB input (greyscale replicated), patch 4 (an 8x8 grid, matching the f4 tokenizer of
// configs/tokenizer_small.yaml), 512 codes, 192 wide, 6 blocks, 3 heads (head dim 64), MLP 4x,
// LayerScale 0.1, shared relative position bias, drop path 0.1. About 2.8M parameters.
BeitVitConfig BeitSmallFashionMnistConfig();

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_BEIT_CONFIG_H_
