// Process-wide LibTorch settings: intra-op threads and mixed precision.
//
// Debian's LibTorch starts with one intra-op thread here; training is far slower unless the
// count is set (DESIGN.md section 8). Autocast APIs moved between LibTorch 1.13 and 2.x; this is
// the one place that knows both.
//
// ConfigureThreads is not thread-safe (call it once at start-up); AutocastGuard affects the
// calling thread only.
#ifndef PECO_TRAINER_ENGINE_RUNTIME_H_
#define PECO_TRAINER_ENGINE_RUNTIME_H_

#include <torch/torch.h>

#include <string>

namespace peco::trainer {

// How idle OpenMP threads wait between parallel regions. libgomp reads this once, when it is
// loaded, so when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set this re-executes the program
// once with them set (values the user set are kept). Returns only if no re-exec happened.
//
// A short spin lets the next region start at once; measured on 2 cores, a small-preset MIM step
// ran 1.6x and a small pretrain step 1.4x faster spinning 30,000 iterations than not at all. But
// when threads outnumber the cores left to them (several ranks or jobs on one host, a build),
// spinning threads starve the working ones: two such processes side by side ran 5-10x slower
// with that spin, and libgomp's default 300,000 made three tiny steps take 25 s instead of 1.9.
// So: OMP_WAIT_POLICY=PASSIVE with GOMP_SPINCOUNT=30000 when this process may have the cores to
// itself (LOCAL_WORLD_SIZE unset or 1, PECO_SHARED_CORES unset), and 0 (purely passive) when it
// shares them: several local ranks, or PECO_SHARED_CORES=1, which peco-worker sets because
// jobs share a worker's cores.
void ConfigureOpenMpWait(char** argv);

// Cores this process may run on (sched_getaffinity), at least 1.
int AvailableCores();

// Sets intra-op threads to `requested`, or to AvailableCores() when requested <= 0. Returns the
// count in effect.
int ConfigureThreads(int requested);

// True when /proc/cpuinfo-style `flags` lines name bf16 matrix hardware (avx512_bf16 or
// amx_bf16). Without it LibTorch emulates bf16 on the CPU, many times slower than fp32.
bool CpuinfoHasBf16(const std::string& cpuinfo);
// CpuinfoHasBf16 of this machine's /proc/cpuinfo (false when unreadable).
bool CpuHasBf16Hardware();

// `train.precision` as run: "auto" is bf16 on CUDA and on CPUs with bf16 hardware, fp32
// elsewhere; "fp32" and "bf16" are themselves.
std::string ResolvePrecision(const std::string& precision, const std::string& device);

// Enables bf16 autocast for `device` within its scope when `enabled`.
class AutocastGuard {
 public:
  AutocastGuard(bool enabled, torch::Device device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool cuda_;
  bool previous_ = false;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_RUNTIME_H_
