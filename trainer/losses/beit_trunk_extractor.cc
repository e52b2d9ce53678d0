#include "trainer/losses/beit_trunk_extractor.h"

#include <utility>
#include <vector>

namespace peco::trainer {
namespace {

// One value stands for all three channels, as in the pretrain config.
std::vector<double> PerChannel(std::vector<double> v) {
  if (v.size() == 1) v.assign(3, v[0]);
  return v;
}

ExtractorInput BeitInput(const BeitVitConfig& config, std::vector<double> mean,
                         std::vector<double> std) {
  ExtractorInput input;
  input.img_size = config.img_size;
  input.mean = PerChannel(std::move(mean));
  input.std = PerChannel(std::move(std));
  return input;
}

}  // namespace

BeitTrunkExtractor::BeitTrunkExtractor(BeitMim model, std::vector<double> mean,
                                       std::vector<double> std, ExtractorSource source)
    : PerceptualFeatureExtractor(BeitInput(model->config(), std::move(mean), std::move(std)),
                                 std::move(source)),
      model_(std::move(model)) {
  Freeze(*model_);
}

}  // namespace peco::trainer
