#include "trainer/losses/timm_vit_extractor.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/io/torch_file.h"
#include "trainer/models/weights.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr char kMocoPrefix[] = "module.base_encoder.";

ExtractorInput ImageNetInput(int64_t img_size) {
  ExtractorInput input;  // ImageNet statistics by default
  input.img_size = img_size;
  return input;
}

}  // namespace

absl::Status LoadTimmVitWeights(const std::string& path, TimmVit& vit) {
  ASSIGN_OR_RETURN(c10::IValue file, ReadTorchFile(path));
  c10::IValue dict = file;
  // MoCo v3 release format wraps the weights in 'state_dict'; peco and timm files may not.
  if (file.isGenericDict()) {
    for (const char* key : {"state_dict", "model"}) {
      if (file.toGenericDict().contains(c10::IValue(std::string(key)))) {
        ASSIGN_OR_RETURN(dict, DictGet(file, key, path));
        break;
      }
    }
  }
  ASSIGN_OR_RETURN(NamedTensors all, ToNamedTensors(dict, path));
  NamedTensors selected = SelectPrefix(all, kMocoPrefix);
  if (selected.empty()) selected = all;
  return TorchCall(path, [&] { return LoadNamedTensors(*vit, selected, path, /*strict=*/false); });
}

TimmVitExtractor::TimmVitExtractor(TimmVit vit, ExtractorInput input, ExtractorSource source)
    : PerceptualFeatureExtractor(std::move(input), std::move(source)), vit_(std::move(vit)) {
  Freeze(*vit_);
}

std::unique_ptr<TimmVitExtractor> TimmVitExtractor::FromTrained(TimmVit vit, ExtractorInput input,
                                                                ExtractorSource source) {
  return std::unique_ptr<TimmVitExtractor>(
      new TimmVitExtractor(std::move(vit), std::move(input), std::move(source)));
}

absl::StatusOr<std::unique_ptr<TimmVitExtractor>> TimmVitExtractor::Create(
    const TimmVitConfig& config, const std::string& weights_path, uint64_t seed) {
  RETURN_IF_ERROR(config.Validate("extractor."));
  ASSIGN_OR_RETURN(TimmVit vit, TorchCall("perceptual extractor", [&] { return TimmVit(config); }));
  ExtractorSource source;
  if (weights_path.empty()) {
    RETURN_IF_ERROR(TorchCall("perceptual extractor", [&] { vit->InitializeRandom(seed); }));
    source.description = absl::StrCat("random (seed ", seed, ")");
  } else {
    RETURN_IF_ERROR(LoadTimmVitWeights(weights_path, vit));
    source.description = absl::StrCat("file ", weights_path);
    source.path = weights_path;
  }
  const int64_t img_size = vit->config().img_size;
  return std::unique_ptr<TimmVitExtractor>(
      new TimmVitExtractor(std::move(vit), ImageNetInput(img_size), std::move(source)));
}

}  // namespace peco::trainer
