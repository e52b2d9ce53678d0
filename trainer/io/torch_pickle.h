// A small interpreter for the pickle programs that Python's torch.save writes (data.pkl).
//
// torch.save uses pickle protocol 2. TorchPickleInterpreter runs such a program and builds a
// c10::IValue tree from it. It understands only the opcodes and globals that appear in PyTorch
// checkpoints (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and _rebuild_parameter,
// the torch.*Storage types, torch.Size, torch.device and the torch.jit._pickle helpers that
// LibTorch's own pickler emits). It never imports or calls anything else: an unknown opcode or
// global makes Run() fail with an error that names it, and no partial result is returned.
//
// Storages are referred to by persistent ids ('storage', <storage type>, key, location, numel);
// their bytes are obtained through the StorageLoader supplied by the caller (for example from
// the data/<key> records of a zip archive). Storages are loaded once per key, so tensors that
// are views of one storage share memory, as they do in Python. All tensors are on the CPU.
//
// Hostile input: besides unknown opcodes and globals, the interpreter refuses objects nested
// deeper than 512 levels and containers that contain themselves, converts an object reached
// several times through the memo once (the IValues share it, so memo references cannot expand
// into exponentially many values), tears its object graph down without recursion (a chain of a
// million nested tuples cannot overflow the stack), and checks every tensor view against its
// storage. Run's cost is linear in the size of `data` plus the storages it loads.
//
// Ownership: the interpreter copies what it needs from `data`; the returned IValue owns all of
// its memory. Thread-safety: an instance is single-use and not thread-safe; distinct instances
// may run concurrently.
#ifndef PECO_TRAINER_IO_TORCH_PICKLE_H_
#define PECO_TRAINER_IO_TORCH_PICKLE_H_

#include <ATen/core/ivalue.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco::trainer {

// Returns a 1-D CPU tensor of `numel` elements of `dtype` holding the bytes of storage `key`.
// The tensor must own its memory.
using StorageLoader = std::function<absl::StatusOr<at::Tensor>(
    const std::string& key, c10::ScalarType dtype, int64_t numel)>;

class TorchPickleInterpreter {
 public:
  // `data` must outlive Run(). `loader` is called for each distinct storage key.
  TorchPickleInterpreter(absl::string_view data, StorageLoader loader);
  ~TorchPickleInterpreter();

  TorchPickleInterpreter(const TorchPickleInterpreter&) = delete;
  TorchPickleInterpreter& operator=(const TorchPickleInterpreter&) = delete;

  // Runs the program up to STOP and returns the value it produced. InvalidArgument for a
  // malformed or unsupported program (the message names the opcode or global and its offset).
  // Call at most once.
  absl::StatusOr<c10::IValue> Run();

  // Python-level object model used while interpreting (defined in the .cc file).
  struct Object;
  using ObjectPtr = std::shared_ptr<Object>;

 private:
  absl::Status Step(uint8_t opcode, bool* stop);
  absl::StatusOr<ObjectPtr> Pop();
  absl::StatusOr<std::vector<ObjectPtr>> PopToMark();
  absl::StatusOr<ObjectPtr> Top();
  absl::Status ReadBytes(size_t n, absl::string_view* out);
  absl::StatusOr<std::string> ReadLine();
  template <typename T>
  absl::StatusOr<T> ReadLittleEndian();
  absl::Status Global(const std::string& module, const std::string& name);
  absl::StatusOr<ObjectPtr> Reduce(const ObjectPtr& callable, const ObjectPtr& args);
  absl::StatusOr<ObjectPtr> PersistentLoad(const ObjectPtr& pid);
  absl::StatusOr<ObjectPtr> RebuildTensor(const std::vector<ObjectPtr>& args);
  absl::Status SetItem(const ObjectPtr& dict, ObjectPtr key, ObjectPtr value);
  absl::Status Append(const ObjectPtr& list, ObjectPtr value);
  absl::StatusOr<c10::IValue> ToIValue(const ObjectPtr& object, int depth);
  absl::StatusOr<c10::IValue> ConvertObject(const Object& object, int depth);
  absl::Status Error(absl::string_view message) const;

  absl::string_view data_;
  size_t pos_ = 0;
  size_t opcode_pos_ = 0;
  StorageLoader loader_;
  std::vector<ObjectPtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, ObjectPtr> memo_;
  std::unordered_map<std::string, at::Tensor> storages_;
  // Every tuple, list and dict made, for a flat teardown (NOTE [teardown] in the .cc file).
  std::vector<ObjectPtr> containers_;
  // Objects converted by ToIValue (nullopt while one is being converted).
  std::unordered_map<const Object*, std::optional<c10::IValue>> converted_;
  bool ran_ = false;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_IO_TORCH_PICKLE_H_
