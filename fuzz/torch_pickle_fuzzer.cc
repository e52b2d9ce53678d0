// Fuzzes the pickle interpreter that reads every PyTorch file crossing a machine
// (trainer/io/torch_pickle.h: the data.pkl of a torch.save zip; ReadTorchFile feeds it).
//
// Input: a pickle program. Storages are served by a loader that returns zeros of the requested
// size (up to 4,096 elements; larger requests are refused, as a zip record of the wrong size
// would be).
//
// Asserts, besides no crash, no sanitizer report, no leak (cycles included) and no stack
// overflow (deep nesting):
//  - Run() either returns a value or InvalidArgument naming the problem ("pickle: ...");
//  - every storage key is loaded at most once.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_util.h"
#include "trainer/io/torch_pickle.h"

namespace peco::trainer {
namespace {

void FuzzPickle(const std::string& program) {
  std::set<std::string> loaded;
  StorageLoader loader = [&loaded](const std::string& key, c10::ScalarType dtype,
                                   int64_t numel) -> absl::StatusOr<at::Tensor> {
    PECO_FUZZ_CHECK(loaded.insert(key).second, "storage ", key, " loaded twice");
    if (numel < 0 || numel > 4096) {
      return absl::InvalidArgumentError(absl::StrCat("storage of ", numel, " elements"));
    }
    return at::zeros({numel}, at::TensorOptions().dtype(dtype));
  };
  TorchPickleInterpreter interpreter(program, loader);
  absl::StatusOr<c10::IValue> value = interpreter.Run();
  if (!value.ok()) {
    PECO_FUZZ_CHECK(value.status().code() == absl::StatusCode::kInvalidArgument,
                    value.status().ToString());
  }
}

}  // namespace
}  // namespace peco::trainer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peco::trainer::FuzzPickle(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
