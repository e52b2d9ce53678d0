#include "trainer/io/torch_pickle.h"

#include <ATen/ATen.h>
#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/core/jit_type.h>
#include <c10/core/Device.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {

namespace {

// Pickle opcodes (see Python's Lib/pickletools.py for their definitions).
enum Opcode : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kBinString = 'T',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kSetItems = 'u',
  kEmptyDict = '}',
  kEmptyTuple = ')',
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kMemoize = 0x94,
  kFrame = 0x95,
};

constexpr int kMaxDepth = 512;

// Storage classes and the dtype of their elements.
bool StorageDtype(const std::string& qualified_name, c10::ScalarType* dtype) {
  static const std::pair<const char*, c10::ScalarType> kStorages[] = {
      {"torch.FloatStorage", c10::kFloat},
      {"torch.DoubleStorage", c10::kDouble},
      {"torch.HalfStorage", c10::kHalf},
      {"torch.BFloat16Storage", c10::kBFloat16},
      {"torch.LongStorage", c10::kLong},
      {"torch.IntStorage", c10::kInt},
      {"torch.ShortStorage", c10::kShort},
      {"torch.CharStorage", c10::kChar},
      {"torch.ByteStorage", c10::kByte},
      {"torch.BoolStorage", c10::kBool},
      {"torch.ComplexFloatStorage", c10::kComplexFloat},
      {"torch.ComplexDoubleStorage", c10::kComplexDouble},
  };
  for (const auto& [name, type] : kStorages) {
    if (qualified_name == name) {
      *dtype = type;
      return true;
    }
  }
  return false;
}

// The globals a checkpoint may reference, other than storage classes.
bool IsSupportedGlobal(const std::string& qualified_name) {
  static const char* const kGlobals[] = {
      "collections.OrderedDict",
      "torch._utils._rebuild_tensor_v2",
      "torch._utils._rebuild_parameter",
      "torch._utils._rebuild_parameter_with_state",
      "torch.Size",
      "torch.device",
      "torch.jit._pickle.restore_type_tag",
      "torch.jit._pickle.build_intlist",
      "torch.jit._pickle.build_doublelist",
      "torch.jit._pickle.build_boollist",
      "torch.jit._pickle.build_tensorlist",
  };
  for (const char* name : kGlobals) {
    if (qualified_name == name) return true;
  }
  c10::ScalarType unused;
  return StorageDtype(qualified_name, &unused);
}

}  // namespace

struct TorchPickleInterpreter::Object {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kTuple,
    kList,
    kDict,
    kGlobal,
    kStorage,
    kTensor,
    kDevice,
  };
  explicit Object(Kind k) : kind(k) {}

  static const char* KindName(Kind k) {
    switch (k) {
      case Kind::kNone:
        return "None";
      case Kind::kBool:
        return "bool";
      case Kind::kInt:
        return "int";
      case Kind::kFloat:
        return "float";
      case Kind::kString:
        return "str";
      case Kind::kTuple:
        return "tuple";
      case Kind::kList:
        return "list";
      case Kind::kDict:
        return "dict";
      case Kind::kGlobal:
        return "global";
      case Kind::kStorage:
        return "storage";
      case Kind::kTensor:
        return "tensor";
      case Kind::kDevice:
        return "device";
    }
    return "?";
  }

  Kind kind;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                 // str; qualified name of a global; device string.
  std::vector<ObjectPtr> items;  // tuple, list.
  std::vector<std::pair<ObjectPtr, ObjectPtr>> entries;  // dict, in insertion order.
  std::unordered_map<std::string, size_t> index;         // dict key id -> entries index.
  at::Tensor tensor;                                     // storage (1-D) or tensor.
};

using Object = TorchPickleInterpreter::Object;
using ObjectPtr = TorchPickleInterpreter::ObjectPtr;
using Kind = Object::Kind;

