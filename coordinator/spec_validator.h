// Checking a submitted JobSpec before anything is persisted (docs/SERVICE.md, "Job spec files").
//
// Two layers:
//  - CheckJobSpecFields(): the envelope (kind, name, world size, devices, priority, restarts,
//    labels, config size), pure, with defaults applied by NormalizeJobSpec();
//  - SpecValidator: the trainer config itself. TrainerSpecValidator asks
//    `peco-train validate --serve` processes (the trainer's own parser is the authority on its
//    config; paths are not checked there) and checks every path the job would read against the
//    allowed roots.
// Errors are InvalidArgument naming the field ("spec.world_size: ...", "config: train.max_steps:
// ...").
#ifndef PECO_COORDINATOR_SPEC_VALIDATOR_H_
#define PECO_COORDINATOR_SPEC_VALIDATOR_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/process_launcher.h"
#include "coordinator/validator_pool.h"
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

// Checks ResumeJob's config_overrides: at most 64, each `section.field=value` under train:,
// optim: or eval: (what a continued run may change without changing its model), never
// train.device (the job's devices are part of its spec) or train.output_dir (the worker's).
// InvalidArgument naming the override otherwise.
absl::Status CheckResumeOverrides(const std::vector<std::string>& overrides);

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

// Runs the trainer's own validation in a small pool of `peco-train validate --serve` processes
// (coordinator/validator_pool.h: started lazily, replaced when they crash, hang or answer
// garbage) and checks the paths it reports against the allowed roots.
class TrainerSpecValidator : public SpecValidator {
 public:
  struct Options {
    // peco-train (a path, or a name looked up on PATH).
    std::string trainer_binary = "peco-train";
    // Every path the job reads must lie under one of these (after normalisation). Empty list:
    // no path is allowed.
    std::vector<std::string> allowed_roots;
    // Validator processes that may run at once.
    int pool_size = 2;
    // How long one check may take (waiting for a free validator included).
    absl::Duration timeout = absl::Seconds(10);
    // Extra time for a check that has to start a validator first (LibTorch start-up).
    absl::Duration startup_timeout = absl::Seconds(60);

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // `options` must be valid. `launcher` (borrowed, may be null for the real one) starts the
  // validator processes.
  explicit TrainerSpecValidator(Options options, ProcessLauncher* launcher = nullptr);
  // Asks a validator about spec.config_yaml with `--set <field>=<placeholder>` for each of
  // `input_fields`, then checks every other input path against the allowed roots.
  // Unavailable naming the validator when it could not answer (crash, timeout, garbage).
  absl::Status Validate(const v1::JobSpec& spec,
                        const std::vector<std::string>& input_fields) override;

  // Returns the pids of the running validator processes.
  std::vector<pid_t> ValidatorPidsForTest() const;

 private:
  const Options options_;
  ValidatorPool pool_;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_SPEC_VALIDATOR_H_
