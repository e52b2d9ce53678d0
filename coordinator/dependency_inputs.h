// Which checkpoint a dependent job reads from the job it depends on (docs/SERVICE.md,
// "Pipelines"). Which config field receives it is the job kind table's (service/job_kinds.h,
// DependencyInputField); which of the dependency's checkpoints is chosen is decided here.
//
// Pure functions; thread-safe.
#ifndef PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
#define PECO_COORDINATOR_DEPENDENCY_INPUTS_H_

#include <optional>
#include <vector>

#include "peco/v1/checkpoint.pb.h"

namespace peco::coordinator {

// Returns the checkpoint a dependent job reads from its finished dependency: the newest final
// checkpoint of `checkpoints` (the dependency's, in any order), or the newest of all when none
// is marked final. nullopt when the list is empty.
std::optional<v1::CheckpointInfo> ChooseDependencyCheckpoint(
    const std::vector<v1::CheckpointInfo>& checkpoints);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
