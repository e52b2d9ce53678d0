// The key of a parameter's entry in torch::optim::Optimizer's state map: LibTorch 1.x uses the
// TensorImpl's address printed to a string, 2.x the address itself. Pass the map's key_type. The
// key is valid while the parameter's TensorImpl lives. Thread-safety: a pure function.
#ifndef PECO_TRAINER_ENGINE_OPTIMIZER_STATE_KEY_H_
#define PECO_TRAINER_ENGINE_OPTIMIZER_STATE_KEY_H_

#include <torch/torch.h>

#include <sstream>
#include <string>
#include <type_traits>

namespace peco::trainer {

template <typename Key>
Key OptimizerStateKey(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream out;
    out << static_cast<const void*>(p.unsafeGetTensorImpl());
    return out.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_OPTIMIZER_STATE_KEY_H_
