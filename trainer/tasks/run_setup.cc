#include "trainer/tasks/run_setup.h"

namespace peco::trainer {

TrainingLoopOptions LoopOptionsFor(const std::string& kind, int threads, const TrainConfig& train,
                                   const FaultPlan& faults, const std::string& resume_from,
                                   ProgressSink* progress, const std::string& config_text) {
  TrainingLoopOptions options;
  options.kind = kind;
  options.threads = threads;
  options.device = train.device;
  options.precision = train.precision;
  options.max_steps = train.max_steps;
  options.log_every = train.log_every;
  options.checkpoint_every = train.checkpoint_every;
  options.keep_checkpoints = train.keep_checkpoints;
  options.output_dir = train.output_dir;
  options.on_checkpoint_failure = train.on_checkpoint_failure;
  options.max_skipped_checkpoints = train.max_skipped_checkpoints;
  options.collective_timeout = train.collective_timeout;
  options.faults = faults;
  options.resume_from = resume_from;
  options.progress = progress;
  options.config_text = config_text;
  return options;
}

}  // namespace peco::trainer
