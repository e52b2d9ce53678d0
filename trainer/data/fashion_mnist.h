// Fashion-MNIST from the gzip IDX files shipped by Debian's dataset-fashion-mnist.
#ifndef PECO_TRAINER_DATA_FASHION_MNIST_H_
#define PECO_TRAINER_DATA_FASHION_MNIST_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"

namespace peco::trainer {

// Debian's install location of the dataset.
inline constexpr char kDefaultFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// Loads split "train" (60000 images) or "test" (10000 images) from `dir`, which holds
// {train,t10k}-images-idx3-ubyte.gz and {train,t10k}-labels-idx1-ubyte.gz. The whole split is
// decoded into memory (28x28 greyscale, 10 classes). Errors name the file and what was expected
// (missing file, bad magic number, wrong count or shape, truncated data, label out of range).
// The returned dataset is immutable and thread-safe.
absl::StatusOr<std::unique_ptr<Dataset>> OpenFashionMnist(const std::string& dir,
                                                          const std::string& split);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_FASHION_MNIST_H_
