// The environment a trainer starts with: never the worker's whole environment (which may hold
// tokens, cloud credentials or fault-injection plans), only what a trainer needs from it — the
// system basics (PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, TZ, TMPDIR, LD_LIBRARY_PATH, LC_*)
// and the variables of the libraries it runs (CUDA_*, CUDNN_*, CUBLAS_*, NCCL_*, NVIDIA_*,
// TORCH_*, PYTORCH_*, GLOO_*, OMP_*, KMP_*, GOMP_*, MKL_*, OPENBLAS_*) — plus what the
// supervisor sets explicitly (rank, world size, rendezvous, job id, devices).
//
// Thread-safety: pure.
#ifndef PECO_WORKER_TRAINER_ENVIRONMENT_H_
#define PECO_WORKER_TRAINER_ENVIRONMENT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace peco::worker {

// Whether a variable of the worker's environment is passed on to trainers.
bool PassedToTrainers(absl::string_view name);

// The "NAME=value" entries of `environment` (a null-terminated array like `environ`) that
// PassedToTrainers allows, in order.
std::vector<std::string> InheritedTrainerEnvironment(const char* const* environment);

}  // namespace peco::worker

#endif  // PECO_WORKER_TRAINER_ENVIRONMENT_H_
