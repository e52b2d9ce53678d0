#include "trainer/engine/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace peco::trainer {

double LrSchedule::At(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) {
    if (warmup_from_zero) {
      return warmup_steps == 1
                 ? 0.0
                 : base_lr * static_cast<double>(step) / static_cast<double>(warmup_steps - 1);
    }
    return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  }
  if (kind == "constant") return base_lr;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

absl::Status LrSchedule::Validate(const std::string& prefix) const {
  if (kind != "cosine" && kind != "constant") {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "schedule: expected cosine or constant, got '", kind, "'"));
  }
  if (!(base_lr > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "lr: expected a value > 0, got ", base_lr));
  }
  if (min_lr < 0 || min_lr > base_lr) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "min_lr: expected a value in [0, lr], got ", min_lr));
  }
  if (warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "warmup_steps: expected >= 0, got ", warmup_steps));
  }
  return absl::OkStatus();
}

}  // namespace peco::trainer
