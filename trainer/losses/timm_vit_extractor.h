// The perceptual extractor of the PeCo paper: a timm-named ViT as MoCo v3 trains it
// (models/timm_vit.h), fed ImageNet-normalised images.
//
// Weights come from a MoCo v3 release checkpoint (`state_dict` with `module.base_encoder.`
// keys) or a plain state dict of timm names; without a file the ViT is randomly initialised from
// a seed. Frozen (feature_extractor.h). Not thread-safe.
#ifndef PECO_TRAINER_LOSSES_TIMM_VIT_EXTRACTOR_H_
#define PECO_TRAINER_LOSSES_TIMM_VIT_EXTRACTOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/losses/feature_extractor.h"
#include "trainer/models/timm_vit.h"

namespace peco::trainer {

class TimmVitExtractor : public PerceptualFeatureExtractor {
 public:
  // Builds `config` (validated, errors name `extractor.` fields) with the weights of
  // `weights_path`, or random from `seed` when it is empty. Errors name the file and key.
  static absl::StatusOr<std::unique_ptr<TimmVitExtractor>> Create(const TimmVitConfig& config,
                                                                  const std::string& weights_path,
                                                                  uint64_t seed);

  // Wraps `vit`, already trained (e.g. the base encoder of a peco contrastive checkpoint), which
  // reads images as `input` says. Freezes it.
  static std::unique_ptr<TimmVitExtractor> FromTrained(TimmVit vit, ExtractorInput input,
                                                       ExtractorSource source);

  std::vector<torch::Tensor> BlockOutputs(const torch::Tensor& images,
                                          const std::vector<int64_t>& blocks) override {
    return vit_->BlockOutputs(images, blocks);
  }
  int64_t depth() const override { return vit_->config().depth; }
  torch::nn::Module& module() override { return *vit_; }

 private:
  TimmVitExtractor(TimmVit vit, ExtractorInput input, ExtractorSource source);

  TimmVit vit_;
};

// Loads ViT weights from a MoCo v3 release checkpoint or a timm-named state dict into `vit`.
absl::Status LoadTimmVitWeights(const std::string& path, TimmVit& vit);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_TIMM_VIT_EXTRACTOR_H_
