#include "trainer/io/torch_file.h"

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <sys/stat.h>
#include <torch/serialize.h>

#include <cstring>
#include <limits>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "trainer/io/torch_pickle.h"
#include "trainer/util/torch_status.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "storage records are read as little-endian host data");

namespace peco::trainer {

namespace {

// Copies storage record data/<key> into a new tensor of `numel` elements of `dtype`.
absl::StatusOr<at::Tensor> LoadStorage(caffe2::serialize::PyTorchStreamReader& reader,
                                       const std::string& path, const std::string& key,
                                       c10::ScalarType dtype, int64_t numel) {
  const std::string record = absl::StrCat("data/", key);
  const std::string context = absl::StrCat(path, ": storage record ", record);
  ASSIGN_OR_RETURN(const bool present,
                   TorchCall(context, [&] { return reader.hasRecord(record); }));
  if (!present) return absl::InvalidArgumentError(absl::StrCat(context, " is missing"));
  // A hostile numel must not wrap the byte count below into the record's real size.
  const int64_t element_size = static_cast<int64_t>(c10::elementSize(dtype));
  if (numel < 0 || numel > std::numeric_limits<int64_t>::max() / element_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": storage size ", numel, " elements is out of range"));
  }
  return TorchCall(context, [&]() -> absl::StatusOr<at::Tensor> {
    auto [data, size] = reader.getRecord(record);
    const uint64_t expected = static_cast<uint64_t>(numel) * c10::elementSize(dtype);
    if (size != expected) {
      return absl::InvalidArgumentError(absl::StrCat(context, " has ", size, " bytes, expected ",
                                                     expected, " (", numel, " x ",
                                                     c10::toString(dtype), ")"));
    }
    at::Tensor tensor = at::empty({numel}, at::TensorOptions().dtype(dtype));
    if (size > 0) std::memcpy(tensor.data_ptr(), data.get(), size);
    return tensor;
  });
}

// data.pkl of `reader` through peco's pickle interpreter; `path` names the source in errors.
absl::StatusOr<c10::IValue> ReadFromZip(caffe2::serialize::PyTorchStreamReader* reader,
                                        const std::string& path, const std::string& context) {
  ASSIGN_OR_RETURN(const bool has_pickle,
                   TorchCall(context, [&] { return reader->hasRecord("data.pkl"); }));
  if (!has_pickle) return absl::InvalidArgumentError(absl::StrCat(context, ": no data.pkl"));
  ASSIGN_OR_RETURN(auto pickle, TorchCall(context, [&] { return reader->getRecord("data.pkl"); }));
  const auto& [pickle_data, pickle_size] = pickle;
  absl::string_view program(static_cast<const char*>(pickle_data.get()), pickle_size);
  TorchPickleInterpreter interpreter(
      program, [&](const std::string& key, c10::ScalarType dtype, int64_t numel) {
        return LoadStorage(*reader, path, key, dtype, numel);
      });
  absl::StatusOr<c10::IValue> result = interpreter.Run();
  if (!result.ok()) {
    return absl::Status(result.status().code(),
                        absl::StrCat(context, ": ", result.status().message()));
  }
  return result;
}

}  // namespace

absl::StatusOr<c10::IValue> ReadTorchFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("torch file not found: ", path));
  }
  const std::string context = absl::StrCat("reading torch file ", path);
  ASSIGN_OR_RETURN(std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader,
                   TorchCall(context, [&] {
                     return std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
                   }));
  return ReadFromZip(reader.get(), path, context);
}

absl::StatusOr<c10::IValue> ReadTorchBytes(const std::string& bytes, const std::string& what) {
  const std::string context = absl::StrCat("reading ", what);
  std::istringstream stream(bytes);
  ASSIGN_OR_RETURN(std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader,
                   TorchCall(context, [&] {
                     return std::make_unique<caffe2::serialize::PyTorchStreamReader>(&stream);
                   }));
  return ReadFromZip(reader.get(), what, context);
}

absl::StatusOr<std::string> TorchBytes(const c10::IValue& value, const std::string& what) {
  const std::string context = absl::StrCat("writing ", what);
  ASSIGN_OR_RETURN(std::vector<char> bytes,
                   TorchCall(context, [&] { return torch::pickle_save(value); }));
  return std::string(bytes.data(), bytes.size());
}

absl::StatusOr<std::string> EncodeTensorDict(const NamedTensors& tensors, const std::string& what) {
  ASSIGN_OR_RETURN(c10::IValue dict, TorchCall(absl::StrCat("writing ", what), [&] {
                     c10::impl::GenericDict out(c10::StringType::get(), c10::TensorType::get());
                     for (const auto& [name, tensor] : tensors) {
                       out.insert(name, tensor.detach().to(torch::kCPU).contiguous());
                     }
                     return c10::IValue(out);
                   }));
  return TorchBytes(dict, what);
}

absl::StatusOr<NamedTensors> DecodeTensorDict(const std::string& bytes, const std::string& what) {
  ASSIGN_OR_RETURN(c10::IValue value, ReadTorchBytes(bytes, what));
  return ToNamedTensors(value, what);
}

absl::StatusOr<c10::IValue> DictGet(const c10::IValue& dict, absl::string_view key,
                                    absl::string_view what) {
  if (!dict.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a dict (it is ", dict.tagKind(), ")"));
  }
  const c10::impl::GenericDict d = dict.toGenericDict();
  auto it = d.find(c10::IValue(std::string(key)));
  if (it == d.end()) return absl::NotFoundError(absl::StrCat(what, " has no key '", key, "'"));
  return it->value();
}

absl::StatusOr<NamedTensors> ToNamedTensors(const c10::IValue& dict, absl::string_view what) {
  if (!dict.isGenericDict()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a dict (it is ", dict.tagKind(), ")"));
  }
  NamedTensors out;
  const c10::impl::GenericDict d = dict.toGenericDict();
  out.reserve(d.size());
  for (const auto& entry : d) {
    if (!entry.key().isString()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " has a non-string key (", entry.key().tagKind(), ")"));
    }
    const std::string& name = entry.key().toStringRef();
    if (!entry.value().isTensor()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " entry '", name, "' is a ",
                                                     entry.value().tagKind(), ", not a tensor"));
    }
    out.emplace_back(name, entry.value().toTensor());
  }
  return out;
}

absl::Status WriteTorchFile(const std::string& path, const c10::IValue& value) {
  const std::string context = absl::StrCat("writing torch file ", path);
  if (!value.isGenericDict()) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": the value is not a dict"));
  }
  ASSIGN_OR_RETURN(std::vector<char> bytes,
                   TorchCall(context, [&] { return torch::pickle_save(value); }));
  return WriteFileAtomic(path, absl::string_view(bytes.data(), bytes.size()));
}

}  // namespace peco::trainer
