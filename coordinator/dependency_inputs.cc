#include "coordinator/dependency_inputs.h"

#include <tuple>

namespace peco::coordinator {

std::optional<std::string> DependencyInputField(v1::JobKind dependent, v1::JobKind dependency) {
  switch (dependent) {
    case v1::JOB_KIND_PRETRAIN:
      if (dependency == v1::JOB_KIND_TOKENIZER) return "tokenizer.checkpoint";
      break;
    case v1::JOB_KIND_FINETUNE:
    case v1::JOB_KIND_LINEAR_PROBE:
      if (dependency == v1::JOB_KIND_PRETRAIN) return "backbone.checkpoint";
      break;
    case v1::JOB_KIND_TOKENIZER:
      // The perceptual network: self-supervised (contrastive, pretrain) or supervised (finetune).
      if (dependency == v1::JOB_KIND_CONTRASTIVE || dependency == v1::JOB_KIND_PRETRAIN ||
          dependency == v1::JOB_KIND_FINETUNE) {
        return "loss.perceptual.checkpoint";
      }
      break;
    default:
      break;
  }
  return std::nullopt;
}

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
