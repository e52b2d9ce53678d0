#include "trainer/tasks/run_setup.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/runtime.h"

namespace peco::trainer {

absl::StatusOr<RunSetup> PrepareRun(int threads, const TrainConfig& train,
                                    double collective_timeout, bool resuming) {
  RunSetup setup;
  setup.threads = ConfigureThreads(threads);
  if (train.device == "cuda" && !torch::cuda::is_available()) {
    return absl::InvalidArgumentError(
        "train.device: cuda requested but this LibTorch has no CUDA device");
  }
  setup.bf16 = train.precision == "bf16";
  ASSIGN_OR_RETURN(setup.distributed, DistributedOptionsFromEnv());
  if (train.device == "cuda")
    setup.device = torch::Device(torch::kCUDA, setup.distributed.local_rank);
  setup.distributed.device = setup.device;
  setup.distributed.collective_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(std::llround(collective_timeout * 1000)));
  const std::string root = (std::filesystem::path(train.output_dir) / "checkpoints").string();
  if (!resuming && !ListCheckpoints(root).empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "train.output_dir: ", train.output_dir, " already holds checkpoints; pass --resume ",
        train.output_dir, " to continue that run, or choose another output_dir"));
  }
  return setup;
}

}  // namespace peco::trainer
