#include "coordinator/dependency_inputs.h"

#include <tuple>

namespace peco::coordinator {

std::optional<v1::CheckpointInfo> ChooseDependencyCheckpoint(
    const std::vector<v1::CheckpointInfo>& checkpoints) {
  const v1::CheckpointInfo* best = nullptr;
  // Final beats not final; then the later step, the later attempt, the later commit.
  auto rank = [](const v1::CheckpointInfo& c) {
    return std::make_tuple(c.final(), c.step(), c.attempt(), c.committed_time_us());
  };
  for (const v1::CheckpointInfo& checkpoint : checkpoints) {
    if (best == nullptr || rank(*best) < rank(checkpoint)) best = &checkpoint;
  }
  if (best == nullptr) return std::nullopt;
  return *best;
}

}  // namespace peco::coordinator
