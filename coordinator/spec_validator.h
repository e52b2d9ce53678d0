// Checking a submitted JobSpec before anything is persisted (docs/SERVICE.md, "Job spec files").
//
// Two layers:
//  - CheckJobSpecFields(): the envelope (kind, name, world size, devices, priority, restarts,
//    labels, config size), pure, with defaults applied by NormalizeJobSpec();
//  - SpecValidator: the trainer config itself. TrainerSpecValidator runs
//    `peco-train validate --check_paths false` (the trainer's own parser is the authority on its
//    config) and checks every path the job would read against the allowed roots.
// Errors are InvalidArgument naming the field ("spec.world_size: ...", "config: train.max_steps:
// ...").
#ifndef PECO_COORDINATOR_SPEC_VALIDATOR_H_
#define PECO_COORDINATOR_SPEC_VALIDATOR_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "peco/v1/job.pb.h"

namespace peco::coordinator {

// Limits on the envelope.
struct SpecLimits {
  int32_t max_world_size = 1024;
  int32_t max_restarts = 100;
  int32_t max_priority = 1000;  // priorities lie in [-max_priority, max_priority]
  int64_t max_config_bytes = int64_t{1} << 20;
  int32_t max_labels = 32;
};

// Fills defaults into a spec: world_size 0 -> 1; no devices -> one CPU slot per rank; an empty
// name -> the kind's name.
void NormalizeJobSpec(v1::JobSpec* spec);

// Checks a normalized spec's envelope fields (not the config's content, not dependencies).
absl::Status CheckJobSpecFields(const v1::JobSpec& spec, const SpecLimits& limits);

// Validates a spec's trainer config. Implementations are thread-safe.
class SpecValidator {
 public:
  SpecValidator() = default;
  SpecValidator(const SpecValidator&) = delete;
  SpecValidator& operator=(const SpecValidator&) = delete;
  virtual ~SpecValidator() = default;

  // OK when the trainer would accept spec.config_yaml for spec.kind once the service has filled
  // `input_fields` (config fields it sets itself, such as a dependency's checkpoint directory:
  // dependency_inputs.h); InvalidArgument naming the field otherwise; Unavailable/Internal when
  // the check itself could not run.
  virtual absl::Status Validate(const v1::JobSpec& spec,
                                const std::vector<std::string>& input_fields) = 0;
};

// Runs the trainer's own validation in a child process.
class TrainerSpecValidator : public SpecValidator {
 public:
  struct Options {
    // peco-train (a path, or a name looked up on PATH).
    std::string trainer_binary = "peco-train";
    // Directory for the temporary config files (created if missing).
    std::string scratch_dir;
    // Every path the job reads must lie under one of these (after normalisation). Empty list:
    // no path is allowed.
    std::vector<std::string> allowed_roots;
    absl::Duration timeout = absl::Seconds(60);

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  explicit TrainerSpecValidator(Options options);
  // Runs `validate` with `--set <field>=<placeholder>` for each of `input_fields` and checks
  // every other input path against the allowed roots.
  absl::Status Validate(const v1::JobSpec& spec,
                        const std::vector<std::string>& input_fields) override;

 private:
  const Options options_;
};

// Returns true when `path` (absolute after normalisation of "." and "..") lies under `root`.
bool PathIsUnder(absl::string_view path, absl::string_view root);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_SPEC_VALIDATOR_H_
