// The features a readout (tasks/readouts.h) is computed on: a frozen backbone turned into one
// vector per image for each requested block, over a dataset's images, in fixed batches.
//
// Backbones:
//   pixels  the image itself, flattened (the evaluation view's values): the floor every report
//           carries (Fashion-MNIST: about 84% for a linear readout and for k-NN).
//   ViT     a timm-named ViT (MoCo v3's encoder, models/timm_vit.h): the CLS token after the
//           final norm, the feature MoCo v3's evaluations read out (one set, "cls").
//   BEiT    a BeitClassifier trunk (pre-trained or randomly initialised), the token sequence after
//           each requested block (counted from 1, before any norm) pooled by `pooling`: the CLS
//           token, the mean of the patch tokens (BEiT's linear probe), or both concatenated.
//
// Not thread-safe (a backbone holds a LibTorch module); ExtractFeatures runs no gradients and
// leaves the model in evaluation mode. Errors: InvalidArgument naming the field.
#ifndef PECO_TRAINER_TASKS_READOUT_FEATURES_H_
#define PECO_TRAINER_TASKS_READOUT_FEATURES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/torch.h"
#include "trainer/data/dataset.h"
#include "trainer/data/transforms.h"
#include "trainer/engine/distributed.h"
#include "trainer/models/beit_vit.h"
#include "trainer/models/timm_vit.h"

namespace peco::trainer {

enum class FeaturePooling { kCls, kMean, kClsAndMean };

// "cls" | "mean" | "cls+mean"; InvalidArgument naming `field` otherwise.
absl::StatusOr<FeaturePooling> ParseFeaturePooling(const std::string& name,
                                                   const std::string& field);

// tokens [B, 1 + N, D] (CLS first) -> [B, D], or [B, 2 D] for kClsAndMean (CLS, then mean).
torch::Tensor PoolTokens(const torch::Tensor& tokens, FeaturePooling pooling);

class FeatureBackbone {
 public:
  virtual ~FeatureBackbone() = default;
  // images [B, C, H, W] (the evaluation view) -> one [B, D_i] float tensor per feature set.
  virtual std::vector<torch::Tensor> Features(const torch::Tensor& images) = 0;
  // The feature sets' names, in Features() order ("pixels", "block 3", ...).
  virtual std::vector<std::string> names() const = 0;
};

// The raw view as the features: one set, "pixels".
std::unique_ptr<FeatureBackbone> PixelBackbone();

// `vit`'s CLS token after the final norm. Features() runs the ViT in whatever mode it is in (a
// ViT trunk has no dropout or BatchNorm); the caller owns the mode of any head registered on it.
std::unique_ptr<FeatureBackbone> TimmVitClsBackbone(TimmVit vit);

// `model`'s trunk after each of `blocks` (each in [1, depth]; InvalidArgument naming
// readout.blocks otherwise), pooled. The model is put in evaluation mode.
absl::StatusOr<std::unique_ptr<FeatureBackbone>> BeitBackbone(BeitClassifier model,
                                                              std::vector<int64_t> blocks,
                                                              FeaturePooling pooling);

// Features of a list of images, one tensor per feature set, rows in `indices` order.
struct FeatureSet {
  std::vector<torch::Tensor> features;  // per feature set: [N, D_i] float, CPU
  torch::Tensor labels;                 // [N] int64
  torch::Tensor indices;                // [N] int64: the dataset index of each row
  int64_t unreadable = 0;               // images skipped because they could not be read
};

// Computes `backbone`'s features for images `indices` of `dataset` through `view` (evaluation
// transform: no randomness is drawn), `batch_size` at a time on `device`; `on_batch`, when set,
// gets the images done so far. Unreadable images are skipped and counted; errors: none readable,
// an empty `view.output_sizes`, LibTorch failures.
absl::StatusOr<FeatureSet> ExtractFeatures(FeatureBackbone& backbone, const Dataset& dataset,
                                           const std::vector<int64_t>& indices,
                                           const TransformOptions& view, int64_t batch_size,
                                           torch::Device device,
                                           const std::function<void(int64_t)>& on_batch = nullptr);

// Data parallel: the features of images [0, n) of `dataset` in batches of `batch_size` (images
// [0, B), [B, 2B), ...), rank r of `group` computing batches r, r + W, r + 2W, ... and every rank
// receiving all of them in image order (summed into a zero-filled buffer over the group; rows of
// images no rank could read are dropped). Every image is computed in the same batch whatever the
// world size, so the features are bit for bit those of one rank computing them all (a CPU's
// kernels may round a row differently in a batch of other rows); with fewer batches than ranks,
// some ranks compute none. Collective: every rank calls it
// with the same arguments. `group` is borrowed; world size 1 (or null) computes everything locally.
absl::StatusOr<FeatureSet> ExtractFeaturesOverRanks(
    FeatureBackbone& backbone, const Dataset& dataset, int64_t n, const TransformOptions& view,
    int64_t batch_size, torch::Device device, DistributedContext* group,
    const std::function<void(int64_t)>& on_batch = nullptr);

// A cache of computed features (the evaluation's, in its attempt directory): `key` names what
// they were computed from (backbone digest, view, images), so that a resumed evaluation reuses
// them only when nothing changed. Written atomically.
absl::Status SaveFeatureCache(const FeatureSet& set, const std::string& key,
                              const std::string& path);

// The cached features at `path` when they exist and were computed for `key`; NotFound when there
// is no cache or it was computed for another key; DataLoss when the file is damaged.
absl::StatusOr<FeatureSet> LoadFeatureCache(const std::string& path, const std::string& key);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_READOUT_FEATURES_H_
