// Moving named tensors in and out of LibTorch modules (state dicts by name).
//
// Errors are InvalidArgument and name the key and `what` (usually the file), so a user sees
// exactly which weight is missing or mis-shaped. Loading is all-or-nothing: every key is checked
// before any value is copied, so a refused file leaves the module untouched.
// Not thread-safe with respect to the module.
#ifndef PECO_TRAINER_MODELS_WEIGHTS_H_
#define PECO_TRAINER_MODELS_WEIGHTS_H_

#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "trainer/io/torch_file.h"

namespace peco::trainer {

// Parameters then buffers of `module`, in registration order, detached (sharing storage).
NamedTensors ModuleState(const torch::nn::Module& module);

// Copies `tensors` into `module`'s parameters and buffers by name. With `strict`, keys the
// module lacks are errors too; every module key must be present either way.
absl::Status LoadNamedTensors(torch::nn::Module& module, const NamedTensors& tensors,
                              absl::string_view what, bool strict);

// Keeps the entries whose name starts with `prefix`, with the prefix removed.
NamedTensors SelectPrefix(const NamedTensors& tensors, absl::string_view prefix);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_WEIGHTS_H_
