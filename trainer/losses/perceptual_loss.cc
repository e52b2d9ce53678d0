#include "trainer/losses/perceptual_loss.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/io/torch_file.h"
#include "trainer/models/weights.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr char kMocoPrefix[] = "module.base_encoder.";

}  // namespace

absl::Status PerceptualLossConfig::Validate(const std::string& prefix) const {
  RETURN_IF_ERROR(extractor.Validate(absl::StrCat(prefix, "extractor.")));
  if (blocks.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "blocks: expected at least one block"));
  }
  for (int64_t b : blocks) {
    if (b < 1 || b > extractor.depth) {
      return absl::InvalidArgumentError(absl::StrCat(
          prefix, "blocks: block ", b, " is outside the extractor's depth 1..", extractor.depth));
    }
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

absl::StatusOr<std::unique_ptr<PerceptualLoss>> PerceptualLoss::Create(
    const PerceptualLossConfig& config) {
  RETURN_IF_ERROR(config.Validate("loss.perceptual."));
  ASSIGN_OR_RETURN(TimmVit vit,
                   TorchCall("perceptual extractor", [&] { return TimmVit(config.extractor); }));
  std::string source;
  if (config.weights_path.empty()) {
    RETURN_IF_ERROR(
        TorchCall("perceptual extractor", [&] { vit->InitializeRandom(config.random_seed); }));
    source = absl::StrCat("random (seed ", config.random_seed, ")");
  } else {
    RETURN_IF_ERROR(LoadTimmVitWeights(config.weights_path, vit));
    source = absl::StrCat("file ", config.weights_path);
  }
  vit->eval();
  for (auto& p : vit->parameters()) p.set_requires_grad(false);
  return std::unique_ptr<PerceptualLoss>(
      new PerceptualLoss(config, std::move(vit), std::move(source)));
}

PerceptualLoss::PerceptualLoss(const PerceptualLossConfig& config, TimmVit extractor,
                               std::string source)
    : config_(config), extractor_(std::move(extractor)), source_(std::move(source)) {
  mean_ = torch::tensor({0.485, 0.456, 0.406}, torch::kFloat32).view({1, 3, 1, 1});
  std_ = torch::tensor({0.229, 0.224, 0.225}, torch::kFloat32).view({1, 3, 1, 1});
}

torch::Tensor PerceptualLoss::Prepare(const torch::Tensor& images) const {
  torch::Tensor x = (images + 1.0) * 0.5;
  x = (x - mean_.to(x.device(), x.scalar_type())) / std_.to(x.device(), x.scalar_type());
  const int64_t size = config_.extractor.img_size;
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
    torch::Tensor term =
        weight *
        torch::mean(
            (rec_features[i].to(torch::kFloat32) - target_features[i].to(torch::kFloat32)).pow(2));
    if (per_block != nullptr) per_block->push_back(term.detach());
    total = total + term;
  }
  return total;
}

}  // namespace peco::trainer
