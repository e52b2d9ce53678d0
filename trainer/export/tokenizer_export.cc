#include "trainer/export/tokenizer_export.h"

#include "trainer/io/torch_file.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {

absl::Status ExportTokenizer(VqTokenizer& model, const std::string& path) {
  absl::StatusOr<c10::IValue> file = TorchCall("export", [&] {
    c10::Dict<std::string, at::Tensor> state;
    for (const auto& item : model->named_parameters()) {
      state.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
    }
    c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
    root.insert(c10::IValue(std::string("state_dict")), c10::IValue(state));
    return c10::IValue(root);
  });
  if (!file.ok()) return file.status();
  return WriteTorchFile(path, *file);
}

}  // namespace peco::trainer
