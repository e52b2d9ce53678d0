#include "trainer/engine/foreach_optim.h"

#include <torch/version.h>

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "trainer/engine/optimizer_state_key.h"

namespace peco::trainer {
namespace {

template <typename Options>
bool NeedsTheBaseStep(const std::vector<torch::optim::OptimizerParamGroup>& groups) {
  for (const auto& group : groups) {
    if (static_cast<const Options&>(group.options()).amsgrad()) return true;
    for (const auto& p : group.params()) {
      if (p.grad().defined() && p.grad().is_sparse()) return true;
    }
  }
  return false;
}

// One Adam (kDecoupled false: L2 weight decay added to the gradient) or AdamW (true: decoupled
// weight decay) step over every group, with the base classes' arithmetic, operation for
// operation, on the base classes' state.
template <typename Options, typename ParamState, bool kDecoupled, typename StateMap>
void ForeachAdamStep(std::vector<torch::optim::OptimizerParamGroup>& groups, StateMap& states) {
  using Key = typename StateMap::key_type;
  for (auto& group : groups) {
    const auto& options = static_cast<const Options&>(group.options());
    const double beta1 = std::get<0>(options.betas());
    const double beta2 = std::get<1>(options.betas());
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    // Per parameter, as each keeps its own step count: sqrt(1 - beta2^t) and -lr / (1 - beta1^t).
    std::vector<at::Scalar> denom_scales, step_sizes;
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const Key key = OptimizerStateKey<Key>(p);
      auto it = states.find(key);
      if (it == states.end()) {
        auto fresh = std::make_unique<ParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        it = states.emplace(key, std::move(fresh)).first;
      }
      auto& state = static_cast<ParamState&>(*it->second);
      state.step(state.step() + 1);
      const double bias_correction1 = 1 - std::pow(beta1, state.step());
      const double bias_correction2 = 1 - std::pow(beta2, state.step());
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(state.exp_avg());
      exp_avg_sqs.push_back(state.exp_avg_sq());
      denom_scales.emplace_back(std::sqrt(bias_correction2));
      step_sizes.emplace_back(-options.lr() / bias_correction1);
    }
    if (params.empty()) continue;
    if (options.weight_decay() != 0) {
      if constexpr (kDecoupled) {
        at::_foreach_mul_(params, at::Scalar(1 - options.lr() * options.weight_decay()));
      } else {
        grads = at::_foreach_add(grads, params, at::Scalar(options.weight_decay()));
      }
    }
    at::_foreach_mul_(exp_avgs, at::Scalar(beta1));
    at::_foreach_add_(exp_avgs, grads, at::Scalar(1 - beta1));
    at::_foreach_mul_(exp_avg_sqs, at::Scalar(beta2));
    at::_foreach_addcmul_(exp_avg_sqs, grads, grads, at::Scalar(1 - beta2));
    std::vector<torch::Tensor> denoms = at::_foreach_sqrt(exp_avg_sqs);
    at::_foreach_div_(denoms, denom_scales);
    at::_foreach_add_(denoms, at::Scalar(options.eps()));
    at::_foreach_addcdiv_(params, exp_avgs, denoms, step_sizes);
  }
}

// Runs `closure` (if any) with gradients on, as the base classes do.
torch::Tensor EvaluateClosure(const torch::optim::Optimizer::LossClosure& closure) {
  if (closure == nullptr) return {};
  at::AutoGradMode enable_grad(true);
  return closure();
}

}  // namespace

torch::Tensor ForeachAdamW::step(LossClosure closure) {
  using Options = torch::optim::AdamWOptions;
  if (NeedsTheBaseStep<Options>(param_groups_)) return AdamW::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss = EvaluateClosure(closure);
  ForeachAdamStep<Options, torch::optim::AdamWParamState, /*kDecoupled=*/true>(param_groups_,
                                                                               state_);
  return loss;
}

torch::Tensor ForeachAdam::step(LossClosure closure) {
  using Options = torch::optim::AdamOptions;
  if (NeedsTheBaseStep<Options>(param_groups_)) return Adam::step(std::move(closure));
  torch::NoGradGuard no_grad;
  torch::Tensor loss = EvaluateClosure(closure);
  ForeachAdamStep<Options, torch::optim::AdamParamState, /*kDecoupled=*/false>(param_groups_,
                                                                               state_);
  return loss;
}

double ClipGradNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const auto& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  std::vector<torch::Tensor> norms = at::_foreach_norm(grads, 2);
  torch::Tensor total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  torch::Tensor coef = torch::clamp_max(max_norm / (total + 1e-6), 1.0);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::_foreach_mul_(grads, coef);  // no wait for the device before scaling
#else
  at::_foreach_mul_(grads, coef.item());
#endif
  return total.item<double>();
}

}  // namespace peco::trainer
