// The files of a checkpoint that hold tensors: a module's parameters and buffers, an Adam or
// AdamW optimizer's state and the CPU generator's state, and the model + optimizer pair every
// trained job kind's checkpoint holds.
//
// Format: each file is a flat dict of named tensors in torch.save's zip format (Python's
// torch.load reads it: a module's file is its state_dict). It is read back through peco's own
// pickle interpreter (trainer/io/torch_pickle.h), never through LibTorch's TorchScript archive
// loader: a checkpoint that crosses machines runs no code, and every name, shape and dtype is
// checked before anything is copied. Exact (optimizer step counts and moments included), so a
// restored run continues bitwise.
//
// Errors: DataLoss naming the file (`what`) and the tensor for a file that does not match the
// module or optimizer (missing, unexpected, wrong shape or dtype), InvalidArgument for bytes that
// are not such a file; nothing is changed then. LibTorch exceptions never escape.
// Thread-safety: functions are thread-compatible (they read or write the objects given).
#ifndef PECO_TRAINER_ENGINE_MODULE_STATE_H_
#define PECO_TRAINER_ENGINE_MODULE_STATE_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"

namespace peco::trainer {

absl::StatusOr<std::string> SerializeModule(const torch::nn::Module& module);
absl::Status DeserializeModule(const std::string& bytes, torch::nn::Module& module,
                               const std::string& what = "module");

// torch::optim::Adam and AdamW (and their subclasses) only; InvalidArgument for another.
absl::StatusOr<std::string> SerializeOptimizer(const torch::optim::Optimizer& optimizer);
absl::Status DeserializeOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer,
                                  const std::string& what = "optimizer");

// Adds `model` and `optimizer` to `files` as `model_file` and `optimizer_file`.
absl::Status AddModelAndOptimizer(const torch::nn::Module& model,
                                  const torch::optim::Optimizer& optimizer, CheckpointFiles* files,
                                  const char* model_file = kModelFile,
                                  const char* optimizer_file = kOptimizerFile);

// Loads `model` and `optimizer` from those files of checkpoint `dir`; DataLoss naming the file
// when one is absent or does not match.
absl::Status RestoreModelAndOptimizer(const CheckpointFiles& files, const std::string& dir,
                                      torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                      const char* model_file = kModelFile,
                                      const char* optimizer_file = kOptimizerFile);

// The default CPU generator's state (dropout, random init inside the step).
absl::StatusOr<std::string> SerializeCpuRng();
absl::Status DeserializeCpuRng(const std::string& bytes, const std::string& what = "rng");

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_MODULE_STATE_H_
