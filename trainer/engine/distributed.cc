#include "trainer/engine/distributed.h"

#include <cstdlib>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "trainer/engine/distributed_backend.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

absl::Status FieldError(const char* field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("distributed.", field, ": ", what));
}

// Parses variable `name` as an integer in [lo, hi]; nullopt when unset.
absl::StatusOr<std::optional<int64_t>> EnvInt(const EnvLookup& env, const char* name, int64_t lo,
                                              int64_t hi) {
  const std::optional<std::string> text = env(name);
  if (!text.has_value()) return std::optional<int64_t>();
  int64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < lo || value > hi) {
    return absl::InvalidArgumentError(absl::StrCat(
        "environment ", name, ": expected an integer in [", lo, ", ", hi, "], got '", *text, "'"));
  }
  return std::optional<int64_t>(value);
}

absl::Status Missing(const char* name, int64_t world_size) {
  return absl::InvalidArgumentError(
      absl::StrCat("environment ", name, ": required when WORLD_SIZE is ", world_size));
}

}  // namespace

absl::Status DistributedOptions::Validate() const {
  if (world_size < 1) {
    return FieldError("world_size", absl::StrCat("expected >= 1, got ", world_size));
  }
  if (rank < 0 || rank >= world_size) {
    return FieldError("rank", absl::StrCat("expected in [0, ", world_size, "), got ", rank));
  }
  if (local_rank < 0) {
    return FieldError("local_rank", absl::StrCat("expected >= 0, got ", local_rank));
  }
  if (attempt < 0) return FieldError("attempt", absl::StrCat("expected >= 0, got ", attempt));
  if (collective_timeout <= std::chrono::milliseconds(0)) {
    return FieldError("collective_timeout", "expected > 0");
  }
  if (rendezvous_timeout <= std::chrono::milliseconds(0)) {
    return FieldError("rendezvous_timeout", "expected > 0");
  }
  if (world_size > 1) {
    if (master_addr.empty()) return FieldError("master_addr", "expected a host name or address");
    if (master_port < 1 || master_port > 65535) {
      return FieldError("master_port", absl::StrCat("expected in [1, 65535], got ", master_port));
    }
    if (job_id.empty()) return FieldError("job_id", "expected a non-empty id");
  }
  return absl::OkStatus();
}

std::optional<std::string> ProcessEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

absl::StatusOr<DistributedOptions> DistributedOptionsFromEnv(const EnvLookup& env) {
  DistributedOptions options;
  absl::StatusOr<std::optional<int64_t>> world = EnvInt(env, "WORLD_SIZE", 1, 1 << 20);
  if (!world.ok()) return world.status();
  options.world_size = static_cast<int>(world->value_or(1));
  absl::StatusOr<std::optional<int64_t>> rank = EnvInt(env, "RANK", 0, options.world_size - 1);
  if (!rank.ok()) return rank.status();
  absl::StatusOr<std::optional<int64_t>> local_rank = EnvInt(env, "LOCAL_RANK", 0, 1 << 20);
  if (!local_rank.ok()) return local_rank.status();
  absl::StatusOr<std::optional<int64_t>> attempt = EnvInt(env, "PECO_ATTEMPT", 0, INT64_MAX);
  if (!attempt.ok()) return attempt.status();
  options.rank = static_cast<int>(rank->value_or(0));
  options.local_rank = static_cast<int>(local_rank->value_or(0));
  options.attempt = attempt->value_or(0);
  if (std::optional<std::string> job = env("PECO_JOB_ID"); job.has_value() && !job->empty()) {
    options.job_id = *job;
  }
  if (options.world_size > 1) {
    if (!rank->has_value()) return Missing("RANK", options.world_size);
    const std::optional<std::string> addr = env("MASTER_ADDR");
    if (!addr.has_value() || addr->empty()) return Missing("MASTER_ADDR", options.world_size);
    options.master_addr = *addr;
    absl::StatusOr<std::optional<int64_t>> port = EnvInt(env, "MASTER_PORT", 1, 65535);
    if (!port.ok()) return port.status();
    if (!port->has_value()) return Missing("MASTER_PORT", options.world_size);
    options.master_port = static_cast<int>(**port);
  }
  return options;
}

absl::StatusOr<std::unique_ptr<DistributedContext>> DistributedContext::Create(
    const DistributedOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  std::unique_ptr<CollectiveGroup> group;
  if (options.world_size > 1) {
    absl::StatusOr<std::unique_ptr<CollectiveGroup>> connected = ConnectC10dGroup(options);
    if (!connected.ok()) return connected.status();
    group = *std::move(connected);
  }
  return CreateWithGroup(options, std::move(group));
}

absl::StatusOr<std::unique_ptr<DistributedContext>> DistributedContext::CreateWithGroup(
    const DistributedOptions& options, std::unique_ptr<CollectiveGroup> group) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  if (options.world_size > 1 && group == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("distributed: world_size ", options.world_size, " needs a group"));
  }
  return std::unique_ptr<DistributedContext>(new DistributedContext(options, std::move(group)));
}

DistributedContext::DistributedContext(const DistributedOptions& options,
                                       std::unique_ptr<CollectiveGroup> group)
    : options_(options), group_(std::move(group)) {}

DistributedContext::~DistributedContext() = default;

namespace {

absl::Status CheckTensors(const std::vector<torch::Tensor>& tensors, const torch::Device& device,
                          int rank, const char* operation) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    if (!t.defined() || !t.is_contiguous() || t.device() != device) {
      return absl::InvalidArgumentError(absl::StrCat("rank ", rank, ": ", operation, ": tensor ", i,
                                                     " must be defined, contiguous and on ",
                                                     device.str()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status DistributedContext::AllReduceSum(std::vector<torch::Tensor>& tensors) {
  if (absl::Status s = CheckTensors(tensors, options_.device, rank(), "allreduce"); !s.ok()) {
    return s;
  }
  if (group_ == nullptr || tensors.empty()) return absl::OkStatus();
  return group_->AllReduceSum(tensors);
}

absl::Status DistributedContext::Broadcast(std::vector<torch::Tensor>& tensors, int root) {
  if (root < 0 || root >= world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank(), ": broadcast root ", root,
                                                   " outside [0, ", world_size(), ")"));
  }
  if (absl::Status s = CheckTensors(tensors, options_.device, rank(), "broadcast"); !s.ok()) {
    return s;
  }
  if (group_ == nullptr || tensors.empty()) return absl::OkStatus();
  return group_->Broadcast(tensors, root);
}

absl::StatusOr<std::vector<double>> DistributedContext::AllReduceMean(
    const std::vector<double>& values) {
  if (group_ == nullptr || values.empty()) return values;
  absl::StatusOr<torch::Tensor> packed = TorchCall("packing metrics", [&] {
    return torch::tensor(values, torch::kFloat64).to(options_.device);
  });
  if (!packed.ok()) return packed.status();
  std::vector<torch::Tensor> tensors{*packed};
  if (absl::Status s = group_->AllReduceSum(tensors); !s.ok()) return s;
  return TorchCall("unpacking metrics", [&] {
    const torch::Tensor mean = (tensors[0] / world_size()).to(torch::kCPU).contiguous();
    return std::vector<double>(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  });
}

absl::Status DistributedContext::Barrier() {
  if (group_ == nullptr) return absl::OkStatus();
  return group_->Barrier();
}

}  // namespace peco::trainer
