// A class-balanced label subset of a labelled dataset: `per_class` images of every class, drawn
// with a seeded permutation, for low-label fine-tuning and probing (`data.labels_per_class`),
// the setting where pre-training shows most.
//
// The subset is a pure function of (dataset, per_class, seed): the permutation is seeded by
// `seed` alone and walked in order, keeping an image while its class has fewer than per_class;
// the kept indices are served in increasing order. Labels are read with Dataset::Label (no
// decoding where the dataset knows them). Immutable and thread-safe once made.
#ifndef PECO_TRAINER_DATA_CLASS_SUBSET_H_
#define PECO_TRAINER_DATA_CLASS_SUBSET_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "trainer/data/dataset.h"

namespace peco::trainer {

// Errors: InvalidArgument naming data.labels_per_class when per_class < 1, when the dataset has
// no labels, or when a class has fewer than per_class images (naming the class and its count);
// a label that cannot be read fails with its own error.
absl::StatusOr<std::unique_ptr<Dataset>> ClassBalancedSubset(std::shared_ptr<const Dataset> base,
                                                             int64_t per_class, uint64_t seed);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_CLASS_SUBSET_H_
