#include "worker/trainer_environment.h"

#include "absl/strings/match.h"

namespace peco::worker {

bool PassedToTrainers(absl::string_view name) {
  static constexpr absl::string_view kNames[] = {
      "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH"};
  static constexpr absl::string_view kPrefixes[] = {
      "LC_",      "CUDA_", "CUDNN_", "CUBLAS_", "NCCL_", "NVIDIA_", "TORCH_",
      "PYTORCH_", "GLOO_", "OMP_",   "KMP_",    "GOMP_", "MKL_",    "OPENBLAS_"};
  for (absl::string_view allowed : kNames) {
    if (name == allowed) return true;
  }
  for (absl::string_view prefix : kPrefixes) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

std::vector<std::string> InheritedTrainerEnvironment(const char* const* environment) {
  std::vector<std::string> inherited;
  if (environment == nullptr) return inherited;
  for (const char* const* entry = environment; *entry != nullptr; ++entry) {
    const absl::string_view text(*entry);
    const size_t equals = text.find('=');
    if (equals == absl::string_view::npos || equals == 0) continue;
    if (PassedToTrainers(text.substr(0, equals))) inherited.emplace_back(text);
  }
  return inherited;
}

}  // namespace peco::worker
