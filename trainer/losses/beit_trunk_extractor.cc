#include "trainer/losses/beit_trunk_extractor.h"

#include <utility>
#include <vector>

namespace peco::trainer {

BeitTrunkExtractor::BeitTrunkExtractor(std::shared_ptr<BeitTrunkImpl> model,
                                       std::vector<double> mean, std::vector<double> std,
                                       ExtractorSource source)
    : PerceptualFeatureExtractor(
          MakeExtractorInput(model->config().img_size, std::move(mean), std::move(std)),
          std::move(source)),
      model_(std::move(model)) {
  Freeze(*model_);
}

}  // namespace peco::trainer
