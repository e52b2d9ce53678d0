#include "trainer/tasks/config_check.h"

#include "common/config_reader.h"

namespace peco::trainer {

absl::StatusOr<ConfigCheck> CheckJobConfig(const std::string& yaml, const std::string& source,
                                           bool check_paths, ProgressSink* progress) {
  absl::StatusOr<const JobKind*> kind = ConfigJobKind(yaml, source);
  if (!kind.ok()) return kind.status();
  return (*kind)->check(yaml, source, check_paths, progress);
}

ValidationResponse AnswerValidationRequest(const ValidationRequest& request,
                                           ProgressSink* progress) {
  ValidationResponse response;
  response.id = request.id;
  absl::StatusOr<std::string> text = ApplyConfigOverrides(request.config, request.sets);
  if (!text.ok()) {
    response.status = text.status();
    return response;
  }
  absl::StatusOr<ConfigCheck> check =
      CheckJobConfig(*text, "config", request.check_paths, progress);
  if (!check.ok()) {
    response.status = check.status();
    return response;
  }
  response.kind = check->kind;
  response.max_steps = check->max_steps;
  response.inputs = std::move(check->inputs);
  response.device = check->device;
  return response;
}

}  // namespace peco::trainer
