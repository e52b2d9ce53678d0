// Per-step learning-rate schedules: linear warmup from 0, then cosine decay to min_lr or constant.
//
// Pure value type; thread-compatible.
#ifndef PECO_TRAINER_ENGINE_LR_SCHEDULE_H_
#define PECO_TRAINER_ENGINE_LR_SCHEDULE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace peco::trainer {

struct LrSchedule {
  std::string kind = "cosine";  // "cosine" or "constant"
  double base_lr = 1e-4;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // Learning rate for optimizer step `step` (0-based).
  double At(int64_t step) const;
  absl::Status Validate(const std::string& prefix) const;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_LR_SCHEDULE_H_
