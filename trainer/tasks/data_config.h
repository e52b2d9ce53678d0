// The `data:` section shared by every job kind, and the dataset it opens.
//
// Value type; OpenDataset is thread-safe.
#ifndef PECO_TRAINER_TASKS_DATA_CONFIG_H_
#define PECO_TRAINER_TASKS_DATA_CONFIG_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"
#include "trainer/data/loader.h"

namespace peco::trainer {

struct DataConfig {
  std::string source = "fashion_mnist";  // fashion_mnist | image_folder | synthetic
  std::string path = "/usr/share/datasets/fashion-mnist";
  std::string split = "train";  // fashion_mnist: train | test
  // image_folder: auto (class folders when the folder has sub-folders, else unlabelled),
  // folders, or none (every image below the folder, unlabelled). A list file says itself.
  std::string labels = "auto";
  int64_t image_size = 32;
  int64_t synthetic_size = 1024;  // images in the synthetic dataset
  // A class-balanced label subset of this many images per class (0 = every image), drawn with
  // the job's seed (data/class_subset.h); never applied to held-out splits.
  int64_t labels_per_class = 0;
  LoaderOptions loader;  // batch_size, num_workers, prefetch (+ transform)
};

// Salt of the seed of a synthetic held-out set (a second set drawn with another seed), as
// OpenDataset(held_out_config, MixSeed(seed, kEvalDataStream)).
inline constexpr uint64_t kEvalDataStream = 0x4556414C;  // "EVAL"

// Salt of the seed of the label subset (data.labels_per_class).
inline constexpr uint64_t kLabelSubsetStream = 0x4C41424C;  // "LABL"

// Opens the configured dataset (its label subset when labels_per_class > 0). Errors name
// `data.path` and what was expected there, or `data.labels_per_class`.
absl::StatusOr<std::shared_ptr<const Dataset>> OpenDataset(const DataConfig& config, uint64_t seed);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_DATA_CONFIG_H_
