#include "trainer/engine/distributed_autograd.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peco::trainer {
namespace {

torch::Tensor SumAcrossRanks(DistributedContext* group, const torch::Tensor& tensor,
                             const char* what) {
  std::vector<torch::Tensor> buffer = {tensor.detach().clone().contiguous()};
  if (absl::Status status = group->AllReduceSum(buffer); !status.ok()) {
    throw std::runtime_error(
        absl::StrCat(what, " on rank ", group->rank(), ": ", status.ToString()));
  }
  return buffer[0];
}

class AllReduceSumFunction : public torch::autograd::Function<AllReduceSumFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& tensor,
                               int64_t group_address) {
    ctx->saved_data["group"] = group_address;
    return SumAcrossRanks(reinterpret_cast<DistributedContext*>(group_address), tensor,
                          "summing batch statistics across ranks");
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* group = reinterpret_cast<DistributedContext*>(ctx->saved_data["group"].toInt());
    return {SumAcrossRanks(group, grads[0], "summing the gradients of batch statistics"),
            torch::Tensor()};
  }
};

}  // namespace

torch::Tensor DifferentiableAllReduceSum(DistributedContext* group, const torch::Tensor& tensor) {
  if (group == nullptr || !group->is_distributed()) return tensor;
  return AllReduceSumFunction::apply(tensor, reinterpret_cast<int64_t>(group));
}

std::function<torch::Tensor(const torch::Tensor&)> SumOverRanks(DistributedContext* group) {
  if (group == nullptr || !group->is_distributed()) return nullptr;
  return [group](const torch::Tensor& tensor) { return DifferentiableAllReduceSum(group, tensor); };
}

}  // namespace peco::trainer
