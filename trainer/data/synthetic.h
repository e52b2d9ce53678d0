// Seeded synthetic images for tests and benchmarks.
#ifndef PECO_TRAINER_DATA_SYNTHETIC_H_
#define PECO_TRAINER_DATA_SYNTHETIC_H_

#include <cstdint>
#include <memory>

#include "trainer/data/dataset.h"

namespace peco::trainer {

// `size` images of height x width x channels (1 or 3). Image i is a pure function of (seed, i):
// a smooth colour gradient whose direction depends on the label (i % num_classes) plus a few
// random Gaussian blobs, so the images are compressible and the labels learnable. Generated on
// Get(); never fails for a valid index. Thread-safe. Preconditions: positive sizes, channels in
// {1, 3}, num_classes >= 1 (checked with CHECK-style abort).
std::unique_ptr<Dataset> MakeSyntheticDataset(int64_t size, int height, int width, int channels,
                                              int64_t num_classes, uint64_t seed);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_SYNTHETIC_H_
