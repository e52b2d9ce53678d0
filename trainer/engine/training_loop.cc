#include "trainer/engine/training_loop.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/run_record.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/stop_signal.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

namespace protocol = ::peco::trainer_protocol;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::StatusOr<RunContext> PrepareRun(const TrainingLoopOptions& options) {
  RunContext run;
  run.threads = ConfigureThreads(options.threads);
  if (options.device == "cuda" && !torch::cuda::is_available()) {
    return absl::InvalidArgumentError(
        "train.device: cuda requested but this LibTorch has no CUDA device");
  }
  run.precision = ResolvePrecision(options.precision, options.device);
  run.bf16 = run.precision == "bf16";
  run.resuming = !options.resume_from.empty();
  ASSIGN_OR_RETURN(run.distributed, DistributedOptionsFromEnv());
  if (options.device == "cuda") {
    run.device = torch::Device(torch::kCUDA, run.distributed.local_rank);
  }
  run.distributed.device = run.device;
  run.distributed.collective_timeout = std::chrono::milliseconds(
      static_cast<int64_t>(std::llround(options.collective_timeout * 1000)));
  const std::string root = (std::filesystem::path(options.output_dir) / "checkpoints").string();
  if (options.resume_from.empty() && !ListCheckpoints(root).empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "train.output_dir: ", options.output_dir, " already holds checkpoints; pass --resume ",
        options.output_dir, " to continue that run, or choose another output_dir"));
  }
  return run;
}

// One rank's run of the loop; see training_loop.h.
class Loop {
 public:
  Loop(TrainingTask& task, const TrainingLoopOptions& options)
      : task_(task),
        options_(options),
        progress_(*options.progress),
        root_((std::filesystem::path(options.output_dir) / "checkpoints").string()) {}
  ~Loop() {
    if (recorder_ != nullptr) progress_.SetObserver(nullptr);
  }

  absl::Status Setup();
  absl::StatusOr<TrainingResult> Train();
  // Puts a failed run's error event into the run record (peco-train writes it to stdout after
  // the loop is gone, when the record is closed).
  void RecordFailure(const absl::Status& status) {
    if (recorder_ != nullptr && !status.ok()) recorder_->OnEvent(ErrorEvent(status).str());
  }

 private:
  absl::StatusOr<bool> AnyRankStopping();
  absl::Status Step(const Batch& batch);
  absl::Status EmitMetrics();
  absl::Status SaveCheckpoint(bool final);
  // Evaluates unless this step already was.
  absl::Status EvaluateOnce();
  void ResetWindow();
  // The loader's cumulative data wait; 0 for a task without a loader.
  double DataWaitSeconds() { return task_.loader() ? task_.loader()->data_wait_seconds() : 0; }

  TrainingTask& task_;
  const TrainingLoopOptions& options_;
  ProgressSink& progress_;
  const std::string root_;
  std::unique_ptr<DistributedContext> group_;
  std::unique_ptr<RunRecorder> recorder_;  // rank 0's run record, when kept
  int64_t last_saved_step_ = -1;
  std::string last_checkpoint_;

  // The metric window since the last `step` event.
  int64_t window_steps_ = 0, window_images_ = 0;
  double window_wait_at_start_ = 0;
  Clock::time_point window_start_ = Clock::now();
};

absl::Status Loop::Setup() {
  ASSIGN_OR_RETURN(RunContext run, PrepareRun(options_));
  // Everything a rank can refuse on its own comes before joining the group.
  RETURN_IF_ERROR(TorchCall(absl::StrCat("building the ", options_.kind, " job"),
                            [&] { return task_.Build(run); }));
  if (!options_.resume_from.empty()) {
    ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint,
                     ResolveCheckpoint(options_.resume_from, &progress_));
    RETURN_IF_ERROR(TorchCall(absl::StrCat("restoring ", checkpoint.dir),
                              [&] { return task_.Restore(checkpoint); }));
    last_saved_step_ = task_.step();
    last_checkpoint_ = checkpoint.dir;
    progress_.Log(absl::StrCat("resumed from ", checkpoint.dir, " at step ", task_.step()));
  }
  RETURN_IF_ERROR(
      Faults().Configure(options_.faults, run.distributed.attempt, run.distributed.rank));
  if (options_.join_group) {
    ASSIGN_OR_RETURN(group_, options_.join_group(run.distributed));
  } else {
    ASSIGN_OR_RETURN(group_, DistributedContext::Create(run.distributed));
  }
  RETURN_IF_ERROR(
      TorchCall("joining the data-parallel group", [&] { return task_.Connect(group_.get()); }));

  if (options_.record_run && group_->is_main()) {
    absl::StatusOr<std::unique_ptr<RunRecorder>> recorder =
        RunRecorder::Open(options_.output_dir, options_.config_text, task_.step());
    if (recorder.ok()) {
      recorder_ = *std::move(recorder);
      progress_.SetObserver(recorder_.get());
    } else {
      progress_.Log(absl::StrCat("run record: ", recorder.status().message(),
                                 "; training goes on without metrics.jsonl and events"));
    }
  }

  JsonWriter start;
  start.Add("event", protocol::kEventStart)
      .Add("kind", options_.kind)
      .Add("step", task_.step())
      .Add("max_steps", options_.max_steps)
      .Add("threads", run.threads)
      .Add("rank", static_cast<int64_t>(group_->rank()))
      .Add("world_size", static_cast<int64_t>(group_->world_size()))
      .Add("precision", run.precision)
      .Add("precision_requested", options_.precision)
      .Add("device", options_.device);
  const std::string summary = task_.DescribeStart(&start);
  progress_.Emit(start);
  progress_.Log(absl::StrFormat("%s: %s, %d threads, rank %d of %d, %s, starting at step %d of %d",
                                options_.kind, summary, run.threads, group_->rank(),
                                group_->world_size(), run.precision, task_.step(),
                                options_.max_steps));
  ResetWindow();
  return absl::OkStatus();
}

