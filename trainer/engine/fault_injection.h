// Fault injection for reliability tests: peco-train can be told to fail in the ways real trainers
// fail, so that the worker's and coordinator's recovery is tested against real processes.
//
// Off unless a job asks for it, in its config's `faults:` section or in the PECO_FAULTS
// environment variable (the same keys as one YAML flow mapping, e.g.
// PECO_FAULTS='{exit_at_step: 3, attempt: 1}'; the variable wins over the section):
//
//   faults:
//     attempt: 1                    # fire only in this attempt (PECO_ATTEMPT; 0 = every attempt)
//     rank: -1                      # fire only on this rank (RANK; -1 = every rank)
//     exit_at_step: 0               # after this many steps, exit with exit_code at once
//     exit_code: 1
//     hang_at_step: 0               # after this many steps, hang forever...
//     hang_in: step                 # ...before the step (step), before the gradient all-reduce
//                                   # (collective) or inside the checkpoint write (checkpoint)
//     slow_step_ms: 0               # sleep this long before every step
//     nan_loss_at_step: 0           # the loss of the step after this many is NaN
//     corrupt_checkpoint_at_step: 0 # flip a byte of the checkpoint of this step once committed
//     fail_checkpoint_at_step: 0    # the write of this step's checkpoint fails as on a full disk
//
// Steps count completed optimizer steps: `exit_at_step: 3` exits after step 3 completed (and its
// checkpoint, if one was due, was written). 0 turns each fault off.
//
// The process-wide injector (Faults()) is configured once, by the job runner, before training;
// its hooks are cheap no-ops when nothing is armed. Thread-safe.
#ifndef PECO_TRAINER_ENGINE_FAULT_INJECTION_H_
#define PECO_TRAINER_ENGINE_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/attributes.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config_reader.h"

namespace peco::trainer {

struct FaultPlan {
  int64_t attempt = 0;
  int rank = -1;
  int64_t exit_at_step = 0;
  int exit_code = 1;
  int64_t hang_at_step = 0;
  std::string hang_in = "step";  // step | collective | checkpoint
  int64_t slow_step_ms = 0;
  int64_t nan_loss_at_step = 0;
  int64_t corrupt_checkpoint_at_step = 0;
  int64_t fail_checkpoint_at_step = 0;

  // Whether any fault is set.
  bool armed() const;
  // InvalidArgument naming the field ("faults.exit_code: ...").
  absl::Status Validate() const;
};

// Reads the `faults:` section (and finishes it: unknown keys are errors).
absl::Status ReadFaultsSection(ConfigReader& r, FaultPlan* plan);

// Parses PECO_FAULTS-style text (a YAML flow mapping); `source` names it in errors.
absl::StatusOr<FaultPlan> ParseFaultPlan(const std::string& text, const std::string& source);

class FaultInjector {
 public:
  // Arms `plan` for this process, given its attempt and rank (faults for other attempts or
  // ranks stay off). A plan from PECO_FAULTS, if set, replaces `plan`; InvalidArgument if that
  // variable does not parse. Logs what is armed to stderr.
  absl::Status Configure(const FaultPlan& plan, int64_t attempt, int rank);

  // Called before each step with the number of completed steps: exits, hangs or sleeps as armed.
  void BeforeStep(int64_t completed_steps);
  // Called before the gradient all-reduce of the current step (the one after the count last
  // given to BeforeStep): hangs there if armed for it.
  void InCollective();
  // Called inside the write of the checkpoint of `step`, with its files written and nothing
  // committed: hangs there if armed for it; returns ResourceExhausted (as a full disk would) if
  // armed to fail it, OK otherwise.
  absl::Status InCheckpointWrite(int64_t step);
  // Whether the loss of the step after `completed_steps` is to be replaced by NaN.
  bool NanLoss(int64_t completed_steps) const;
  // Called once the checkpoint of `step` is committed in `dir`: flips one byte of its largest
  // file if armed for that step (the MANIFEST's digest then no longer matches).
  void AfterCheckpointCommit(int64_t step, const std::string& dir);

  bool armed() const { return armed_.load(std::memory_order_relaxed); }

 private:
  // Not inlined, so that stack dumps show it by name.
  [[noreturn]] ABSL_ATTRIBUTE_NOINLINE void Hang(const char* where, int64_t completed_steps);

  FaultPlan plan_;  // written by Configure before training starts, read-only afterwards
  std::atomic<bool> armed_{false};
  std::atomic<int64_t> current_step_{0};
};

// The process-wide injector.
FaultInjector& Faults();

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_FAULT_INJECTION_H_
