// The one training loop every job kind plugs into (DESIGN.md section 3).
//
// RunTrainingLoop() owns what every kind shares: the thread count, the device and the rank's
// place in the job (torchrun environment), the refusal to overwrite a run, resuming from a
// checkpoint, fault injection, joining the data-parallel group, the stop signal agreed across
// ranks, batch fetch and its data-wait measurement, the non-finite-loss rule, the `log_every` /
// `checkpoint_every` / `eval.every` cadence with the checkpoint-failure policy, the final
// checkpoint (written by rank 0 alone), the progress events (common/trainer_protocol.h) and the
// error codes that become peco-train's exit codes. A job kind implements TrainingTask: its
// model, its step, its metrics, its checkpoint files and its evaluation.
//
// The life of one rank:
//
//   task.Build(run)                  models and optimizers, no collectives (a rank refuses alone)
//   task.Restore(checkpoint)         with --resume: the newest verified checkpoint
//   task.Connect(group)              broadcast rank 0's state, gradient reducers, this rank's
//   loader start event until max_steps or a stop on any rank:
//     batch = task.loader()->Next()   (an empty Batch when the task has no loader)
//     loss = task.ForwardLoss(batch) the non-finite check comes next, before any update
//     task.Update()                  backward, reduce, step; the step count advances
//     task.Metrics(window)           every log_every steps (a collective: same steps everywhere)
//     task.Evaluate()                by the kind's EvaluationPolicy, before or after the checkpoint
//     task.CheckpointContents(final) every checkpoint_every steps; rank 0 writes the files
//   final metrics, checkpoint and evaluation; completed or stopped event
//
// Errors (Status codes, which peco-train turns into exit codes with
// trainer_protocol::ExitCodeFor): InvalidArgument for bad configuration or a refused resume,
// FailedPrecondition for a non-finite loss or an output directory that already holds a run,
// DataLoss for damaged checkpoints, Unavailable when a peer rank fails, Internal for LibTorch
// failures; a periodic checkpoint failure by train.on_checkpoint_failure.
//
// Thread-compatible: one loop per process, driven from the calling thread.
#ifndef PECO_TRAINER_ENGINE_TRAINING_LOOP_H_
#define PECO_TRAINER_ENGINE_TRAINING_LOOP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/json_writer.h"
#include "torch/torch.h"
#include "trainer/data/loader.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_policy.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

// What the loop decided before the task builds anything.
struct RunContext {
  int threads = 0;                     // LibTorch intra-op threads in use
  torch::Device device = torch::kCPU;  // cuda:LOCAL_RANK for device cuda
  std::string precision = "fp32";      // as run: fp32 | bf16 (ResolvePrecision of the option)
  bool bf16 = false;                   // precision bf16 (autocast)
  DistributedOptions distributed;      // from the environment, device and timeout filled in
  bool resuming = false;               // Restore() follows Build()
};

// Optimizer steps since the last `step` event, across all ranks.
struct MetricWindow {
  int64_t steps = 0;
  int64_t images = 0;  // of the global batch (every rank's images)
  double seconds = 0;  // wall time of the window, at least 1e-9
  double data_wait_seconds = 0;
};

// When a kind evaluates on held-out data.
enum class EvalOrder {
  kNone,              // never
  kBeforeCheckpoint,  // the checkpoint of an evaluated step records the evaluation
  kAfterCheckpoint,   // a failing evaluation loses no training
};

struct EvaluationPolicy {
  EvalOrder order = EvalOrder::kNone;
  // Also every this many steps; 0 = only at the end. At the end the loop evaluates once, unless
  // the run stopped by signal or this step was already evaluated (evaluated_step()).
  int64_t every = 0;
  // Also before the first step of a run at step 0 (the initialisation, the floor of the run's
  // later evaluations).
  bool at_start = false;
};

// A job kind, as the loop sees it. The loop owns the task's calls and order; a task never
// catches LibTorch exceptions itself: every call below runs inside TorchCall, which turns them
// into Status. Calls marked collective are made on every rank at the same steps.
class TrainingTask {
 public:
  virtual ~TrainingTask() = default;