namespace {

ObjectPtr MakeInt(int64_t v) {
  auto o = std::make_shared<Object>(Kind::kInt);
  o->i = v;
  return o;
}

ObjectPtr MakeString(std::string v) {
  auto o = std::make_shared<Object>(Kind::kString);
  o->s = std::move(v);
  return o;
}

// Identity of a dict key; only the hashable types found in checkpoints are supported.
// Makes a tuple, list or dict and registers it in `containers` for teardown (NOTE [teardown]).
ObjectPtr NewContainer(std::vector<ObjectPtr>& containers, Kind kind,
                       std::vector<ObjectPtr> items = {}) {
  auto o = std::make_shared<Object>(kind);
  o->items = std::move(items);
  containers.push_back(o);
  return o;
}

absl::StatusOr<std::string> DictKeyId(const Object& key) {
  switch (key.kind) {
    case Kind::kString:
      return absl::StrCat("s", key.s);
    case Kind::kInt:
      return absl::StrCat("i", key.i);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported dict key type ", Object::KindName(key.kind)));
  }
}

absl::StatusOr<std::vector<int64_t>> IntTuple(const Object& o, absl::string_view what) {
  if (o.kind != Kind::kTuple && o.kind != Kind::kList) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a tuple of ints, got ", Object::KindName(o.kind)));
  }
  std::vector<int64_t> out;
  out.reserve(o.items.size());
  for (const ObjectPtr& item : o.items) {
    if (item->kind != Kind::kInt) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " must be a tuple of ints, has a ", Object::KindName(item->kind)));
    }
    out.push_back(item->i);
  }
  return out;
}

// The common element type of `values` if they are all of one simple type, else Any.
c10::TypePtr CommonType(const std::vector<c10::IValue>& values) {
  if (values.empty()) return c10::AnyType::get();
  auto simple = [](const c10::IValue& v) -> c10::TypePtr {
    if (v.isTensor()) return c10::TensorType::get();
    if (v.isInt()) return c10::IntType::get();
    if (v.isDouble()) return c10::FloatType::get();
    if (v.isBool()) return c10::BoolType::get();
    if (v.isString()) return c10::StringType::get();
    return nullptr;
  };
  c10::TypePtr first = simple(values[0]);
  if (first == nullptr) return c10::AnyType::get();
  for (const c10::IValue& v : values) {
    c10::TypePtr t = simple(v);
    if (t == nullptr || t->kind() != first->kind()) return c10::AnyType::get();
  }
  return first;
}

}  // namespace

TorchPickleInterpreter::TorchPickleInterpreter(absl::string_view data, StorageLoader loader)
    : data_(data), loader_(std::move(loader)) {}

// NOTE [teardown]: objects refer to each other through shared pointers, and a hostile program
// can build a chain of millions of nested tuples (or a list that contains itself). Destroying
// such a graph the default way recurses once per level and overflows the stack (or, for a cycle,
// leaks it). Every object that holds others is registered in containers_ when it is made, so the
// interpreter can first empty all of them (no object then refers to another) and then drop them
// one by one: teardown is flat whatever the shape of the graph.
TorchPickleInterpreter::~TorchPickleInterpreter() {
  stack_.clear();
  memo_.clear();
  for (const ObjectPtr& container : containers_) {
    container->items.clear();
    container->entries.clear();
    container->index.clear();
  }
  containers_.clear();
}

absl::Status TorchPickleInterpreter::Error(absl::string_view message) const {
  return absl::InvalidArgumentError(
      absl::StrCat("pickle: ", message, " (opcode at offset ", opcode_pos_, ")"));
}

absl::Status TorchPickleInterpreter::ReadBytes(size_t n, absl::string_view* out) {
  if (n > data_.size() - pos_) return Error("truncated pickle data");
  *out = data_.substr(pos_, n);
  pos_ += n;
  return absl::OkStatus();
}

absl::StatusOr<std::string> TorchPickleInterpreter::ReadLine() {
  const size_t end = data_.find('\n', pos_);
  if (end == absl::string_view::npos) return Error("truncated pickle data (missing newline)");
  std::string line(data_.substr(pos_, end - pos_));
  pos_ = end + 1;
  return line;
}

template <typename T>
absl::StatusOr<T> TorchPickleInterpreter::ReadLittleEndian() {
  absl::string_view bytes;
  RETURN_IF_ERROR(ReadBytes(sizeof(T), &bytes));
  uint64_t v = 0;
  for (size_t k = 0; k < sizeof(T); ++k) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
  }
  return static_cast<T>(v);
}

absl::StatusOr<ObjectPtr> TorchPickleInterpreter::Pop() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
    return Error("stack underflow");
  }
  ObjectPtr top = std::move(stack_.back());
  stack_.pop_back();
  return top;
}

absl::StatusOr<ObjectPtr> TorchPickleInterpreter::Top() {
  if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
    return Error("stack underflow");
  }
  return stack_.back();
}

