#include "trainer/export/beit_export.h"

#include "trainer/io/torch_file.h"
#include "trainer/models/beit_weights.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

absl::Status ExportState(const torch::nn::Module& module, const std::string& path) {
  absl::StatusOr<c10::IValue> file = TorchCall(path, [&] {
    c10::Dict<std::string, at::Tensor> state;
    for (const auto& [name, tensor] : StateDictInOfficialOrder(module)) {
      state.insert(name, tensor.to(torch::kCPU).contiguous());
    }
    c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
    root.insert(c10::IValue(std::string("model")), c10::IValue(state));
    return c10::IValue(root);
  });
  if (!file.ok()) return file.status();
  return WriteTorchFile(path, *file);
}

}  // namespace

absl::Status ExportBeitPretrain(const BeitMim& model, const std::string& path) {
  return ExportState(*model, path);
}

absl::Status ExportBeitFinetune(const BeitClassifier& model, const std::string& path) {
  return ExportState(*model, path);
}

}  // namespace peco::trainer
