#include "trainer/engine/distributed_module.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

// Groups consecutive tensors of one dtype and device into buckets of at most `bucket_bytes`
// (a larger tensor alone). Depends only on shapes and order, so it agrees across ranks.
std::vector<std::vector<int64_t>> PlanBuckets(const std::vector<torch::Tensor>& tensors,
                                              int64_t bucket_bytes) {
  std::vector<std::vector<int64_t>> buckets;
  int64_t bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    const int64_t size = t.numel() * static_cast<int64_t>(t.element_size());
    bool fresh = buckets.empty() || bytes + size > bucket_bytes;
    if (!fresh) {
      const torch::Tensor& first = tensors[buckets.back().front()];
      fresh = first.scalar_type() != t.scalar_type() || first.device() != t.device();
    }
    if (fresh) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(static_cast<int64_t>(i));
    bytes += size;
  }
  return buckets;
}

// Packs `parts` into one contiguous 1-D tensor (or a flat view when there is one contiguous part).
torch::Tensor Flatten(const std::vector<torch::Tensor>& parts) {
  if (parts.size() == 1 && parts[0].is_contiguous()) return parts[0].view({-1});
  std::vector<torch::Tensor> flat;
  flat.reserve(parts.size());
  for (const torch::Tensor& p : parts) flat.push_back(p.reshape({-1}));
  return torch::cat(flat);
}

// Copies `flat` back into `parts` unless it is already a view of the single part.
void Unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>& parts) {
  if (parts.size() == 1 && parts[0].is_contiguous() && flat.data_ptr() == parts[0].data_ptr()) {
    return;
  }
  int64_t offset = 0;
  for (torch::Tensor& p : parts) {
    p.copy_(flat.narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
}

}  // namespace

absl::Status BroadcastModuleState(DistributedContext& context, torch::nn::Module& module) {
  if (!context.is_distributed()) return absl::OkStatus();
  std::vector<torch::Tensor> tensors;
  for (const torch::Tensor& p : module.parameters(/*recurse=*/true)) tensors.push_back(p);
  for (const torch::Tensor& b : module.buffers(/*recurse=*/true)) {
    if (b.defined()) tensors.push_back(b);
  }
  const std::string context_text = absl::StrCat("rank ", context.rank(), ": broadcasting state");
  for (const std::vector<int64_t>& bucket : PlanBuckets(tensors, 25 * 1024 * 1024)) {
    std::vector<torch::Tensor> parts;
    for (int64_t i : bucket) parts.push_back(tensors[i]);
    torch::NoGradGuard no_grad;
    absl::StatusOr<torch::Tensor> flat = TorchCall(context_text, [&] { return Flatten(parts); });
    if (!flat.ok()) return flat.status();
    std::vector<torch::Tensor> one{*flat};
    if (absl::Status s = context.Broadcast(one, /*root=*/0); !s.ok()) return s;
    if (absl::Status s = TorchCall(context_text, [&] { Unflatten(one[0], parts); }); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status GradientAllReducerOptions::Validate() const {
  if (bucket_bytes < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("distributed.bucket_bytes: expected >= 1, got ", bucket_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<GradientAllReducer> GradientAllReducer::Create(
    DistributedContext* context, std::vector<torch::Tensor> parameters,
    const GradientAllReducerOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::vector<torch::Tensor> trainable;
  for (torch::Tensor& p : parameters) {
    if (!p.requires_grad()) continue;
    if (p.device() != context->options().device) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rank ", context->rank(), ": parameter ", trainable.size(), " is on ", p.device().str(),
          ", the process group on ", context->options().device.str()));
    }
    trainable.push_back(std::move(p));
  }
  std::vector<std::vector<int64_t>> buckets = PlanBuckets(trainable, options.bucket_bytes);
  return GradientAllReducer(context, std::move(trainable), std::move(buckets));
}

GradientAllReducer::GradientAllReducer(DistributedContext* context,
                                       std::vector<torch::Tensor> parameters,
                                       std::vector<std::vector<int64_t>> buckets)
    : context_(context), parameters_(std::move(parameters)), buckets_(std::move(buckets)) {}

absl::Status GradientAllReducer::AllReduce() {
  Faults().InCollective();
  if (!context_->is_distributed()) return absl::OkStatus();
  const std::string context_text = absl::StrCat("rank ", context_->rank(), ": gradient bucket");
  for (size_t b = 0; b < buckets_.size(); ++b) {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> grads;
    absl::StatusOr<torch::Tensor> flat = TorchCall(context_text, [&] {
      for (int64_t i : buckets_[b]) {
        torch::Tensor& p = parameters_[i];
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        grads.push_back(p.grad());
      }
      return Flatten(grads);
    });
    if (!flat.ok()) return flat.status();
    std::vector<torch::Tensor> one{*flat};
    if (absl::Status s = context_->AllReduceSum(one); !s.ok()) return s;
    if (absl::Status s = TorchCall(context_text,
                                   [&] {
                                     one[0].div_(context_->world_size());
                                     Unflatten(one[0], grads);
                                   });
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace peco::trainer
