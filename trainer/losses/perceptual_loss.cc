#include "trainer/losses/perceptual_loss.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/losses/timm_vit_extractor.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {

absl::Status PerceptualLossConfig::Validate(const std::string& prefix) const {
  if (!checkpoint.empty() && !weights_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        prefix, "checkpoint and ", prefix,
        "weights are mutually exclusive: the perceptual network is either a peco pre-training "
        "checkpoint or a ViT weights file; set one of them"));
  }
  // The timm architecture matters only without a checkpoint (which brings its own).
  if (checkpoint.empty()) RETURN_IF_ERROR(extractor.Validate(absl::StrCat(prefix, "extractor.")));
  if (blocks.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "blocks: expected at least one block"));
  }
  if (checkpoint.empty()) {
    RETURN_IF_ERROR(CheckBlocks(prefix, extractor.depth, "the extractor's"));
  } else {
    for (int64_t b : blocks) {
      if (b < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(prefix, "blocks: block ", b, " is not a block number (counted from 1)"));
      }
    }
  }
  if (normalize != "none" && normalize != "token") {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "normalize: expected none or token, got '", normalize, "'"));
  }
  if (!layer_weights.empty() && layer_weights.size() != blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "layer_weights: expected ",
                                                   blocks.size(), " weights (one per block), got ",
                                                   layer_weights.size()));
  }
  for (double w : layer_weights) {
    if (w < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "layer_weights: expected >= 0, got ", w));
    }
  }
  return absl::OkStatus();
}

absl::Status PerceptualLossConfig::CheckBlocks(const std::string& prefix, int64_t depth,
                                               const std::string& network) const {
  for (int64_t b : blocks) {
    if (b < 1 || b > depth) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "blocks: block ", b, " is outside ", network, " depth 1..", depth));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PerceptualLoss>> PerceptualLoss::Create(
    const PerceptualLossConfig& config) {
  RETURN_IF_ERROR(config.Validate("loss.perceptual."));
  if (!config.checkpoint.empty()) {
    return absl::InvalidArgumentError(
        "loss.perceptual.checkpoint: a pre-training checkpoint is loaded by "
        "CreatePerceptualLoss (tasks/perceptual_network.h), not PerceptualLoss::Create(config)");
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<TimmVitExtractor> extractor,
      TimmVitExtractor::Create(config.extractor, config.weights_path, config.random_seed));
  return Create(config, std::move(extractor));
}

absl::StatusOr<std::unique_ptr<PerceptualLoss>> PerceptualLoss::Create(
    const PerceptualLossConfig& config, std::unique_ptr<PerceptualFeatureExtractor> extractor) {
  if (extractor == nullptr) return absl::InvalidArgumentError("perceptual extractor is null");
  RETURN_IF_ERROR(config.Validate("loss.perceptual."));
  RETURN_IF_ERROR(config.CheckBlocks(
      "loss.perceptual.", extractor->depth(),
      absl::StrCat("the perceptual network's (", extractor->source().description, ")")));
  if (extractor->input().mean.size() != 3 || extractor->input().std.size() != 3) {
    return absl::InvalidArgumentError("perceptual extractor: expected 3-channel mean and std");
  }
  return std::unique_ptr<PerceptualLoss>(new PerceptualLoss(config, std::move(extractor)));
}

PerceptualLoss::PerceptualLoss(const PerceptualLossConfig& config,
                               std::unique_ptr<PerceptualFeatureExtractor> extractor)
    : config_(config), extractor_(std::move(extractor)) {
  mean_ = torch::tensor(extractor_->input().mean, torch::kFloat32).view({1, 3, 1, 1});
  std_ = torch::tensor(extractor_->input().std, torch::kFloat32).view({1, 3, 1, 1});
}

torch::Tensor PerceptualLoss::Prepare(const torch::Tensor& images) const {
  torch::Tensor x = (images + 1.0) * 0.5;
  x = (x - mean_.to(x.device(), x.scalar_type())) / std_.to(x.device(), x.scalar_type());
  const int64_t size = extractor_->input().img_size;
  if (x.size(2) != size || x.size(3) != size) {
    namespace F = torch::nn::functional;
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{size, size})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  return x;
}

std::vector<torch::Tensor> PerceptualLoss::Features(const torch::Tensor& images) {
  std::vector<torch::Tensor> features = extractor_->BlockOutputs(Prepare(images), config_.blocks);
  if (!config_.include_cls_token) {
    for (auto& f : features) f = f.narrow(1, 1, f.size(1) - 1);
  }
  return features;
}

torch::Tensor PerceptualLoss::Compute(const torch::Tensor& reconstruction,
                                      const torch::Tensor& target,
                                      std::vector<torch::Tensor>* per_block) {
  std::vector<torch::Tensor> target_features;
  {
    torch::NoGradGuard no_grad;
    target_features = Features(target.detach());
  }
  std::vector<torch::Tensor> rec_features = Features(reconstruction);
  torch::Tensor total = torch::zeros({}, reconstruction.options().dtype(torch::kFloat32));
  if (per_block != nullptr) per_block->clear();
  for (size_t i = 0; i < rec_features.size(); ++i) {
    const double weight = config_.layer_weights.empty() ? 1.0 : config_.layer_weights[i];
    torch::Tensor rec = rec_features[i].to(torch::kFloat32);
    torch::Tensor tgt = target_features[i].to(torch::kFloat32);
    torch::Tensor term;
    if (config_.normalize == "token") {
      auto unit = [](const torch::Tensor& f) {
        return f / (f.pow(2).sum(-1, /*keepdim=*/true).sqrt() + 1e-10);
      };
      term = weight * (unit(rec) - unit(tgt)).pow(2).sum(-1).mean();
    } else {
      term = weight * torch::mean((rec - tgt).pow(2));
    }
    if (per_block != nullptr) per_block->push_back(term.detach());
    total = total + term;
  }
  return total;
}

}  // namespace peco::trainer
