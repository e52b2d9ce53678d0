#include "trainer/models/weights.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peco::trainer {
namespace {

std::string ShapeString(at::IntArrayRef sizes) {
  return absl::StrCat("[", absl::StrJoin(sizes.vec(), ", "), "]");
}

}  // namespace

NamedTensors ModuleState(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters())
    out.emplace_back(item.key(), item.value().detach());
  for (const auto& item : module.named_buffers())
    out.emplace_back(item.key(), item.value().detach());
  return out;
}

absl::Status LoadNamedTensors(torch::nn::Module& module, const NamedTensors& tensors,
                              absl::string_view what, bool strict) {
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [name, tensor] : tensors) given[name] = &tensor;
  std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
  std::map<std::string, bool> known;
  auto check = [&](const std::string& name, torch::Tensor target) -> absl::Status {
    known[name] = true;
    auto it = given.find(name);
    if (it == given.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": missing key '", name, "' (expected shape ", ShapeString(target.sizes()), ")"));
    }
    if (it->second->sizes() != target.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": key '", name, "' has shape ",
                                                     ShapeString(it->second->sizes()),
                                                     ", expected ", ShapeString(target.sizes())));
    }
    copies.emplace_back(target, it->second);
    return absl::OkStatus();
  };
  for (const auto& item : module.named_parameters()) {
    absl::Status status = check(item.key(), item.value());
    if (!status.ok()) return status;
  }
  for (const auto& item : module.named_buffers()) {
    absl::Status status = check(item.key(), item.value());
    if (!status.ok()) return status;
  }
  if (strict) {
    for (const auto& [name, tensor] : tensors) {
      if (known.count(name) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": unexpected key '", name, "'"));
      }
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [target, source] : copies) target.copy_(*source);
  return absl::OkStatus();
}

NamedTensors SelectPrefix(const NamedTensors& tensors, absl::string_view prefix) {
  NamedTensors out;
  for (const auto& [name, tensor] : tensors) {
    if (absl::string_view(name).substr(0, prefix.size()) == prefix) {
      out.emplace_back(name.substr(prefix.size()), tensor);
    }
  }
  return out;
}

}  // namespace peco::trainer
