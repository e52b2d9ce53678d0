// A perceptual extractor made of the BEiT trunk of a peco model: a pre-training model (BeitMim)
// or a fine-tuned classifier (BeitClassifier): the patch embedding, CLS token, position terms
// and blocks, without mask token use, final norm or head. The token sequences after the
// requested blocks are the features.
//
// The caller gives the normalisation the model was trained with (the pretrain job's
// transform.vit_mean / vit_std, the finetune job's input normalisation) and the provenance;
// tasks/perceptual_network.h builds one from a checkpoint. The model is shared (a LibTorch holder)
// and frozen here: eval mode (no drop path), no parameter requires gradients. Not thread-safe.
#ifndef PECO_TRAINER_LOSSES_BEIT_TRUNK_EXTRACTOR_H_
#define PECO_TRAINER_LOSSES_BEIT_TRUNK_EXTRACTOR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "trainer/losses/feature_extractor.h"
#include "trainer/models/beit_vit.h"

namespace peco::trainer {

class BeitTrunkExtractor : public PerceptualFeatureExtractor {
 public:
  // `mean` and `std` have 3 entries (RGB) or 1 (all channels); `model` must not be null.
  BeitTrunkExtractor(std::shared_ptr<BeitTrunkImpl> model, std::vector<double> mean,
                     std::vector<double> std, ExtractorSource source);

  std::vector<torch::Tensor> BlockOutputs(const torch::Tensor& images,
                                          const std::vector<int64_t>& blocks) override {
    return model_->BlockTokens(images, blocks);
  }
  int64_t depth() const override { return model_->config().depth; }
  torch::nn::Module& module() override { return *model_; }

 private:
  std::shared_ptr<BeitTrunkImpl> model_;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_BEIT_TRUNK_EXTRACTOR_H_