absl::StatusOr<std::vector<ObjectPtr>> TorchPickleInterpreter::PopToMark() {
  if (marks_.empty()) return Error("no MARK on the stack");
  const size_t mark = marks_.back();
  marks_.pop_back();
  std::vector<ObjectPtr> items(std::make_move_iterator(stack_.begin() + mark),
                               std::make_move_iterator(stack_.end()));
  stack_.resize(mark);
  return items;
}

absl::Status TorchPickleInterpreter::SetItem(const ObjectPtr& dict, ObjectPtr key,
                                             ObjectPtr value) {
  if (dict->kind != Kind::kDict) {
    return Error(absl::StrCat("SETITEM(S) on a ", Object::KindName(dict->kind)));
  }
  absl::StatusOr<std::string> id = DictKeyId(*key);
  if (!id.ok()) return Error(id.status().message());
  auto [it, inserted] = dict->index.emplace(*id, dict->entries.size());
  if (inserted) {
    dict->entries.emplace_back(std::move(key), std::move(value));
  } else {
    dict->entries[it->second].second = std::move(value);
  }
  return absl::OkStatus();
}

absl::Status TorchPickleInterpreter::Append(const ObjectPtr& list, ObjectPtr value) {
  if (list->kind != Kind::kList) {
    return Error(absl::StrCat("APPEND(S) on a ", Object::KindName(list->kind)));
  }
  list->items.push_back(std::move(value));
  return absl::OkStatus();
}

absl::Status TorchPickleInterpreter::Global(const std::string& module, const std::string& name) {
  const std::string qualified = absl::StrCat(module, ".", name);
  if (!IsSupportedGlobal(qualified)) {
    return Error(absl::StrCat("unsupported global '", qualified, "'"));
  }
  auto o = std::make_shared<Object>(Kind::kGlobal);
  o->s = qualified;
  stack_.push_back(std::move(o));
  return absl::OkStatus();
}

absl::StatusOr<ObjectPtr> TorchPickleInterpreter::PersistentLoad(const ObjectPtr& pid) {
  if (pid->kind != Kind::kTuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::kString ||
      pid->items[0]->s != "storage") {
    return Error("persistent id is not ('storage', type, key, location, numel)");
  }
  const Object& type = *pid->items[1];
  const Object& key = *pid->items[2];
  const Object& numel = *pid->items[4];
  c10::ScalarType dtype;
  if (type.kind != Kind::kGlobal || !StorageDtype(type.s, &dtype)) {
    return Error(absl::StrCat("persistent id has an unsupported storage type ",
                              type.kind == Kind::kGlobal ? type.s : Object::KindName(type.kind)));
  }
  if (key.kind != Kind::kString || numel.kind != Kind::kInt || numel.i < 0) {
    return Error("persistent id has a malformed key or numel");
  }
  auto it = storages_.find(key.s);
  if (it == storages_.end()) {
    absl::StatusOr<at::Tensor> loaded = loader_(key.s, dtype, numel.i);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->defined() || loaded->dim() != 1 || loaded->numel() != numel.i ||
        loaded->scalar_type() != dtype) {
      return Error(absl::StrCat("storage ", key.s, " was loaded with the wrong size or type"));
    }
    it = storages_.emplace(key.s, *std::move(loaded)).first;
  } else if (it->second.scalar_type() != dtype || it->second.numel() != numel.i) {
    return Error(absl::StrCat("storage ", key.s, " is referenced with different types or sizes"));
  }
  auto o = std::make_shared<Object>(Kind::kStorage);
  o->tensor = it->second;
  return o;
}

