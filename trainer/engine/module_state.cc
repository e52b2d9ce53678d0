#include "trainer/engine/module_state.h"

#include <ATen/CPUGeneratorImpl.h>

#include <sstream>

#include "common/status_macros.h"

namespace peco::trainer {
namespace {

std::string ToBytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream out;
  archive.save_to(out);
  return std::move(out).str();
}

}  // namespace

std::string SerializeModule(const torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  return ToBytes(archive);
}

void DeserializeModule(const std::string& bytes, torch::nn::Module& module) {
  torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size());
  module.load(archive);
}

std::string SerializeOptimizer(const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  return ToBytes(archive);
}

void DeserializeOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size());
  optimizer.load(archive);
}

std::string SerializeCpuRng() {
  torch::serialize::OutputArchive archive;
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  archive.write("cpu_rng", generator.get_state());
  return ToBytes(archive);
}

void DeserializeCpuRng(const std::string& bytes) {
  torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size());
  torch::Tensor state;
  archive.read("cpu_rng", state);
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

void AddModelAndOptimizer(const torch::nn::Module& model, const torch::optim::Optimizer& optimizer,
                          CheckpointFiles* files, const char* model_file,
                          const char* optimizer_file) {
  (*files)[model_file] = SerializeModule(model);
  (*files)[optimizer_file] = SerializeOptimizer(optimizer);
}

absl::Status RestoreModelAndOptimizer(const CheckpointFiles& files, const std::string& dir,
                                      torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                      const char* model_file, const char* optimizer_file) {
  ASSIGN_OR_RETURN(const std::string* model_bytes, CheckpointFile(files, model_file, dir));
  ASSIGN_OR_RETURN(const std::string* optimizer_bytes, CheckpointFile(files, optimizer_file, dir));
  DeserializeModule(*model_bytes, model);
  DeserializeOptimizer(*optimizer_bytes, optimizer);
  return absl::OkStatus();
}

}  // namespace peco::trainer
