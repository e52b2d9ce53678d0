// The table of job kinds: for each kind, how its config is read and checked, how one rank of a
// job runs (through the one training loop, engine/training_loop.h) and how its checkpoints are
// exported. peco-train's commands (trainer/main.cc) and `validate` (config_check.h) dispatch
// through this table only; a new kind is one new entry.
//
// Immutable after static initialisation; thread-safe.
#ifndef PECO_TRAINER_TASKS_JOB_KINDS_H_
#define PECO_TRAINER_TASKS_JOB_KINDS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

// What a valid config says about the job (peco-train validate).
struct ConfigCheck {
  std::string kind;  // a JobKind name
  int64_t max_steps = 0;
  // Every (config field, path) the job would read, in a fixed order per kind; fields whose path
  // is empty are left out.
  std::vector<std::pair<std::string, std::string>> inputs;
  // Where each rank trains: train.device, "cpu" or "cuda".
  std::string device = "cpu";
};

// How a job was started: `--output_dir` (empty: the config's train.output_dir) and `--resume`.
struct JobFlags {
  std::string output_dir;
  std::string resume_from;
};

// A written export: the checkpoint directory and step it came from, and the key names it uses.
struct ExportSummary {
  std::string checkpoint_dir;
  int64_t step = 0;
  std::string key_names;
};

struct JobKind {
  const char* name;
  // Parses `config` (read from `source`) and runs one rank of the job. Errors as
  // RunTrainingLoop, InvalidArgument naming the field for a bad config.
  absl::Status (*run)(const std::string& config, const std::string& source, const JobFlags& flags,
                      ProgressSink* progress);
  // Checks a config without training; with `check_paths` the paths must exist and the
  // checkpoints it names must fit. `progress` may be null.
  absl::StatusOr<ConfigCheck> (*check)(const std::string& config, const std::string& source,
                                       bool check_paths, ProgressSink* progress);
  // Writes the checkpoint `dir` of this kind to `out` in its official PyTorch layout;
  // InvalidArgument saying why when the kind has none.
  absl::StatusOr<ExportSummary> (*export_checkpoint)(const std::string& dir,
                                                     const std::string& out);
};

// Every kind, in a fixed order.
const std::vector<JobKind>& JobKinds();

// The kind named `name`, or null.
const JobKind* FindJobKind(absl::string_view name);

// The `kind:` of a job config document ("tokenizer" when absent); InvalidArgument naming `kind`
// and the known kinds otherwise.
absl::StatusOr<const JobKind*> ConfigJobKind(const std::string& yaml, const std::string& source);

// ConfigJobKind's name.
absl::StatusOr<std::string> ConfigKind(const std::string& yaml, const std::string& source);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_JOB_KINDS_H_