void Loop::ResetWindow() {
  window_steps_ = window_images_ = 0;
  window_wait_at_start_ = DataWaitSeconds();
  window_start_ = Clock::now();
}

absl::StatusOr<bool> Loop::AnyRankStopping() {
  const bool requested = options_.stop_requested ? options_.stop_requested() : StopRequested();
  const double stopping = requested ? 1.0 : 0.0;
  if (!group_->is_distributed()) return stopping > 0;
  ASSIGN_OR_RETURN(std::vector<double> mean, group_->AllReduceMean({stopping}));
  return mean[0] > 0;
}

absl::Status Loop::Step(const Batch& batch) {
  const int64_t step = task_.step();
  ASSIGN_OR_RETURN(double loss, TorchCall(absl::StrCat("step ", step),
                                          [&] { return task_.ForwardLoss(batch); }));
  // Refused before it reaches the weights: the last checkpoint stays clean.
  if (Faults().NanLoss(step)) loss = std::nan("");
  if (!std::isfinite(loss)) return NonFiniteLossError(step, group_->rank(), loss);
  RETURN_IF_ERROR(TorchCall(absl::StrCat("step ", step), [&] { return task_.Update(); }));
  ++window_steps_;
  window_images_ += batch.views.empty() ? 0 : batch.views[0].size(0) * group_->world_size();
  return absl::OkStatus();
}

absl::Status Loop::EmitMetrics() {
  if (window_steps_ == 0) return absl::OkStatus();
  DataLoader* loader = task_.loader();
  MetricWindow window;
  window.steps = window_steps_;
  window.images = window_images_;
  window.seconds = std::max(SecondsSince(window_start_), 1e-9);
  window.data_wait_seconds = DataWaitSeconds() - window_wait_at_start_;
  JsonWriter event;
  event.Add("event", protocol::kEventStep)
      .Add("step", task_.step())
      .Add("epoch", loader != nullptr ? loader->position().epoch : 0);
  ASSIGN_OR_RETURN(std::string summary,
                   TorchCall("reporting metrics", [&] { return task_.Metrics(window, &event); }));
  const double images_per_second = window.images / window.seconds;
  event.Add("images_per_second", images_per_second)
      .Add("step_seconds", window.seconds / window.steps)
      .Add("data_wait_seconds", window.data_wait_seconds)
      .Add("data_wait_share", window.data_wait_seconds / window.seconds)
      .Add("skipped_samples", loader != nullptr ? loader->skipped_samples() : 0);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat("step %d/%d  %s  %.1f img/s", task_.step(), options_.max_steps,
                                summary, images_per_second));
  ResetWindow();
  return absl::OkStatus();
}

absl::Status Loop::SaveCheckpoint(bool final) {
  const auto started = Clock::now();
  const int64_t step = task_.step();
  absl::StatusOr<CheckpointFiles> files =
      TorchCall("serialising the checkpoint", [&] { return task_.CheckpointContents(final); });
  if (!files.ok()) {
    return absl::Status(
        files.status().code(),
        absl::StrCat("checkpoint of step ", step, " not written: ", files.status().message()));
  }
  last_saved_step_ = step;
  if (!group_->is_main()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string dir, WriteCheckpoint(root_, step, *files));
  if (recorder_ != nullptr) recorder_->AddCheckpointImages(step, *files);
  RETURN_IF_ERROR(ApplyRetention(root_, options_.keep_checkpoints, dir));
  int64_t bytes = 0;
  for (const auto& [name, data] : *files) bytes += static_cast<int64_t>(data.size());
  JsonWriter event;
  event.Add("event", protocol::kEventCheckpoint)
      .Add("step", step)
      .Add("path", dir)
      .Add("bytes", bytes)
      .Add("seconds", SecondsSince(started))
      .Add("final", final);
  progress_.Emit(event);
  last_checkpoint_ = dir;
  return absl::OkStatus();
}