absl::StatusOr<ObjectPtr> TorchPickleInterpreter::RebuildTensor(
    const std::vector<ObjectPtr>& args) {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  if (args.size() < 4) return Error("_rebuild_tensor_v2 needs at least 4 arguments");
  if (args[0]->kind != Kind::kStorage) {
    return Error(absl::StrCat("_rebuild_tensor_v2: first argument is a ",
                              Object::KindName(args[0]->kind), ", not a storage"));
  }
  if (args[1]->kind != Kind::kInt) return Error("_rebuild_tensor_v2: offset is not an int");
  const int64_t offset = args[1]->i;
  absl::StatusOr<std::vector<int64_t>> size = IntTuple(*args[2], "size");
  if (!size.ok()) return Error(size.status().message());
  absl::StatusOr<std::vector<int64_t>> stride = IntTuple(*args[3], "stride");
  if (!stride.ok()) return Error(stride.status().message());
  if (size->size() != stride->size()) return Error("_rebuild_tensor_v2: size/stride rank differ");
  // Bounds check so that a corrupt file cannot make a view outside the storage.
  const at::Tensor& storage = args[0]->tensor;
  bool empty = false;
  int64_t last = offset;
  bool overflow = offset < 0;
  for (size_t d = 0; d < size->size(); ++d) {
    if ((*size)[d] < 0 || (*stride)[d] < 0) overflow = true;
    if ((*size)[d] == 0) empty = true;
    int64_t extent;
    overflow |= __builtin_mul_overflow((*size)[d] - 1, (*stride)[d], &extent);
    overflow |= __builtin_add_overflow(last, extent, &last);
  }
  if (overflow || (!empty && last >= storage.numel())) {
    return Error(absl::StrCat("_rebuild_tensor_v2: view (offset ", offset,
                              ") lies outside its storage of ", storage.numel(), " elements"));
  }
  absl::StatusOr<at::Tensor> tensor =
      TorchCall("_rebuild_tensor_v2", [&] { return storage.as_strided(*size, *stride, offset); });
  if (!tensor.ok()) return tensor.status();
  auto o = std::make_shared<Object>(Kind::kTensor);
  o->tensor = *std::move(tensor);
  return o;
}

absl::StatusOr<ObjectPtr> TorchPickleInterpreter::Reduce(const ObjectPtr& callable,
                                                         const ObjectPtr& args) {
  if (callable->kind != Kind::kGlobal) {
    return Error(absl::StrCat("REDUCE on a ", Object::KindName(callable->kind)));
  }
  if (args->kind != Kind::kTuple) return Error("REDUCE arguments are not a tuple");
  const std::string& name = callable->s;
  const std::vector<ObjectPtr>& a = args->items;
  if (name == "collections.OrderedDict") {
    if (!a.empty()) return Error("OrderedDict with constructor arguments is not supported");
    return NewContainer(containers_, Kind::kDict);
  }
  if (name == "torch._utils._rebuild_tensor_v2") return RebuildTensor(a);
  if (name == "torch._utils._rebuild_parameter" ||
      name == "torch._utils._rebuild_parameter_with_state") {
    // (data, requires_grad, backward_hooks[, state]): a Parameter is returned as its tensor.
    if (a.empty() || a[0]->kind != Kind::kTensor) return Error(name + ": data is not a tensor");
    return a[0];
  }
  if (name == "torch.Size") {
    if (a.size() != 1) return Error("torch.Size takes one argument");
    if (!IntTuple(*a[0], "torch.Size").ok()) return Error("torch.Size of non-ints");
    return NewContainer(containers_, Kind::kTuple, a[0]->items);
  }
  if (name == "torch.device") {
    auto o = std::make_shared<Object>(Kind::kDevice);
    if (a.size() == 1 && a[0]->kind == Kind::kString) {
      o->s = a[0]->s;
    } else if (a.size() == 2 && a[0]->kind == Kind::kString && a[1]->kind == Kind::kInt) {
      o->s = absl::StrCat(a[0]->s, ":", a[1]->i);
    } else {
      return Error("unsupported torch.device arguments");
    }
    return o;
  }
  if (name == "torch.jit._pickle.restore_type_tag") {
    if (a.size() != 2) return Error("restore_type_tag takes two arguments");
    return a[0];
  }
  if (name.rfind("torch.jit._pickle.build_", 0) == 0) {
    if (a.size() != 1 || a[0]->kind != Kind::kList) return Error(name + " takes one list");
    return a[0];
  }
  // Storage classes are only valid inside persistent ids.
  return Error(absl::StrCat("cannot call global '", name, "'"));
}

// NOTE [conversion]: an object reached twice (through the memo) is converted once and the two
// places share the IValue, as they share the object in Python; otherwise a few hundred bytes of
// memo references (a list of ten references to a list of ten references to ...) would expand to
// billions of values. Nesting is bounded by kMaxDepth, and an object reached again while it is
// being converted (a list that contains itself) is refused.
absl::StatusOr<c10::IValue> TorchPickleInterpreter::ToIValue(const ObjectPtr& object, int depth) {
  if (depth > kMaxDepth) {
    return Error(absl::StrCat("objects nested deeper than ", kMaxDepth, " levels"));
  }
  const Object* const key = object.get();
  if (auto it = converted_.find(key); it != converted_.end()) {
    if (!it->second.has_value()) return Error("a container that contains itself (a cycle)");
    return *it->second;
  }
  converted_[key] = std::nullopt;  // in progress
  absl::StatusOr<c10::IValue> value = ConvertObject(*object, depth);
  if (value.ok()) converted_[key] = *value;
  return value;
}

