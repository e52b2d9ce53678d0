// The random-access dataset interface shared by Fashion-MNIST, ImageFolder and the synthetic set.
#ifndef PECO_TRAINER_DATA_DATASET_H_
#define PECO_TRAINER_DATA_DATASET_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "trainer/data/image.h"

namespace peco::trainer {

// One decoded sample. `label` is in [0, num_classes) or -1 when the dataset has no labels.
struct Example {
  Image image;
  int64_t label = -1;
};

// A fixed-size, random-access collection of labelled images.
//
// Thread-safety: implementations must make Get() (and the const accessors) safe to call
// concurrently from many loader threads.
class Dataset {
 public:
  virtual ~Dataset() = default;

  // Number of samples; indices passed to Get() are in [0, size()).
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;

  // Decodes sample `index`. An error means this one sample is unreadable (corrupt or missing
  // file; the message names it); the loader skips such samples. OutOfRange for a bad index.
  virtual absl::StatusOr<Example> Get(int64_t index) const = 0;

  // The label of sample `index` (-1: unlabelled). By default decodes the sample; datasets that
  // know their labels without decoding (class folders, label files) answer directly.
  virtual absl::StatusOr<int64_t> Label(int64_t index) const {
    absl::StatusOr<Example> example = Get(index);
    if (!example.ok()) return example.status();
    return example->label;
  }

  // Short human-readable description for logs, e.g. "fashion-mnist/train".
  virtual std::string name() const = 0;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_DATASET_H_
