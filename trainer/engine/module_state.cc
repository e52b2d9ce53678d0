#include "trainer/engine/module_state.h"

#include <ATen/CPUGeneratorImpl.h>

#include <sstream>

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

}  // namespace peco::trainer
