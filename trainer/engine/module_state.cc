#include "trainer/engine/module_state.h"

#include <ATen/CPUGeneratorImpl.h>

#include <map>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "trainer/engine/optimizer_state_key.h"
#include "trainer/io/torch_file.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

std::string ShapeText(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]");
}

// The named tensors of a file written by EncodeTensorDict, by name (DataLoss when a name
// repeats).
absl::StatusOr<std::map<std::string, torch::Tensor>> DecodeTensors(const std::string& bytes,
                                                                   const std::string& what) {
  ASSIGN_OR_RETURN(NamedTensors tensors, DecodeTensorDict(bytes, what));
  std::map<std::string, torch::Tensor> by_name;
  for (auto& [name, tensor] : tensors) {
    if (!by_name.emplace(name, std::move(tensor)).second) {
      return absl::DataLossError(absl::StrCat(what, ": tensor '", name, "' appears twice"));
    }
  }
  return by_name;
}

// Takes tensor `name` of `file` (removing it), checked against `like`'s shape and dtype.
absl::StatusOr<torch::Tensor> Take(std::map<std::string, torch::Tensor>& file,
                                   const std::string& name, const torch::Tensor& like,
                                   const std::string& what) {
  auto it = file.find(name);
  if (it == file.end()) return absl::DataLossError(absl::StrCat(what, ": no tensor '", name, "'"));
  torch::Tensor tensor = std::move(it->second);
  file.erase(it);
  if (like.defined() && (tensor.sizes() != like.sizes() || tensor.dtype() != like.dtype())) {
    return absl::DataLossError(absl::StrCat(
        what, ": '", name, "' is ", ShapeText(tensor), " ", c10::toString(tensor.scalar_type()),
        " in the file, ", ShapeText(like), " ", c10::toString(like.scalar_type()), " here"));
  }
  return tensor;
}

absl::Status NothingLeft(const std::map<std::string, torch::Tensor>& file,
                         const std::string& what) {
  if (file.empty()) return absl::OkStatus();
  std::vector<std::string> names;
  for (const auto& [name, tensor] : file) names.push_back(name);
  return absl::DataLossError(
      absl::StrCat(what, ": unexpected tensors ", absl::StrJoin(names, ", ")));
}

// ---- Adam and AdamW ----

template <typename Options>
void AddGroupOptions(const Options& options, const std::string& prefix, NamedTensors* out) {
  out->emplace_back(prefix + "lr", torch::tensor(options.lr(), torch::kDouble));
  out->emplace_back(
      prefix + "betas",
      torch::tensor({std::get<0>(options.betas()), std::get<1>(options.betas())}, torch::kDouble));
  out->emplace_back(prefix + "eps", torch::tensor(options.eps(), torch::kDouble));
  out->emplace_back(prefix + "weight_decay", torch::tensor(options.weight_decay(), torch::kDouble));
  out->emplace_back(prefix + "amsgrad", torch::tensor(options.amsgrad()));
}

template <typename Options, typename ParamState, typename Optim>
absl::StatusOr<std::string> SaveAdam(const Optim& optimizer, const std::string& what) {
  using Key = typename std::remove_reference_t<decltype(optimizer.state())>::key_type;
  NamedTensors out;
  const auto& groups = optimizer.param_groups();
  out.emplace_back("param_groups", torch::tensor(static_cast<int64_t>(groups.size())));
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string group = absl::StrCat("param_groups.", g, ".");
    AddGroupOptions(static_cast<const Options&>(groups[g].options()), group, &out);
    const std::vector<torch::Tensor>& params = groups[g].params();
    out.emplace_back(group + "params", torch::tensor(static_cast<int64_t>(params.size())));
    for (size_t i = 0; i < params.size(); ++i) {
      auto it = optimizer.state().find(OptimizerStateKey<Key>(params[i]));
      if (it == optimizer.state().end()) continue;  // never stepped
      const auto& state = static_cast<const ParamState&>(*it->second);
      const std::string prefix = absl::StrCat("state.", g, ".", i, ".");
      out.emplace_back(prefix + "step", torch::tensor(static_cast<int64_t>(state.step())));
      out.emplace_back(prefix + "exp_avg", state.exp_avg());
      out.emplace_back(prefix + "exp_avg_sq", state.exp_avg_sq());
      if (state.max_exp_avg_sq().defined()) {
        out.emplace_back(prefix + "max_exp_avg_sq", state.max_exp_avg_sq());
      }
    }
  }
  return EncodeTensorDict(out, what);
}

