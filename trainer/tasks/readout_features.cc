#include "trainer/tasks/readout_features.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

class Pixels : public FeatureBackbone {
 public:
  std::vector<torch::Tensor> Features(const torch::Tensor& images) override {
    return {images.reshape({images.size(0), -1}).to(torch::kFloat32)};
  }
  std::vector<std::string> names() const override { return {"pixels"}; }
};

class Beit : public FeatureBackbone {
 public:
  Beit(BeitClassifier model, std::vector<int64_t> blocks, FeaturePooling pooling)
      : model_(std::move(model)), blocks_(std::move(blocks)), pooling_(pooling) {
    model_->eval();
  }
  std::vector<torch::Tensor> Features(const torch::Tensor& images) override {
    std::vector<torch::Tensor> out = model_->BlockTokens(images, blocks_);
    for (torch::Tensor& tokens : out) tokens = PoolTokens(tokens, pooling_).to(torch::kFloat32);
    return out;
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> names;
    for (int64_t block : blocks_) names.push_back(absl::StrCat("block ", block));
    return names;
  }

 private:
  BeitClassifier model_;
  std::vector<int64_t> blocks_;
  FeaturePooling pooling_;
};

}  // namespace

absl::StatusOr<FeaturePooling> ParseFeaturePooling(const std::string& name,
                                                   const std::string& field) {
  if (name == "cls") return FeaturePooling::kCls;
  if (name == "mean") return FeaturePooling::kMean;
  if (name == "cls+mean") return FeaturePooling::kClsAndMean;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected cls, mean or cls+mean, got '", name, "'"));
}

torch::Tensor PoolTokens(const torch::Tensor& tokens, FeaturePooling pooling) {
  const torch::Tensor cls = tokens.select(1, 0);
  const torch::Tensor mean = tokens.slice(1, 1).mean(1);
  switch (pooling) {
    case FeaturePooling::kCls:
      return cls;
    case FeaturePooling::kMean:
      return mean;
    case FeaturePooling::kClsAndMean:
      return torch::cat({cls, mean}, 1);
  }
  return mean;
}

std::unique_ptr<FeatureBackbone> PixelBackbone() { return std::make_unique<Pixels>(); }

absl::StatusOr<std::unique_ptr<FeatureBackbone>> BeitBackbone(BeitClassifier model,
                                                              std::vector<int64_t> blocks,
                                                              FeaturePooling pooling) {
  const int64_t depth = model->config().depth;
  if (blocks.empty()) {
    return absl::InvalidArgumentError("readout.blocks: expected at least one block");
  }
  for (int64_t block : blocks) {
    if (block < 1 || block > depth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "readout.blocks: block ", block, " is not in [1, ", depth, "] (the backbone's depth)"));
    }
  }
  return std::unique_ptr<FeatureBackbone>(
      std::make_unique<Beit>(std::move(model), std::move(blocks), pooling));
}

absl::StatusOr<FeatureSet> ExtractFeatures(FeatureBackbone& backbone, const Dataset& dataset,
                                           const std::vector<int64_t>& indices,
                                           const TransformOptions& view, int64_t batch_size,
                                           torch::Device device,
                                           const std::function<void(int64_t)>& on_batch) {
  if (view.output_sizes.empty()) {
    return absl::InvalidArgumentError("readout view: expected an output size");
  }
  if (batch_size < 1) return absl::InvalidArgumentError("eval.batch_size: expected > 0");
  FeatureSet set;
  std::vector<std::vector<torch::Tensor>> parts;
  std::vector<int64_t> labels;
  absl::Status first_error;
  for (size_t begin = 0; begin < indices.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(indices.size(), begin + static_cast<size_t>(batch_size));
    std::vector<torch::Tensor> images;
    for (size_t i = begin; i < end; ++i) {
      absl::StatusOr<Example> example = dataset.Get(indices[i]);
      if (!example.ok()) {
        if (first_error.ok()) first_error = example.status();
        ++set.unreadable;
        continue;
      }
      std::mt19937_64 unused(0);  // an evaluation view draws nothing
      images.push_back(ApplyTransform(example->image, view, unused)[0]);
      labels.push_back(example->label);
    }
    if (images.empty()) continue;
    absl::Status status = TorchCall("computing readout features", [&] {
      torch::NoGradGuard no_grad;
      std::vector<torch::Tensor> features = backbone.Features(torch::stack(images).to(device));
      if (parts.empty()) parts.resize(features.size());
      for (size_t f = 0; f < features.size(); ++f) parts[f].push_back(features[f].cpu());
    });
    if (!status.ok()) return status;
    if (on_batch) on_batch(static_cast<int64_t>(labels.size()));
  }
  if (labels.empty()) {
    return absl::Status(first_error.ok() ? absl::StatusCode::kInvalidArgument : first_error.code(),
                        absl::StrCat("no image of ", dataset.name(), " could be read",
                                     first_error.ok() ? "" : ": ", first_error.message()));
  }
  for (std::vector<torch::Tensor>& part : parts) set.features.push_back(torch::cat(part));
  set.labels = torch::tensor(labels, torch::kInt64);
  return set;
}

}  // namespace peco::trainer
