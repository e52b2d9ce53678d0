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
  // Warmup shape. false: step s of the warmup gets base_lr * (s + 1) / warmup_steps. true: the
  // official BEiT/PeCo `cosine_scheduler` (np.linspace(0, base_lr, warmup_steps)): step 0 gets 0
  // and step warmup_steps - 1 gets base_lr.
  bool warmup_from_zero = false;

  // Learning rate for optimizer step `step` (0-based).
  double At(int64_t step) const;
  absl::Status Validate(const std::string& prefix) const;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_LR_SCHEDULE_H_