// A 0-dim tensor of `dtype` from the file, as a C++ value.
template <typename T>
absl::StatusOr<T> TakeScalar(std::map<std::string, torch::Tensor>& file, const std::string& name,
                             c10::ScalarType dtype, const std::string& what) {
  ASSIGN_OR_RETURN(torch::Tensor t,
                   Take(file, name, torch::empty({}, torch::TensorOptions().dtype(dtype)), what));
  return t.item<T>();
}

template <typename Options, typename ParamState, typename Optim>
absl::Status LoadAdam(std::map<std::string, torch::Tensor> file, Optim& optimizer,
                      const std::string& what) {
  using Key = typename std::remove_reference_t<decltype(optimizer.state())>::key_type;
  auto& groups = optimizer.param_groups();
  ASSIGN_OR_RETURN(const int64_t group_count,
                   TakeScalar<int64_t>(file, "param_groups", torch::kLong, what));
  if (group_count != static_cast<int64_t>(groups.size())) {
    return absl::DataLossError(absl::StrCat(
        what, ": ", group_count, " parameter groups in the file, ", groups.size(), " here"));
  }
  // Everything is read and checked first; the optimizer changes only when all of it matches.
  struct Group {
    double lr, eps, weight_decay, beta1, beta2;
    bool amsgrad;
    std::vector<std::pair<Key, std::unique_ptr<ParamState>>> states;
  };
  std::vector<Group> loaded(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    const std::string group = absl::StrCat("param_groups.", g, ".");
    Group& out = loaded[g];
    ASSIGN_OR_RETURN(out.lr, TakeScalar<double>(file, group + "lr", torch::kDouble, what));
    ASSIGN_OR_RETURN(out.eps, TakeScalar<double>(file, group + "eps", torch::kDouble, what));
    ASSIGN_OR_RETURN(out.weight_decay,
                     TakeScalar<double>(file, group + "weight_decay", torch::kDouble, what));
    ASSIGN_OR_RETURN(out.amsgrad, TakeScalar<bool>(file, group + "amsgrad", torch::kBool, what));
    ASSIGN_OR_RETURN(torch::Tensor betas,
                     Take(file, group + "betas", torch::empty({2}, torch::kDouble), what));
    out.beta1 = betas[0].item<double>();
    out.beta2 = betas[1].item<double>();
    const std::vector<torch::Tensor>& params = groups[g].params();
    ASSIGN_OR_RETURN(const int64_t param_count,
                     TakeScalar<int64_t>(file, group + "params", torch::kLong, what));
    if (param_count != static_cast<int64_t>(params.size())) {
      return absl::DataLossError(absl::StrCat(what, ": group ", g, " has ", param_count,
                                              " parameters in the file, ", params.size(), " here"));
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const std::string prefix = absl::StrCat("state.", g, ".", i, ".");
      if (file.count(prefix + "step") == 0) continue;  // never stepped
      const torch::Tensor& p = params[i];
      const torch::Tensor like = torch::empty(p.sizes(), torch::TensorOptions().dtype(p.dtype()));
      auto state = std::make_unique<ParamState>();
      ASSIGN_OR_RETURN(const int64_t step,
                       TakeScalar<int64_t>(file, prefix + "step", torch::kLong, what));
      state->step(step);
      ASSIGN_OR_RETURN(torch::Tensor exp_avg, Take(file, prefix + "exp_avg", like, what));
      ASSIGN_OR_RETURN(torch::Tensor exp_avg_sq, Take(file, prefix + "exp_avg_sq", like, what));
      state->exp_avg(exp_avg.to(p.device()));
      state->exp_avg_sq(exp_avg_sq.to(p.device()));
      if (file.count(prefix + "max_exp_avg_sq") != 0) {
        ASSIGN_OR_RETURN(torch::Tensor max_sq, Take(file, prefix + "max_exp_avg_sq", like, what));
        state->max_exp_avg_sq(max_sq.to(p.device()));
      }
      out.states.emplace_back(OptimizerStateKey<Key>(p), std::move(state));
    }
  }
  RETURN_IF_ERROR(NothingLeft(file, what));
  optimizer.state().clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& options = static_cast<Options&>(groups[g].options());
    Group& in = loaded[g];
    options.lr(in.lr).eps(in.eps).weight_decay(in.weight_decay).amsgrad(in.amsgrad);
    options.betas(std::make_tuple(in.beta1, in.beta2));
    for (auto& [key, state] : in.states) optimizer.state()[key] = std::move(state);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeModule(const torch::nn::Module& module) {
  NamedTensors tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    tensors.emplace_back(item.key(), item.value());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    tensors.emplace_back(item.key(), item.value());
  }
  return EncodeTensorDict(tensors, "module");
}

