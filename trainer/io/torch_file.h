// Reading and writing PyTorch checkpoint files (the zip format of Python's torch.save).
//
// ReadTorchFile opens the zip container with LibTorch's caffe2::serialize::PyTorchStreamReader
// and runs data.pkl through peco's own pickle interpreter (trainer/io/torch_pickle.h), because
// LibTorch 1.13's torch::pickle_load drops OrderedDicts and rejects SETITEM/APPEND. The result is
// a c10::IValue tree:
//   dict / collections.OrderedDict -> c10::impl::GenericDict (string or int keys, insertion
//                                     order kept; a state_dict's `_metadata` is dropped)
//   list -> c10::impl::GenericList      tuple, torch.Size -> c10::ivalue::Tuple
//   tensor, nn.Parameter -> at::Tensor (CPU, requires_grad false, owning its memory; views of one
//                           storage share it as in Python)
//   int, float, bool, str, None, torch.device -> the matching IValue
// Anything else (other globals, unsupported opcodes, malformed or truncated files) is an error
// naming the problem; a partial result is never returned.
//
// WriteTorchFile writes with torch::pickle_save, whose output Python's torch.load reads, and
// replaces the target atomically.
//
// Errors: NotFound / InvalidArgument / Internal with the path in the message. LibTorch
// exceptions never escape. Thread-safety: all functions are thread-safe (no shared state);
// concurrent writes to one path leave one of the complete files.
#ifndef PECO_TRAINER_IO_TORCH_FILE_H_
#define PECO_TRAINER_IO_TORCH_FILE_H_

#include <ATen/core/ivalue.h>
#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco::trainer {

// Ordered (name, tensor) pairs, as in a state_dict.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads a torch.save zip file and returns its content (see the file comment).
absl::StatusOr<c10::IValue> ReadTorchFile(const std::string& path);
// The same for the bytes of such a file (a file of a checkpoint); `what` names it in errors.
absl::StatusOr<c10::IValue> ReadTorchBytes(const std::string& bytes, const std::string& what);

// `value` (as WriteTorchFile takes it) as the bytes of a torch.save zip file.
absl::StatusOr<std::string> TorchBytes(const c10::IValue& value, const std::string& what);

// A flat dict of named tensors (CPU, contiguous copies, in order) as the bytes of a torch.save
// zip file, and back through ReadTorchBytes: the format of the files of peco's checkpoints.
absl::StatusOr<std::string> EncodeTensorDict(const NamedTensors& tensors, const std::string& what);
absl::StatusOr<NamedTensors> DecodeTensorDict(const std::string& bytes, const std::string& what);

// Dict lookup by string key. InvalidArgument if `dict` is not a dict, NotFound naming the key and
// `what` (a description of the dict for the message) if the key is absent.
absl::StatusOr<c10::IValue> DictGet(const c10::IValue& dict, absl::string_view key,
                                    absl::string_view what);

// A dict of string -> tensor (a state_dict) as ordered pairs. InvalidArgument if `dict` is not a
// dict, or a key is not a string or a value is not a tensor (naming the key and `what`).
absl::StatusOr<NamedTensors> ToNamedTensors(const c10::IValue& dict, absl::string_view what);

// Writes `value`, a dict with string keys whose values are tensors or nested dicts of the same
// kind (other IValues LibTorch can pickle are accepted too), so that Python's torch.load reads it.
// Written atomically with peco::WriteFileAtomic.
absl::Status WriteTorchFile(const std::string& path, const c10::IValue& value);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_IO_TORCH_FILE_H_
