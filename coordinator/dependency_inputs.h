// Which checkpoint a dependent job reads from the job it depends on (docs/SERVICE.md,
// "Pipelines"): the inputs of an attempt. Which config field receives it is the job kind
// table's (service/job_kinds.h, DependencyInputField); which of the dependency's checkpoints is
// chosen, and that every restart reads what the first attempt read, is decided here.
//
// Thread-safety: ChooseDependencyCheckpoint is pure; the others read the (thread-safe) JobStore.
#ifndef PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
#define PECO_COORDINATOR_DEPENDENCY_INPUTS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/job_store.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::coordinator {

// Returns the checkpoint a dependent job reads from its finished dependency: the newest final
// checkpoint of `checkpoints` (the dependency's, in any order), or the newest of all when none
// is marked final. nullopt when the list is empty.
std::optional<v1::CheckpointInfo> ChooseDependencyCheckpoint(
    const std::vector<v1::CheckpointInfo>& checkpoints);

// The config field of `spec` that receives its dependency's checkpoint, or nullopt (no
// dependency, or a pair of kinds that only orders the jobs). NotFound naming
// spec.depends_on.job_id or .checkpoint_id when the dependency does not exist.
absl::StatusOr<std::optional<std::string>> DependencyInputFieldOf(const v1::JobSpec& spec,
                                                                  JobStore& store);

// The checkpoints the next attempt of `job` reads (Attempt.inputs): those of its latest attempt
// when it had one (every restart reads the same), else the dependency's newest final checkpoint
// (ChooseDependencyCheckpoint) or the named one. FailedPrecondition when the dependency
// succeeded without leaving a checkpoint to hand over.
absl::StatusOr<std::vector<v1::InputCheckpoint>> ResolveAttemptInputs(const v1::Job& job,
                                                                      JobStore& store);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_DEPENDENCY_INPUTS_H_