absl::Status Loop::EvaluateOnce() {
  if (task_.evaluated_step() == task_.step()) return absl::OkStatus();
  return TorchCall("evaluating", [&] { return task_.Evaluate(); });
}

absl::StatusOr<TrainingResult> Loop::Train() {
  TrainingResult result;
  const EvaluationPolicy eval = task_.evaluation();
  const bool eval_before = eval.order == EvalOrder::kBeforeCheckpoint;
  const bool eval_after = eval.order == EvalOrder::kAfterCheckpoint;
  CheckpointFailureGuard checkpoint_guard(options_.on_checkpoint_failure,
                                          options_.max_skipped_checkpoints, &progress_);
  // The initialisation's evaluation: the floor the run's later evaluations are read against.
  if (eval.order != EvalOrder::kNone && eval.at_start && task_.step() == 0) {
    RETURN_IF_ERROR(EvaluateOnce());
  }
  while (task_.step() < options_.max_steps) {
    ASSIGN_OR_RETURN(bool stopping, AnyRankStopping());
    if (stopping) {
      result.stopped_by_signal = true;
      break;
    }
    Batch batch;
    if (DataLoader* loader = task_.loader(); loader != nullptr) {
      ASSIGN_OR_RETURN(batch, loader->Next());
    }
    Faults().BeforeStep(task_.step());
    RETURN_IF_ERROR(Step(batch));
    const int64_t step = task_.step();
    const bool last = step == options_.max_steps;
    if (step % options_.log_every == 0) RETURN_IF_ERROR(EmitMetrics());
    const bool eval_due = eval.every > 0 && step % eval.every == 0;
    if (eval_before && (eval_due || last)) RETURN_IF_ERROR(EvaluateOnce());
    if (step % options_.checkpoint_every == 0) {
      RETURN_IF_ERROR(checkpoint_guard.Check(step, last, SaveCheckpoint(last)));
    }
    // The last step's evaluation comes after the final checkpoint, below.
    if (eval_after && eval_due && !last) RETURN_IF_ERROR(EvaluateOnce());
  }
  RETURN_IF_ERROR(EmitMetrics());
  const bool finished = !result.stopped_by_signal;
  // A resumed run that was already complete still reports its evaluation.
  if (eval_before && finished) RETURN_IF_ERROR(EvaluateOnce());
  if (last_saved_step_ != task_.step()) RETURN_IF_ERROR(SaveCheckpoint(/*final=*/finished));
  if (eval_after && finished) RETURN_IF_ERROR(EvaluateOnce());
  // Rank 0 writes the checkpoints; the others name none (not even the one they resumed from).
  if (!group_->is_main()) last_checkpoint_.clear();
  result.final_step = task_.step();
  result.last_checkpoint = last_checkpoint_;
  JsonWriter done;
  done.Add("event", finished ? protocol::kEventCompleted : protocol::kEventStopped)
      .Add("step", task_.step())
      .Add("checkpoint", last_checkpoint_);
  task_.AddResult(&done);
  progress_.Emit(done);
  progress_.Log(absl::StrCat(finished ? "completed" : "stopped by signal", " at step ",
                             task_.step(), "; checkpoint: ", last_checkpoint_));
  return result;
}

}  // namespace

absl::Status TrainingLoopOptions::Validate() const {
  if (progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  if (kind.empty()) return absl::InvalidArgumentError("kind: expected a job kind");
  if (max_steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_steps: expected a value > 0, got ", max_steps));
  }
  if (log_every <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.log_every: expected a value > 0, got ", log_every));
  }
  if (checkpoint_every <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.checkpoint_every: expected a value > 0, got ", checkpoint_every));
  }
  if (keep_checkpoints < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.keep_checkpoints: expected a value >= 1, got ", keep_checkpoints));
  }
  if (output_dir.empty()) return absl::InvalidArgumentError("train.output_dir: expected a path");
  if (!(collective_timeout > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.collective_timeout: expected seconds > 0, got ", collective_timeout));
  }
  if (device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.device: expected cpu or cuda, got '", device, "'"));
  }
  if (precision != "fp32" && precision != "bf16" && precision != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("train.precision: expected fp32, bf16 or auto, got '", precision, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainingResult> RunTrainingLoop(TrainingTask& task,
                                               const TrainingLoopOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  Loop loop(task, options);
  absl::Status setup = loop.Setup();
  if (!setup.ok()) {
    loop.RecordFailure(setup);
    return setup;
  }
  absl::StatusOr<TrainingResult> result = loop.Train();
  loop.RecordFailure(result.status());
  return result;
}

absl::Status NonFiniteLossError(int64_t step, int rank, double loss) {
  return absl::FailedPreconditionError(
      absl::StrCat("non-finite loss at step ", step, " on rank ", rank, " (", loss, ")"));
}

}  // namespace peco::trainer