absl::Status DeserializeModule(const std::string& bytes, torch::nn::Module& module,
                               const std::string& what) {
  ASSIGN_OR_RETURN(auto file, DecodeTensors(bytes, what));
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (destination, source)
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    ASSIGN_OR_RETURN(torch::Tensor source, Take(file, item.key(), item.value(), what));
    copies.emplace_back(item.value(), std::move(source));
  }
  for (const auto& item : module.named_buffers(/*recurse=*/true)) {
    ASSIGN_OR_RETURN(torch::Tensor source, Take(file, item.key(), item.value(), what));
    copies.emplace_back(item.value(), std::move(source));
  }
  RETURN_IF_ERROR(NothingLeft(file, what));
  return TorchCall(what, [&] {
    torch::NoGradGuard no_grad;
    for (auto& [destination, source] : copies) destination.copy_(source);
  });
}

absl::StatusOr<std::string> SerializeOptimizer(const torch::optim::Optimizer& optimizer) {
  if (const auto* adamw = dynamic_cast<const torch::optim::AdamW*>(&optimizer)) {
    return SaveAdam<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*adamw, "optimizer");
  }
  if (const auto* adam = dynamic_cast<const torch::optim::Adam*>(&optimizer)) {
    return SaveAdam<torch::optim::AdamOptions, torch::optim::AdamParamState>(*adam, "optimizer");
  }
  return absl::InvalidArgumentError("optimizer: only Adam and AdamW states can be saved");
}

absl::Status DeserializeOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer,
                                  const std::string& what) {
  ASSIGN_OR_RETURN(auto file, DecodeTensors(bytes, what));
  if (auto* adamw = dynamic_cast<torch::optim::AdamW*>(&optimizer)) {
    return LoadAdam<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(std::move(file),
                                                                               *adamw, what);
  }
  if (auto* adam = dynamic_cast<torch::optim::Adam*>(&optimizer)) {
    return LoadAdam<torch::optim::AdamOptions, torch::optim::AdamParamState>(std::move(file), *adam,
                                                                             what);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": only Adam and AdamW states can be restored"));
}

absl::StatusOr<std::string> SerializeCpuRng() {
  torch::Tensor state;
  {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    state = generator.get_state();
  }
  return EncodeTensorDict({{"cpu_rng", state}}, "rng");
}

absl::Status DeserializeCpuRng(const std::string& bytes, const std::string& what) {
  ASSIGN_OR_RETURN(auto file, DecodeTensors(bytes, what));
  torch::Tensor like;
  {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    like = generator.get_state();
  }
  ASSIGN_OR_RETURN(torch::Tensor state, Take(file, "cpu_rng", like, what));
  RETURN_IF_ERROR(NothingLeft(file, what));
  return TorchCall(what, [&] {
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  });
}

absl::Status AddModelAndOptimizer(const torch::nn::Module& model,
                                  const torch::optim::Optimizer& optimizer, CheckpointFiles* files,
                                  const char* model_file, const char* optimizer_file) {
  ASSIGN_OR_RETURN((*files)[model_file], SerializeModule(model));
  ASSIGN_OR_RETURN((*files)[optimizer_file], SerializeOptimizer(optimizer));
  return absl::OkStatus();
}

absl::Status RestoreModelAndOptimizer(const CheckpointFiles& files, const std::string& dir,
                                      torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                                      const char* model_file, const char* optimizer_file) {
  ASSIGN_OR_RETURN(const std::string* model_bytes, CheckpointFile(files, model_file, dir));
  ASSIGN_OR_RETURN(const std::string* optimizer_bytes, CheckpointFile(files, optimizer_file, dir));
  RETURN_IF_ERROR(DeserializeModule(*model_bytes, model, absl::StrCat(dir, "/", model_file)));
  return DeserializeOptimizer(*optimizer_bytes, optimizer, absl::StrCat(dir, "/", optimizer_file));
}

}  // namespace peco::trainer
