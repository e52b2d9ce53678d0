#include "trainer/export/moco_export.h"

#include "trainer/io/torch_file.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

// PyTorch's state_dict order: a module's own parameters, then its own buffers, then each child's.
void AddStateInOrder(const torch::nn::Module& module, const std::string& prefix,
                     c10::Dict<std::string, at::Tensor>* state) {
  for (const auto& item : module.named_parameters(/*recurse=*/false)) {
    state->insert(prefix + item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  for (const auto& item : module.named_buffers(/*recurse=*/false)) {
    state->insert(prefix + item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  for (const auto& child : module.named_children()) {
    AddStateInOrder(*child.value(), prefix + child.key() + ".", state);
  }
}

}  // namespace

absl::Status ExportMocoV3(MocoV3& model, int64_t step, const std::string& arch,
                          const std::string& path) {
  absl::StatusOr<c10::IValue> file = TorchCall(path, [&] {
    c10::Dict<std::string, at::Tensor> state;
    AddStateInOrder(*model, "module.", &state);
    c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
    root.insert(c10::IValue(std::string("epoch")), c10::IValue(step));
    root.insert(c10::IValue(std::string("arch")), c10::IValue(arch));
    root.insert(c10::IValue(std::string("state_dict")), c10::IValue(state));
    return c10::IValue(root);
  });
  if (!file.ok()) return file.status();
  return WriteTorchFile(path, *file);
}

}  // namespace peco::trainer
