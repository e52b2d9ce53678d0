// Which checkpoint a dependent job reads from the job it depends on (docs/SERVICE.md,
// "Pipelines").
//
// A job that depends on another may take that job's final checkpoint as an input: the
// coordinator records it in the attempt (Attempt.inputs), the worker fetches it and starts the
// trainer with `--set <config_field>=<local dir>`. The pairs:
//   pretrain      after tokenizer -> tokenizer.checkpoint        (the frozen target tokenizer)
//   finetune      after pretrain  -> backbone.checkpoint         (the backbone to evaluate)
//   linear_probe  after pretrain  -> backbone.checkpoint
//   tokenizer     after contrastive, pretrain or finetune -> loss.perceptual.checkpoint  (the
//                 perceptual network: MoCo v3 encoder, BEiT trunk, or a supervised classifier's)
// Any other pair only orders the two jobs.
//
// Pure functions; thread-safe.
#ifndef PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
#define PECO_COORDINATOR_DEPENDENCY_INPUTS_H_

#include <optional>
#include <string>
#include <vector>

#include "peco/v1/checkpoint.pb.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Returns the config field of a `dependent` job that receives the checkpoint of a `dependency`
// job, or nullopt when the pair only orders the jobs.
std::optional<std::string> DependencyInputField(v1::JobKind dependent, v1::JobKind dependency);

// Returns the checkpoint a dependent job reads from its finished dependency: the newest final
// checkpoint of `checkpoints` (the dependency's, in any order), or the newest of all when none
// is marked final. nullopt when the list is empty.
std::optional<v1::CheckpointInfo> ChooseDependencyCheckpoint(
    const std::vector<v1::CheckpointInfo>& checkpoints);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
