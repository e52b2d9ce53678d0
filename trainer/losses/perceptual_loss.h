// PeCo's perceptual loss: distances between deep features of a frozen network.
//
// For images x and x_rec in [-1, 1]: both are mapped to [0, 1], normalised with the extractor's
// statistics (ImageNet's for a MoCo v3 ViT, the pre-training ViT view's for a peco BEiT trunk),
// resized bilinearly to the extractor's input size if needed, and passed through the frozen
// extractor (losses/feature_extractor.h); the token sequences after the configured blocks give
//   loss = sum_l w_l * mean((f_l(x_rec) - f_l(x))^2)                      (normalize: none)
//   loss = sum_l w_l * mean_tokens(sum_channels((u_l(x_rec) - u_l(x))^2))  (normalize: token)
// where u_l is f_l with each token's feature vector scaled to unit length (eps 1e-10), as LPIPS
// normalises each position's channels; a block's token term then lies in [0, 4] whatever the
// network's feature scale.
// Gradients flow to x_rec only; the extractor's parameters never require gradients, and the
// target branch runs without autograd.
//
// The loss owns its extractor. Create(config) builds the timm ViT one (weights from a MoCo v3
// release checkpoint or a timm-named state dict, or seeded random, which the caller must say
// plainly in its logs); Create(config, extractor) takes any extractor, e.g. the BEiT trunk of a
// peco contrastive or pre-training checkpoint (tasks/perceptual_network.h resolves `checkpoint`).
//
// Not thread-safe (owns a LibTorch module).
#ifndef PECO_TRAINER_LOSSES_PERCEPTUAL_LOSS_H_
#define PECO_TRAINER_LOSSES_PERCEPTUAL_LOSS_H_

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/losses/feature_extractor.h"
#include "trainer/models/timm_vit.h"

namespace peco::trainer {

struct PerceptualLossConfig {
  // The timm ViT's architecture; ignored when `checkpoint` is set (the checkpoint's config
  // gives the architecture).
  TimmVitConfig extractor;
  std::string weights_path;  // timm ViT weights; empty: seeded random extractor
  uint64_t random_seed = 0;  // used when weights_path and checkpoint are empty
  // A peco contrastive (MoCo v3 base encoder) or pretrain (BEiT trunk) checkpoint or run
  // directory that is the extractor. Mutually exclusive with weights_path.
  std::string checkpoint;
  std::vector<int64_t> blocks = {3, 6, 9, 12};  // counted from 1
  std::vector<double> layer_weights;            // empty: 1 for every block
  bool include_cls_token = true;
  std::string normalize = "none";  // none | token

  // Field errors as `prefix` + field name. With `checkpoint` set, blocks are checked only for
  // being >= 1 (the depth is the checkpoint's; CheckBlocks with it).
  absl::Status Validate(const std::string& prefix) const;
  // InvalidArgument naming `prefix`blocks when a block is outside [1, depth].
  absl::Status CheckBlocks(const std::string& prefix, int64_t depth,
                           const std::string& network) const;
};

class PerceptualLoss {
 public:
  // Builds the timm ViT extractor of `config` and loads its weights. Errors name the file and
  // key; InvalidArgument when `config.checkpoint` is set (use Create(config, extractor)).
  static absl::StatusOr<std::unique_ptr<PerceptualLoss>> Create(const PerceptualLossConfig& config);

  // Takes ownership of `extractor`; `config.blocks` are checked against its depth.
  static absl::StatusOr<std::unique_ptr<PerceptualLoss>> Create(
      const PerceptualLossConfig& config, std::unique_ptr<PerceptualFeatureExtractor> extractor);

  // Scalar loss; per-block terms (weighted) are written to `per_block` when given.
  torch::Tensor Compute(const torch::Tensor& reconstruction, const torch::Tensor& target,
                        std::vector<torch::Tensor>* per_block = nullptr);

  // Features of images in [-1, 1] after the configured blocks (CLS dropped unless
  // include_cls_token).
  std::vector<torch::Tensor> Features(const torch::Tensor& images);

  // Images in [-1, 1] as the extractor takes them: [0, 1], normalised, resized.
  torch::Tensor Prepare(const torch::Tensor& images) const;

  PerceptualFeatureExtractor& extractor() { return *extractor_; }
  // "file <path>", "random (seed N)" or "pretrain checkpoint <dir> (step N)", for logs.
  const std::string& source() const { return extractor_->source().description; }

 private:
  PerceptualLoss(const PerceptualLossConfig& config,
                 std::unique_ptr<PerceptualFeatureExtractor> extractor);

  PerceptualLossConfig config_;
  std::unique_ptr<PerceptualFeatureExtractor> extractor_;
  torch::Tensor mean_, std_;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_PERCEPTUAL_LOSS_H_
