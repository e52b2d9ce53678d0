#include "trainer/tasks/data_config.h"

#include "absl/strings/str_cat.h"
#include "trainer/data/class_subset.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/data/image_folder.h"
#include "trainer/data/random.h"
#include "trainer/data/synthetic.h"

namespace peco::trainer {

absl::StatusOr<std::shared_ptr<const Dataset>> OpenDataset(const DataConfig& config,
                                                           uint64_t seed) {
  absl::StatusOr<std::unique_ptr<Dataset>> dataset;
  if (config.source == "fashion_mnist") {
    dataset = OpenFashionMnist(config.path, config.split);
  } else if (config.source == "image_folder") {
    ImageFolderOptions options;
    options.min_decode_side = static_cast<int>(config.image_size);
    options.labels = config.labels == "folders" ? FolderLabels::kFolders
                     : config.labels == "none"  ? FolderLabels::kNone
                                                : FolderLabels::kAuto;
    dataset = OpenImageFolder(config.path, options);
  } else if (config.source == "synthetic") {
    const int side = static_cast<int>(config.image_size);
    dataset = MakeSyntheticDataset(config.synthetic_size, side, side, 3, 10, seed);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("data.source: unknown source '", config.source, "'"));
  }
  if (!dataset.ok()) {
    return absl::Status(dataset.status().code(),
                        absl::StrCat("data.path: ", dataset.status().message()));
  }
  std::shared_ptr<const Dataset> opened(std::move(*dataset));
  if (config.labels_per_class <= 0) return opened;
  absl::StatusOr<std::unique_ptr<Dataset>> subset = ClassBalancedSubset(
      std::move(opened), config.labels_per_class, MixSeed(seed, kLabelSubsetStream));
  if (!subset.ok()) return subset.status();
  return std::shared_ptr<const Dataset>(std::move(*subset));
}

}  // namespace peco::trainer
