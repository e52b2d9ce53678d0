// AdamW parameter groups for the BEiT models: which parameters get weight decay, and the
// layer-wise learning-rate decay of fine-tuning (BEiT's optim_factory.py).
//
// Weight decay: none for 1-D parameters (every bias, LayerNorm, LayerScale gamma, q_bias,
// v_bias), names ending in ".bias", and the official `no_weight_decay()` list of both BEiT
// models, which is {pos_embed, cls_token}. mask_token [1,1,D] and the relative position tables
// (2-D) ARE decayed, as in the official code (shared/research/peco_method.md §2.5).
//
// Layer ids (get_num_layer_for_vit, depth + 2 ids): cls_token, mask_token, pos_embed and
// patch_embed.* -> 0; blocks.<i>.* -> i + 1; everything else (rel_pos_bias, norm, fc_norm,
// lm_head, head) -> depth + 1. The learning-rate scale of id l is decay^(depth + 1 - l).
//
// Thread-compatible; the groups share the module's parameter tensors.
#ifndef PECO_TRAINER_MODELS_BEIT_OPTIM_H_
#define PECO_TRAINER_MODELS_BEIT_OPTIM_H_

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace peco::trainer {

// Returns the layer id of parameter `name` of a BEiT model of `depth` blocks (see above).
int64_t BeitLayerId(absl::string_view name, int64_t depth);

// Returns true when parameter `name` of shape `sizes` is excluded from weight decay.
bool BeitSkipsWeightDecay(absl::string_view name, at::IntArrayRef sizes);

struct BeitParamGroup {
  // "decay" / "no_decay", or "layer_<id>_decay" / "layer_<id>_no_decay" with layer decay.
  std::string name;
  double weight_decay = 0.0;
  // Multiplies the scheduled learning rate of this group (1 without layer decay).
  double lr_scale = 1.0;
  std::vector<std::string> param_names;
  std::vector<torch::Tensor> params;
};

// Returns the groups of the trainable parameters (requires_grad) of `model`, a BEiT model with
// `depth` blocks, in order of first appearance in named_parameters(). Without `layer_decay`
// (pre-training) there are at most two groups; with it, one pair per layer id.
std::vector<BeitParamGroup> BeitParamGroups(const torch::nn::Module& model, int64_t depth,
                                            double weight_decay, std::optional<double> layer_decay);

// Returns torch::optim param groups for AdamW, in the same order: `base` with this group's
// weight_decay and lr = base.lr() * lr_scale. A schedule that sets the learning rate each step
// must multiply by groups[i].lr_scale itself.
std::vector<torch::optim::OptimizerParamGroup> ToAdamWParamGroups(
    const std::vector<BeitParamGroup>& groups, const torch::optim::AdamWOptions& base);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_BEIT_OPTIM_H_
