// The check behind `peco-train validate` (one-shot and --serve): parses a job config of any
// kind (its `kind:`) with that kind's check (job_kinds.h) and reports what the job would read,
// without training. Both modes of trainer/main.cc call CheckJobConfig(), so their verdicts cannot
// drift.
//
// Thread-compatible: no shared state (the ProgressSink serialises its own writes).
#ifndef PECO_TRAINER_TASKS_CONFIG_CHECK_H_
#define PECO_TRAINER_TASKS_CONFIG_CHECK_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/validation_protocol.h"
#include "trainer/engine/progress.h"
#include "trainer/tasks/job_kinds.h"

namespace peco::trainer {

// Checks `yaml` (with the overrides already applied). `source` names the document in errors
// (a file path, or "config"). With `check_paths`, the paths must exist and the checkpoints it
// names are opened to check that they fit (a pretrain job's tokenizer, an evaluation's
// backbone); skipped damaged checkpoints are logged to `progress` (may be null). Errors:
// InvalidArgument naming the field for a bad config; NotFound for a missing path.
absl::StatusOr<ConfigCheck> CheckJobConfig(const std::string& yaml, const std::string& source,
                                           bool check_paths, ProgressSink* progress);

// Answers one --serve request: applies request.sets to request.config and checks it under the
// name "config". Never fails: a bad config is a response whose status names the field.
ValidationResponse AnswerValidationRequest(const ValidationRequest& request,
                                           ProgressSink* progress);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_CONFIG_CHECK_H_
