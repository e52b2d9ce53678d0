#include "coordinator/dependency_inputs.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/job_kinds.h"

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

absl::StatusOr<std::optional<std::string>> DependencyInputFieldOf(const v1::JobSpec& spec,
                                                                  JobStore& store) {
  std::string dependency_job_id;
  if (spec.depends_on().has_job_id()) {
    dependency_job_id = spec.depends_on().job_id();
  } else if (spec.depends_on().has_checkpoint_id()) {
    absl::StatusOr<v1::CheckpointInfo> checkpoint =
        store.GetCheckpoint(spec.depends_on().checkpoint_id());
    if (absl::IsNotFound(checkpoint.status())) {
      return absl::NotFoundError(absl::StrCat("spec.depends_on.checkpoint_id: no checkpoint ",
                                              spec.depends_on().checkpoint_id()));
    }
    RETURN_IF_ERROR(checkpoint.status());
    dependency_job_id = checkpoint->job_id();
  } else {
    return std::optional<std::string>();
  }
  absl::StatusOr<v1::Job> dependency = store.GetJob(dependency_job_id);
  if (absl::IsNotFound(dependency.status()) && spec.depends_on().has_job_id()) {
    return absl::NotFoundError(absl::StrCat("spec.depends_on.job_id: no job ", dependency_job_id));
  }
  RETURN_IF_ERROR(dependency.status());
  return service::DependencyInputField(spec.kind(), dependency->spec().kind());
}

absl::StatusOr<std::vector<v1::InputCheckpoint>> ResolveAttemptInputs(const v1::Job& job,
                                                                      JobStore& store) {
  if (job.attempt() > 0) {
    // Every restart reads what the first attempt read.
    ASSIGN_OR_RETURN(std::vector<v1::Attempt> attempts, store.ListAttempts(job.id()));
    if (attempts.empty()) return std::vector<v1::InputCheckpoint>();
    return std::vector<v1::InputCheckpoint>(attempts.back().inputs().begin(),
                                            attempts.back().inputs().end());
  }
  ASSIGN_OR_RETURN(std::optional<std::string> field, DependencyInputFieldOf(job.spec(), store));
  if (!field.has_value()) return std::vector<v1::InputCheckpoint>();
  v1::InputCheckpoint input;
  input.set_config_field(*field);
  if (job.spec().depends_on().has_checkpoint_id()) {
    input.set_checkpoint_id(job.spec().depends_on().checkpoint_id());
  } else {
    const std::string& dependency = job.spec().depends_on().job_id();
    ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> checkpoints,
                     store.ListCheckpoints(dependency));
    std::optional<v1::CheckpointInfo> chosen = ChooseDependencyCheckpoint(checkpoints);
    if (!chosen.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dependency ", dependency, " succeeded but left no checkpoint for ", *field));
    }
    input.set_checkpoint_id(chosen->id());
  }
  return std::vector<v1::InputCheckpoint>{input};
}

}  // namespace peco::coordinator
