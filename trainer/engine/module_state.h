// Byte serialisation of modules, optimizers and the global RNG for checkpoints, and the model +
// optimizer files every trained job kind's checkpoint holds.
//
// Uses LibTorch's archive format (exact, including optimizer step counts and moments), so a
// restored run continues bitwise. Throws c10::Error on malformed bytes: call through TorchCall.
#ifndef PECO_TRAINER_ENGINE_MODULE_STATE_H_
#define PECO_TRAINER_ENGINE_MODULE_STATE_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"

namespace peco::trainer {

std::string SerializeModule(const torch::nn::Module& module);
void DeserializeModule(const std::string& bytes, torch::nn::Module& module);

std::string SerializeOptimizer(const torch::optim::Optimizer& optimizer);
void DeserializeOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer);

// Adds `model` and `optimizer` to `files` as `model_file` and `optimizer_file`.
void AddModelAndOptimizer(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                          CheckpointFiles* files, const char* model_file = kModelFile,
                          const char* optimizer_file = kOptimizerFile);

// Loads `model` and `optimizer` from those files of checkpoint `dir`; DataLoss naming the file
// when one is absent (throws c10::Error on malformed bytes, as above).
absl::Status RestoreModelAndOptimizer(const CheckpointFiles& files, const std::string& dir,
                                      torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                      const char* model_file = kModelFile,
                                      const char* optimizer_file = kOptimizerFile);

// The default CPU generator's state (dropout, random init inside the step).
std::string SerializeCpuRng();
void DeserializeCpuRng(const std::string& bytes);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_MODULE_STATE_H_
