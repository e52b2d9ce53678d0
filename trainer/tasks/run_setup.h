// What every training task checks and decides before it builds anything: the thread count, the
// device, the rank's place in the job (torchrun environment) and whether its output directory may
// be written.
//
// Free functions; thread-compatible (ConfigureThreads sets process-wide LibTorch state).
#ifndef PECO_TRAINER_TASKS_RUN_SETUP_H_
#define PECO_TRAINER_TASKS_RUN_SETUP_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "trainer/engine/distributed.h"
#include "trainer/tasks/config_sections.h"

namespace peco::trainer {

struct RunSetup {
  int threads = 0;                     // LibTorch intra-op threads now in use
  torch::Device device = torch::kCPU;  // cuda:LOCAL_RANK for train.device cuda
  bool bf16 = false;                   // train.precision bf16 (autocast)
  DistributedOptions distributed;      // from the environment, device and timeout filled in
};

// Sets the thread count (`threads`, 0 = the cores available), reads the rank from the torchrun
// environment and picks the device. `collective_timeout` is in seconds. Errors:
// InvalidArgument when train.device is cuda and LibTorch has no CUDA device, or the environment
// is malformed; FailedPrecondition when `resuming` is false and train.output_dir already holds
// checkpoints (the message says how to continue that run instead).
absl::StatusOr<RunSetup> PrepareRun(int threads, const TrainConfig& train,
                                    double collective_timeout, bool resuming);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_RUN_SETUP_H_