absl::StatusOr<c10::IValue> TorchPickleInterpreter::ConvertObject(const Object& o, int depth) {
  switch (o.kind) {
    case Kind::kNone:
      return c10::IValue();
    case Kind::kBool:
      return c10::IValue(o.b);
    case Kind::kInt:
      return c10::IValue(o.i);
    case Kind::kFloat:
      return c10::IValue(o.f);
    case Kind::kString:
      return c10::IValue(o.s);
    case Kind::kTensor:
      return c10::IValue(o.tensor);
    case Kind::kDevice:
      return TorchCall("torch.device", [&] { return c10::IValue(c10::Device(o.s)); });
    case Kind::kTuple:
    case Kind::kList: {
      std::vector<c10::IValue> values;
      values.reserve(o.items.size());
      for (const ObjectPtr& item : o.items) {
        ASSIGN_OR_RETURN(c10::IValue v, ToIValue(item, depth + 1));
        values.push_back(std::move(v));
      }
      if (o.kind == Kind::kTuple) return c10::IValue(c10::ivalue::Tuple::create(std::move(values)));
      c10::impl::GenericList list(CommonType(values));
      list.reserve(values.size());
      for (c10::IValue& v : values) list.push_back(std::move(v));
      return c10::IValue(std::move(list));
    }
    case Kind::kDict: {
      std::vector<c10::IValue> keys;
      std::vector<c10::IValue> values;
      keys.reserve(o.entries.size());
      values.reserve(o.entries.size());
      for (const auto& [key, value] : o.entries) {
        ASSIGN_OR_RETURN(c10::IValue k, ToIValue(key, depth + 1));
        ASSIGN_OR_RETURN(c10::IValue v, ToIValue(value, depth + 1));
        keys.push_back(std::move(k));
        values.push_back(std::move(v));
      }
      c10::TypePtr key_type = keys.empty() ? c10::StringType::get() : CommonType(keys);
      c10::impl::GenericDict dict(key_type, CommonType(values));
      dict.reserve(keys.size());
      for (size_t k = 0; k < keys.size(); ++k) {
        dict.insert_or_assign(std::move(keys[k]), std::move(values[k]));
      }
      return c10::IValue(std::move(dict));
    }
    case Kind::kGlobal:
    case Kind::kStorage:
      break;
  }
  return Error(absl::StrCat("result contains a bare ", Object::KindName(o.kind),
                            o.kind == Kind::kGlobal ? absl::StrCat(" ", o.s) : ""));
}

absl::StatusOr<c10::IValue> TorchPickleInterpreter::Run() {
  if (ran_) return absl::FailedPreconditionError("TorchPickleInterpreter::Run called twice");
  ran_ = true;
  bool stop = false;
  while (!stop) {
    opcode_pos_ = pos_;
    if (pos_ >= data_.size()) return Error("pickle data ends before STOP");
    const uint8_t opcode = static_cast<uint8_t>(data_[pos_++]);
    RETURN_IF_ERROR(Step(opcode, &stop));
  }
  ASSIGN_OR_RETURN(ObjectPtr result, Pop());
  return ToIValue(result, 0);
}

