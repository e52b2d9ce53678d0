#include "trainer/engine/runtime.h"

#include <ATen/autocast_mode.h>
#include <sched.h>
#include <torch/version.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace peco::trainer {

void ConfigureOpenMpWait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr) {
    return;
  }
  const char* local_world_size = std::getenv("LOCAL_WORLD_SIZE");
  const char* shared = std::getenv("PECO_SHARED_CORES");
  const bool shares_cores = (local_world_size != nullptr && std::atoi(local_world_size) > 1) ||
                            (shared != nullptr && std::string(shared) == "1");
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::setenv("GOMP_SPINCOUNT", shares_cores ? "0" : "30000", 1);
  ::execv("/proc/self/exe", argv);
  // execv failed (no /proc): carry on with libgomp's defaults.
}

int AvailableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0) return count;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

bool CpuinfoHasBf16(const std::string& cpuinfo) {
  std::istringstream lines(cpuinfo);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line);
    std::string word;
    while (words >> word) {
      if (word == "avx512_bf16" || word == "amx_bf16") return true;
    }
  }
  return false;
}

bool CpuHasBf16Hardware() {
  std::ifstream in("/proc/cpuinfo");
  if (!in) return false;
  std::stringstream text;
  text << in.rdbuf();
  return CpuinfoHasBf16(text.str());
}

std::string ResolvePrecision(const std::string& precision, const std::string& device) {
  if (precision != "auto") return precision;
  if (device == "cuda") return "bf16";
  return CpuHasBf16Hardware() ? "bf16" : "fp32";
}

int ConfigureThreads(int requested) {
  const int threads = requested > 0 ? requested : AvailableCores();
  at::set_num_threads(threads);
  return at::get_num_threads();
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define PECO_AUTOCAST_DEVICE_API 1
#endif

AutocastGuard::AutocastGuard(bool enabled, torch::Device device)
    : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
#ifdef PECO_AUTOCAST_DEVICE_API
  const at::DeviceType type = cuda_ ? at::kCUDA : at::kCPU;
  previous_ = at::autocast::is_autocast_enabled(type);
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
  at::autocast::set_autocast_enabled(type, true);
#else
  if (cuda_) {
    previous_ = at::autocast::is_enabled();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    previous_ = at::autocast::is_cpu_enabled();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
#endif
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef PECO_AUTOCAST_DEVICE_API
  at::autocast::set_autocast_enabled(cuda_ ? at::kCUDA : at::kCPU, previous_);
#else
  if (cuda_) {
    at::autocast::set_enabled(previous_);
  } else {
    at::autocast::set_cpu_enabled(previous_);
  }
#endif
}

}  // namespace peco::trainer
