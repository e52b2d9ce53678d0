#include "trainer/data/class_subset.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "trainer/data/sampler.h"

namespace peco::trainer {
namespace {

class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<int64_t> indices,
                int64_t per_class)
      : base_(std::move(base)), indices_(std::move(indices)), per_class_(per_class) {}

  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int64_t num_classes() const override { return base_->num_classes(); }
  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    return base_->Get(indices_[static_cast<size_t>(index)]);
  }
  absl::StatusOr<int64_t> Label(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    return base_->Label(indices_[static_cast<size_t>(index)]);
  }
  std::string name() const override {
    return absl::StrCat(base_->name(), "[", per_class_, " per class]");
  }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<int64_t> indices_;
  int64_t per_class_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> ClassBalancedSubset(std::shared_ptr<const Dataset> base,
                                                             int64_t per_class, uint64_t seed) {
  if (per_class < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.labels_per_class: expected a value >= 1, got ", per_class));
  }
  const int64_t classes = base->num_classes();
  if (classes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.labels_per_class: ", base->name(), " has no labels to balance"));
  }
  std::vector<int64_t> taken(static_cast<size_t>(classes), 0), available = taken;
  std::vector<int64_t> indices;
  for (int64_t position : EpochPermutation(base->size(), seed, /*epoch=*/0, /*shuffle=*/true)) {
    absl::StatusOr<int64_t> label = base->Label(position);
    if (!label.ok()) return label.status();
    if (*label < 0 || *label >= classes) {
      return absl::InvalidArgumentError(absl::StrCat("data.labels_per_class: image ", position,
                                                     " of ", base->name(), " has label ", *label,
                                                     ", expected [0, ", classes, ")"));
    }
    ++available[static_cast<size_t>(*label)];
    if (taken[static_cast<size_t>(*label)] < per_class) {
      ++taken[static_cast<size_t>(*label)];
      indices.push_back(position);
    }
  }
  for (int64_t c = 0; c < classes; ++c) {
    if (taken[static_cast<size_t>(c)] < per_class) {
      return absl::InvalidArgumentError(
          absl::StrCat("data.labels_per_class: ", per_class, " images per class requested, class ",
                       c, " of ", base->name(), " has ", available[static_cast<size_t>(c)]));
    }
  }
  std::sort(indices.begin(), indices.end());
  return std::unique_ptr<Dataset>(
      std::make_unique<SubsetDataset>(std::move(base), std::move(indices), per_class));
}

}  // namespace peco::trainer