absl::Status TorchPickleInterpreter::Step(uint8_t opcode, bool* stop) {
  switch (opcode) {
    case kProto: {
      ASSIGN_OR_RETURN(uint8_t version, ReadLittleEndian<uint8_t>());
      if (version < 2 || version > 5) return Error(absl::StrCat("unsupported protocol ", version));
      return absl::OkStatus();
    }
    case kFrame: {
      absl::string_view unused;
      return ReadBytes(8, &unused);  // Frame length; frames need no special handling here.
    }
    case kStop:
      *stop = true;
      return absl::OkStatus();
    case kMark:
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case kPop:
      return Pop().status();
    case kPopMark:
      return PopToMark().status();
    case kDup: {
      ASSIGN_OR_RETURN(ObjectPtr top, Top());
      stack_.push_back(std::move(top));
      return absl::OkStatus();
    }
    case kNone:
      stack_.push_back(std::make_shared<Object>(Kind::kNone));
      return absl::OkStatus();
    case kNewTrue:
    case kNewFalse: {
      auto o = std::make_shared<Object>(Kind::kBool);
      o->b = opcode == kNewTrue;
      stack_.push_back(std::move(o));
      return absl::OkStatus();
    }
    case kBinInt: {
      ASSIGN_OR_RETURN(int32_t v, ReadLittleEndian<int32_t>());
      stack_.push_back(MakeInt(v));
      return absl::OkStatus();
    }
    case kBinInt1: {
      ASSIGN_OR_RETURN(uint8_t v, ReadLittleEndian<uint8_t>());
      stack_.push_back(MakeInt(v));
      return absl::OkStatus();
    }
    case kBinInt2: {
      ASSIGN_OR_RETURN(uint16_t v, ReadLittleEndian<uint16_t>());
      stack_.push_back(MakeInt(v));
      return absl::OkStatus();
    }
    case kLong1: {
      ASSIGN_OR_RETURN(uint8_t n, ReadLittleEndian<uint8_t>());
      if (n > 8) return Error(absl::StrCat("LONG1 of ", n, " bytes does not fit in int64"));
      absl::string_view bytes;
      RETURN_IF_ERROR(ReadBytes(n, &bytes));
      uint64_t v = 0;
      for (size_t k = 0; k < n; ++k) {
        v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[k])) << (8 * k);
      }
      if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) {
        v |= ~uint64_t{0} << (8 * n);  // Sign-extend.
      }
      stack_.push_back(MakeInt(static_cast<int64_t>(v)));
      return absl::OkStatus();
    }
    case kBinFloat: {
      absl::string_view bytes;
      RETURN_IF_ERROR(ReadBytes(8, &bytes));
      uint64_t bits = 0;
      for (size_t k = 0; k < 8; ++k) bits = (bits << 8) | static_cast<uint8_t>(bytes[k]);
      auto o = std::make_shared<Object>(Kind::kFloat);
      std::memcpy(&o->f, &bits, sizeof(double));  // BINFLOAT is big-endian IEEE 754.
      stack_.push_back(std::move(o));
      return absl::OkStatus();
    }
    case kBinUnicode:
    case kBinString:
    case kBinBytes:
    case kShortBinUnicode:
    case kShortBinString:
    case kShortBinBytes:
    case kBinUnicode8: {
      uint64_t n;
      if (opcode == kShortBinUnicode || opcode == kShortBinString || opcode == kShortBinBytes) {
        ASSIGN_OR_RETURN(n, ReadLittleEndian<uint8_t>());
      } else if (opcode == kBinUnicode8) {
        ASSIGN_OR_RETURN(n, ReadLittleEndian<uint64_t>());
      } else {
        ASSIGN_OR_RETURN(n, ReadLittleEndian<uint32_t>());
      }
      absl::string_view bytes;
      RETURN_IF_ERROR(ReadBytes(n, &bytes));
      stack_.push_back(MakeString(std::string(bytes)));
      return absl::OkStatus();
    }
    case kEmptyDict:
      stack_.push_back(NewContainer(containers_, Kind::kDict));
      return absl::OkStatus();
    case kEmptyList:
      stack_.push_back(NewContainer(containers_, Kind::kList));
      return absl::OkStatus();
    case kEmptyTuple:
      stack_.push_back(NewContainer(containers_, Kind::kTuple));
      return absl::OkStatus();
    case kTuple: {
      ASSIGN_OR_RETURN(std::vector<ObjectPtr> items, PopToMark());
      stack_.push_back(NewContainer(containers_, Kind::kTuple, std::move(items)));
      return absl::OkStatus();
    }
    case kTuple1:
    case kTuple2:
    case kTuple3: {
      const size_t n = opcode - kTuple1 + 1;
      std::vector<ObjectPtr> items(n);
      for (size_t k = n; k > 0; --k) {
        ASSIGN_OR_RETURN(items[k - 1], Pop());
      }
      stack_.push_back(NewContainer(containers_, Kind::kTuple, std::move(items)));
      return absl::OkStatus();
    }
    case kSetItem: {
      ASSIGN_OR_RETURN(ObjectPtr value, Pop());
      ASSIGN_OR_RETURN(ObjectPtr key, Pop());
      ASSIGN_OR_RETURN(ObjectPtr dict, Top());
      return SetItem(dict, std::move(key), std::move(value));
    }
    case kSetItems: {
      ASSIGN_OR_RETURN(std::vector<ObjectPtr> items, PopToMark());
      if (items.size() % 2 != 0) return Error("SETITEMS with an odd number of items");
      ASSIGN_OR_RETURN(ObjectPtr dict, Top());
      for (size_t k = 0; k < items.size(); k += 2) {
        RETURN_IF_ERROR(SetItem(dict, std::move(items[k]), std::move(items[k + 1])));
      }
      return absl::OkStatus();
    }
    case kAppend: {
      ASSIGN_OR_RETURN(ObjectPtr value, Pop());
      ASSIGN_OR_RETURN(ObjectPtr list, Top());
      return Append(list, std::move(value));
    }
    case kAppends: {
      ASSIGN_OR_RETURN(std::vector<ObjectPtr> items, PopToMark());
      ASSIGN_OR_RETURN(ObjectPtr list, Top());
      for (ObjectPtr& item : items) RETURN_IF_ERROR(Append(list, std::move(item)));
      return absl::OkStatus();
    }
    case kBinPut:
    case kLongBinPut:
    case kMemoize: {
      uint32_t index;
      if (opcode == kBinPut) {
        ASSIGN_OR_RETURN(index, ReadLittleEndian<uint8_t>());
      } else if (opcode == kLongBinPut) {
        ASSIGN_OR_RETURN(index, ReadLittleEndian<uint32_t>());
      } else {
        index = static_cast<uint32_t>(memo_.size());
      }
      ASSIGN_OR_RETURN(ObjectPtr top, Top());
      memo_[index] = std::move(top);
      return absl::OkStatus();
    }
    case kBinGet:
    case kLongBinGet: {
      uint32_t index;
      if (opcode == kBinGet) {
        ASSIGN_OR_RETURN(index, ReadLittleEndian<uint8_t>());
      } else {
        ASSIGN_OR_RETURN(index, ReadLittleEndian<uint32_t>());
      }
      auto it = memo_.find(index);
      if (it == memo_.end()) return Error(absl::StrCat("memo key ", index, " is not set"));
      stack_.push_back(it->second);
      return absl::OkStatus();
    }
    case kGlobal: {
      ASSIGN_OR_RETURN(std::string module, ReadLine());
      ASSIGN_OR_RETURN(std::string name, ReadLine());
      return Global(module, name);
    }
    case kReduce: {
      ASSIGN_OR_RETURN(ObjectPtr args, Pop());
      ASSIGN_OR_RETURN(ObjectPtr callable, Pop());
      ASSIGN_OR_RETURN(ObjectPtr result, Reduce(callable, args));
      stack_.push_back(std::move(result));
      return absl::OkStatus();
    }
    case kNewObj: {
      ASSIGN_OR_RETURN(ObjectPtr args, Pop());
      ASSIGN_OR_RETURN(ObjectPtr cls, Pop());
      if (cls->kind == Kind::kGlobal && cls->s == "collections.OrderedDict" &&
          args->kind == Kind::kTuple && args->items.empty()) {
        stack_.push_back(NewContainer(containers_, Kind::kDict));
        return absl::OkStatus();
      }
      return Error(absl::StrCat("NEWOBJ of unsupported class ",
                                cls->kind == Kind::kGlobal ? cls->s : Object::KindName(cls->kind)));
    }
    case kBuild: {
      ASSIGN_OR_RETURN(ObjectPtr state, Pop());
      ASSIGN_OR_RETURN(ObjectPtr target, Top());
      // state_dict OrderedDicts carry a `_metadata` attribute (per-module versions); peco does
      // not need it, so the state is dropped.
      if (target->kind == Kind::kDict) return absl::OkStatus();
      return Error(absl::StrCat("BUILD on a ", Object::KindName(target->kind)));
    }
    case kBinPersId: {
      ASSIGN_OR_RETURN(ObjectPtr pid, Pop());
      ASSIGN_OR_RETURN(ObjectPtr storage, PersistentLoad(pid));
      stack_.push_back(std::move(storage));
      return absl::OkStatus();
    }
    default:
      return Error(absl::StrFormat("unsupported opcode 0x%02x", opcode));
  }
}

}  // namespace peco::trainer
