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

namespace peco::trainer {

// OpenMP's default wait policy spins idle worker threads; when the cores are shared (data-loader
// threads, a second rank, a build) the spinning threads starve the working ones and a step runs
// 10-20x slower (measured: 25 s vs 1.9 s for three tiny steps on 2 busy cores). libgomp reads
// OMP_WAIT_POLICY only at load time, so when it is unset this re-executes the program once with
// OMP_WAIT_POLICY=PASSIVE. A value the user set is kept. Returns only if no re-exec happened.
void EnsurePassiveOpenMpWait(char** argv);

// Cores this process may run on (sched_getaffinity), at least 1.
int AvailableCores();

// Sets intra-op threads to `requested`, or to AvailableCores() when requested <= 0. Returns the
// count in effect.
int ConfigureThreads(int requested);

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