  // Builds models, optimizers and anything a rank can refuse alone, on run.device.
  virtual absl::Status Build(const RunContext& run) = 0;
  // Takes the state of a checkpoint (after Build, before Connect). InvalidArgument when the
  // checkpoint does not fit this config, naming the field.
  virtual absl::Status Restore(const RestoredCheckpoint& checkpoint) = 0;
  // Joins the group (borrowed; outlives the task's use of it): starts every rank from rank 0's
  // weights, sets up gradient reduction and opens this rank's shard of the data. Collective.
  virtual absl::Status Connect(DistributedContext* group) = 0;
  // The training data of this rank (valid after Connect; borrowed), or null for a kind that
  // reads its data itself (a readout's feature pass): the loop then hands ForwardLoss an empty
  // Batch and reports no epoch, data wait or images.
  virtual DataLoader* loader() = 0;
  // Optimizer steps taken.
  virtual int64_t step() const = 0;
  // Adds the kind's fields to the `start` event; returns the readable summary of the run.
  virtual std::string DescribeStart(JsonWriter* start) = 0;

  // The forward pass of one step on this rank's batch: returns the loss value (as logged), with
  // the graph kept for Update(). A non-finite value stops the run before Update.
  virtual absl::StatusOr<double> ForwardLoss(const Batch& batch) = 0;
  // Backward, gradient reduction, clipping and the optimizer step(s) of the step ForwardLoss
  // began; accumulates the window's statistics and advances step(). Collective.
  virtual absl::Status Update() = 0;
  // Adds the window's statistics (reduced over ranks) to the `step` event and returns them as
  // readable text; resets the kind's window. Collective.
  virtual absl::StatusOr<std::string> Metrics(const MetricWindow& window, JsonWriter* event) = 0;
  // The files of the checkpoint of step() (config and trainer_state.json included); an empty
  // map on ranks other than 0, which write nothing. Collective (state shared across ranks, such
  // as running statistics, is reduced here first).
  virtual absl::StatusOr<CheckpointFiles> CheckpointContents(bool final) = 0;

  virtual EvaluationPolicy evaluation() const { return {}; }
  // Evaluates at step() and emits the `eval` event. Collective.
  virtual absl::Status Evaluate() { return absl::OkStatus(); }
  // The step of the last evaluation (restored with a checkpoint where the kind keeps it); -1.
  virtual int64_t evaluated_step() const { return -1; }
  // Adds the kind's fields (a last evaluation) to the `completed` or `stopped` event.
  virtual void AddResult(JsonWriter* done) {}
};

struct TrainingLoopOptions {
  std::string kind;                // names the job kind in events and errors
  int threads = 0;                 // 0 = the cores available
  std::string device = "cpu";      // cpu | cuda
  std::string precision = "fp32";  // fp32 | bf16 | auto (engine/runtime.h ResolvePrecision)
  int64_t max_steps = 1;
  int64_t log_every = 1;
  int64_t checkpoint_every = 1;
  int keep_checkpoints = 1;
  std::string output_dir;  // checkpoints go to <output_dir>/checkpoints/step-N
  CheckpointFailurePolicy on_checkpoint_failure = CheckpointFailurePolicy::kFail;
  int max_skipped_checkpoints = 0;
  double collective_timeout = 30;  // seconds
  FaultPlan faults;
  // A checkpoint directory or a run directory (its newest verified checkpoint). Empty: a fresh
  // run, refused when output_dir already holds checkpoints.
  std::string resume_from;
  ProgressSink* progress = nullptr;  // not owned; required
  // The run record (engine/run_record.h): rank 0 writes metrics.jsonl and TensorBoard event
  // files into output_dir, with `config_text` (the effective config) as the run's text.
  bool record_run = true;
  std::string config_text;

  // Seams (tests run several ranks in one process): how this rank joins its group (default:
  // DistributedContext::Create, the torchrun environment) and whether a stop was requested of
  // this rank (default: StopRequested(), SIGTERM or SIGINT).
  std::function<absl::StatusOr<std::unique_ptr<DistributedContext>>(const DistributedOptions&)>
      join_group;
  std::function<bool()> stop_requested;

  // InvalidArgument naming the field (train.max_steps, train.log_every, ...).
  absl::Status Validate() const;
};

struct TrainingResult {
  int64_t final_step = 0;
  std::string last_checkpoint;  // empty on ranks other than 0
  bool stopped_by_signal = false;
};

// Runs one rank of a job of `task`'s kind to its end (see the top of this file).
absl::StatusOr<TrainingResult> RunTrainingLoop(TrainingTask& task,
                                               const TrainingLoopOptions& options);

// The error for a non-finite loss at `step` (FailedPrecondition, exit code 3).
absl::Status NonFiniteLossError(int64_t step, int rank, double loss);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_TRAINING_LOOP_H_
