// Byte serialisation of modules, optimizers and the global RNG for checkpoints.
//
// Uses LibTorch's archive format (exact, including optimizer step counts and moments), so a
// restored run continues bitwise. Throws c10::Error on malformed bytes: call through TorchCall.
#ifndef PECO_TRAINER_ENGINE_MODULE_STATE_H_
#define PECO_TRAINER_ENGINE_MODULE_STATE_H_

#include <torch/torch.h>

#include <string>

namespace peco::trainer {

std::string SerializeModule(const torch::nn::Module& module);
void DeserializeModule(const std::string& bytes, torch::nn::Module& module);

std::string SerializeOptimizer(const torch::optim::Optimizer& optimizer);
void DeserializeOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer);

// The default CPU generator's state (dropout, random init inside the step).
std::string SerializeCpuRng();
void DeserializeCpuRng(const std::string& bytes);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_MODULE_STATE_H_
