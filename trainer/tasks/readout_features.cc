#include "trainer/tasks/readout_features.h"

#include <filesystem>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "trainer/io/torch_file.h"
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

class TimmVitCls : public FeatureBackbone {
 public:
  explicit TimmVitCls(TimmVit vit) : vit_(std::move(vit)) {}
  std::vector<torch::Tensor> Features(const torch::Tensor& images) override {
    return {vit_->ClsOutput(images).to(torch::kFloat32)};
  }
  std::vector<std::string> names() const override { return {"cls"}; }

 private:
  TimmVit vit_;
};

class Beit : public FeatureBackbone {
 public:
  Beit(BeitClassifier model, std::vector<int64_t> blocks, FeaturePooling pooling)
      : model_(std::move(model)), blocks_(std::move(blocks)), pooling_(pooling) {
    model_->eval();
  }
  std::vector<torch::Tensor> Features(const torch::Tensor& images) override {
    std::vector<torch::Tensor> out = model_->BlockTokens(images, blocks_);
    // Pooled in fp32, whatever precision the blocks ran in.
    for (torch::Tensor& tokens : out) tokens = PoolTokens(tokens.to(torch::kFloat32), pooling_);
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

std::unique_ptr<FeatureBackbone> TimmVitClsBackbone(TimmVit vit) {
  return std::make_unique<TimmVitCls>(std::move(vit));
}

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
  std::vector<int64_t> labels, kept;
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
      kept.push_back(indices[i]);
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
  set.indices = torch::tensor(kept, torch::kInt64);
  return set;
}

absl::StatusOr<FeatureSet> ExtractFeaturesOverRanks(FeatureBackbone& backbone,
                                                    const Dataset& dataset, int64_t n,
                                                    const TransformOptions& view,
                                                    int64_t batch_size, torch::Device device,
                                                    DistributedContext* group,
                                                    const std::function<void(int64_t)>& on_batch) {
  n = std::min(n, dataset.size());
  const int world = group == nullptr ? 1 : group->world_size();
  const int rank = group == nullptr ? 0 : group->rank();
  if (batch_size < 1) return absl::InvalidArgumentError("eval.batch_size: expected > 0");
  // Whole batches per rank: ExtractFeatures cuts `mine` at the same image boundaries.
  std::vector<int64_t> mine;
  for (int64_t first = rank * batch_size; first < n; first += world * batch_size) {
    for (int64_t i = first; i < std::min(n, first + batch_size); ++i) mine.push_back(i);
  }
  absl::StatusOr<FeatureSet> local =
      ExtractFeatures(backbone, dataset, mine, view, batch_size, device, on_batch);
  if (world == 1) return local;
  // A rank whose images were all unreadable still takes part, with nothing to contribute: every
  // rank learns each feature set's width as (sum of widths) / (ranks that have features).
  if (!local.ok() && local.status().code() != absl::StatusCode::kInvalidArgument) {
    return local.status();
  }
  const size_t sets = backbone.names().size();
  std::vector<double> widths(2 * sets, 0.0);
  if (local.ok()) {
    for (size_t f = 0; f < sets; ++f) {
      widths[f] = static_cast<double>(local->features[f].size(1));
      widths[sets + f] = 1.0;
    }
  }
  absl::StatusOr<std::vector<double>> reduced = group->AllReduceMean(widths);
  if (!reduced.ok()) return reduced.status();
  // Rows in image order: image i's features land in row i; `present` marks the rows filled.
  std::vector<torch::Tensor> buffers;
  for (size_t f = 0; f < sets; ++f) {
    const double holders = (*reduced)[sets + f];
    const int64_t width = holders > 0 ? std::llround((*reduced)[f] / holders) : 0;
    buffers.push_back(torch::zeros({n, width}, torch::kFloat32));
  }
  torch::Tensor labels = torch::zeros({n}, torch::kInt64);
  torch::Tensor present = torch::zeros({n}, torch::kInt64);
  if (local.ok()) {
    for (size_t f = 0; f < sets; ++f) buffers[f].index_copy_(0, local->indices, local->features[f]);
    labels.index_copy_(0, local->indices, local->labels);
    present.index_fill_(0, local->indices, 1);
  }
  std::vector<torch::Tensor> all = buffers;
  all.push_back(labels);
  all.push_back(present);
  absl::Status summed = group->AllReduceSum(all);
  if (!summed.ok()) return summed;
  const torch::Tensor keep = all.back().nonzero().flatten();
  if (keep.numel() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("no image of ", dataset.name(), " could be read on any rank"));
  }
  FeatureSet set;
  for (size_t f = 0; f < sets; ++f) set.features.push_back(all[f].index_select(0, keep));
  set.labels = all[sets].index_select(0, keep);
  set.indices = keep;
  set.unreadable = n - keep.numel();
  return set;
}

absl::Status SaveFeatureCache(const FeatureSet& set, const std::string& key,
                              const std::string& path) {
  NamedTensors tensors = {
      {"key", torch::tensor(std::vector<int64_t>(key.begin(), key.end()), torch::kLong)},
      {"labels", set.labels},
      {"indices", set.indices},
      {"unreadable", torch::tensor(set.unreadable, torch::kLong)},
  };
  for (size_t f = 0; f < set.features.size(); ++f) {
    tensors.emplace_back(absl::StrCat("features.", f), set.features[f]);
  }
  ASSIGN_OR_RETURN(std::string bytes, EncodeTensorDict(tensors, "the feature cache"));
  return WriteFileAtomic(path, bytes);
}

absl::StatusOr<FeatureSet> LoadFeatureCache(const std::string& path, const std::string& key) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no feature cache at ", path));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  absl::StatusOr<NamedTensors> tensors =
      DecodeTensorDict(bytes, absl::StrCat("the feature cache ", path));
  if (!tensors.ok()) return absl::DataLossError(tensors.status().message());
  FeatureSet set;
  std::string stored_key;
  bool has_labels = false, has_indices = false, has_unreadable = false;
  for (const auto& [name, tensor] : *tensors) {
    if (name == "key" && tensor.scalar_type() == torch::kLong && tensor.dim() == 1) {
      const torch::Tensor chars = tensor.contiguous();
      const int64_t* data = chars.data_ptr<int64_t>();
      for (int64_t i = 0; i < chars.numel(); ++i) stored_key.push_back(static_cast<char>(data[i]));
    } else if (name == "labels") {
      set.labels = tensor;
      has_labels = true;
    } else if (name == "indices") {
      set.indices = tensor;
      has_indices = true;
    } else if (name == "unreadable" && tensor.numel() == 1) {
      set.unreadable = tensor.item<int64_t>();
      has_unreadable = true;
    } else if (name == absl::StrCat("features.", set.features.size())) {
      set.features.push_back(tensor);
    } else {
      return absl::DataLossError(
          absl::StrCat("the feature cache ", path, ": unexpected entry '", name, "'"));
    }
  }
  if (!has_labels || !has_indices || !has_unreadable || set.features.empty()) {
    return absl::DataLossError(absl::StrCat("the feature cache ", path, " is incomplete"));
  }
  if (stored_key != key) {
    return absl::NotFoundError(
        absl::StrCat("the feature cache at ", path, " was computed for other inputs"));
  }
  return set;
}

}  // namespace peco::trainer
