// PeCo's perceptual loss: distances between deep features of a frozen self-supervised ViT.
//
// For images x and x_rec in [-1, 1]: both are mapped to [0, 1], normalised with ImageNet
// statistics, resized to the extractor's input size if needed, and passed through the frozen
// ViT; the token sequences after the configured blocks give
//   loss = sum_l w_l * mean((f_l(x_rec) - f_l(x))^2).
// Gradients flow to x_rec only; the extractor's parameters never require gradients, and the
// target branch runs without autograd.
//
// Weights come from a MoCo v3 release checkpoint (`state_dict` with `module.base_encoder.`
// keys) or a plain state dict of timm names; without weights the extractor is randomly
// initialised from a seed, which the caller must say plainly in its logs.
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
#include "trainer/models/timm_vit.h"

namespace peco::trainer {

struct PerceptualLossConfig {
  TimmVitConfig extractor;
  std::string weights_path;                     // empty: seeded random extractor
  uint64_t random_seed = 0;                     // used when weights_path is empty
  std::vector<int64_t> blocks = {3, 6, 9, 12};  // counted from 1
  std::vector<double> layer_weights;            // empty: 1 for every block
  bool include_cls_token = true;

  absl::Status Validate(const std::string& prefix) const;
};

class PerceptualLoss {
 public:
  // Builds the extractor and loads its weights. Errors name the file and key.
  static absl::StatusOr<std::unique_ptr<PerceptualLoss>> Create(const PerceptualLossConfig& config);

  // Scalar loss; per-block terms (weighted) are written to `per_block` when given.
  torch::Tensor Compute(const torch::Tensor& reconstruction, const torch::Tensor& target,
                        std::vector<torch::Tensor>* per_block = nullptr);

  // Features of images in [-1, 1] after the configured blocks.
  std::vector<torch::Tensor> Features(const torch::Tensor& images);

  TimmVit& extractor() { return extractor_; }
  // "file <path>" or "random (seed N)", for logs and metadata.
  const std::string& source() const { return source_; }

 private:
  PerceptualLoss(const PerceptualLossConfig& config, TimmVit extractor, std::string source);
  torch::Tensor Prepare(const torch::Tensor& images) const;

  PerceptualLossConfig config_;
  TimmVit extractor_;
  std::string source_;
  torch::Tensor mean_, std_;
};

// Loads ViT weights from a MoCo v3 release checkpoint or a timm-named state dict into `vit`.
absl::Status LoadTimmVitWeights(const std::string& path, TimmVit& vit);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_PERCEPTUAL_LOSS_H_
