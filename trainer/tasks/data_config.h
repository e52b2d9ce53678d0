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
  int64_t image_size = 32;
  int64_t synthetic_size = 1024;  // images in the synthetic dataset
  LoaderOptions loader;           // batch_size, num_workers, prefetch (+ transform)
};

// Salt of the seed of a synthetic held-out set (a second set drawn with another seed), as
// OpenDataset(held_out_config, MixSeed(seed, kEvalDataStream)).
inline constexpr uint64_t kEvalDataStream = 0x4556414C;  // "EVAL"

// Opens the configured dataset. Errors name `data.path` and what was expected there.
absl::StatusOr<std::shared_ptr<const Dataset>> OpenDataset(const DataConfig& config, uint64_t seed);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_DATA_CONFIG_H_
