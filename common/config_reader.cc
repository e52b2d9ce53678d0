#include "common/config_reader.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace peco {
namespace {

template <typename T>
bool Convert(const YAML::Node& node, T* out) {
  if (!node.IsScalar()) return false;
  try {
    *out = node.as<T>();
    return true;
  } catch (const YAML::Exception&) {
    return false;
  }
}

// A string field: any scalar, but no NUL, control or DEL character (a NUL would cut a path short
// where C code reads it, a newline forge a line of a log or a file list).
bool ConvertText(const YAML::Node& node, std::string* out) {
  std::string text;
  if (!Convert(node, &text)) return false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  *out = std::move(text);
  return true;
}

template <typename T>
bool ConvertList(const YAML::Node& node, std::vector<T>* out) {
  if (!node.IsSequence()) return false;
  std::vector<T> values;
  for (const YAML::Node& item : node) {
    T value;
    if (!Convert(item, &value)) return false;
    values.push_back(value);
  }
  *out = std::move(values);
  return true;
}

}  // namespace

ConfigReader::ConfigReader(YAML::Node node, std::string source, std::string prefix)
    : node_(std::move(node)), source_(std::move(source)), prefix_(std::move(prefix)) {}

absl::StatusOr<ConfigReader> ConfigReader::FromString(absl::string_view text, std::string source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a mapping at the top"));
  }
  return ConfigReader(root, std::move(source), "");
}

absl::StatusOr<ConfigReader> ConfigReader::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return FromString(text, path);
}

bool ConfigReader::Has(absl::string_view key) const {
  return node_.IsMap() && node_[std::string(key)].IsDefined();
}

bool ConfigReader::HasScalar(absl::string_view key) const {
  return Has(key) && node_[std::string(key)].IsScalar();
}

std::string ConfigReader::PathOf(absl::string_view key) const {
  return prefix_.empty() ? std::string(key) : absl::StrCat(prefix_, ".", key);
}

YAML::Node ConfigReader::Take(absl::string_view key) {
  consumed_.insert(std::string(key));
  if (!node_.IsMap()) return YAML::Node();
  // A const lookup does not insert the key into the document.
  const YAML::Node& const_node = node_;
  return const_node[std::string(key)];
}

absl::Status ConfigReader::TypeError(absl::string_view key, absl::string_view expected) const {
  return absl::InvalidArgumentError(absl::StrCat(source_.empty() ? "" : absl::StrCat(source_, ": "),
                                                 PathOf(key), ": expected ", expected));
}

#define PECO_DEFINE_READ_(Type, Converter, what)                        \
  absl::Status ConfigReader::Read(absl::string_view key, Type* value) { \
    YAML::Node node = Take(key);                                        \
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();    \
    if (!Converter(node, value)) return TypeError(key, what);           \
    return absl::OkStatus();                                            \
  }

PECO_DEFINE_READ_(int64_t, Convert, "an integer")
PECO_DEFINE_READ_(int, Convert, "an integer")
PECO_DEFINE_READ_(double, Convert, "a number")
PECO_DEFINE_READ_(bool, Convert, "true or false")
PECO_DEFINE_READ_(std::string, ConvertText, "a string without control characters")
PECO_DEFINE_READ_(std::vector<int64_t>, ConvertList, "a list of integers")
PECO_DEFINE_READ_(std::vector<int>, ConvertList, "a list of integers")
PECO_DEFINE_READ_(std::vector<double>, ConvertList, "a list of numbers")
#undef PECO_DEFINE_READ_

absl::Status ConfigReader::ReadEnum(absl::string_view key, const std::vector<std::string>& allowed,
                                    std::string* value) {
  std::string read = *value;
  RETURN_IF_ERROR(Read(key, &read));
  for (const std::string& option : allowed) {
    if (read == option) {
      *value = read;
      return absl::OkStatus();
    }
  }
  return TypeError(key,
                   absl::StrCat("one of ", absl::StrJoin(allowed, ", "), " (got '", read, "')"));
}

absl::StatusOr<ConfigReader> ConfigReader::Child(absl::string_view key) {
  YAML::Node node = Take(key);
  if (!node.IsDefined() || node.IsNull()) {
    return ConfigReader(YAML::Node(YAML::NodeType::Map), source_, PathOf(key));
  }
  if (!node.IsMap()) return TypeError(key, "a mapping");
  return ConfigReader(node, source_, PathOf(key));
}

absl::Status ConfigReader::Finish() const {
  if (!node_.IsMap()) return absl::OkStatus();
  auto unknown = [this](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_.empty() ? "" : absl::StrCat(source_, ": "), what,
                     " (known fields here: ", absl::StrJoin(consumed_, ", "), ")"));
  };
  for (const auto& entry : node_) {
    // A key that is not a string ("? [a, b]", "~") names no field; converting it would throw.
    if (!entry.first.IsScalar()) {
      return unknown(absl::StrCat(prefix_.empty() ? "" : absl::StrCat(prefix_, ": "),
                                  "unknown field whose key is not a string"));
    }
    if (consumed_.count(entry.first.Scalar()) == 0) {
      return unknown(absl::StrCat(PathOf(entry.first.Scalar()), ": unknown field"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ApplyConfigOverrides(const std::string& yaml,
                                                 const std::vector<std::string>& overrides) {
  if (overrides.empty()) return yaml;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config: not valid YAML: ", e.what()));
  }
  if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
  // yaml-cpp's operator[] throws on a scalar and turns a sequence into a mapping.
  if (!root.IsMap()) return absl::InvalidArgumentError("config: expected a mapping at the top");
  for (const std::string& item : overrides) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", item, ": expected key.path=value"));
    }
    // NUL is no YAML character, and yaml-cpp reads a value that has NULs among its first bytes as
    // UTF-16 or UTF-32: what it would set is not what the override says.
    if (item.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", absl::CEscape(item), ": holds a NUL byte"));
    }
    std::vector<std::string> path = absl::StrSplit(item.substr(0, eq), '.');
    YAML::Node value;
    try {
      value = YAML::Load(item.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("--set ", item, ": value is not YAML"));
    }
    // Walk down, creating mappings as needed; YAML::Node assignment aliases, so `node` is the
    // live child inside `root`.
    YAML::Node node = root;
    for (size_t i = 0; i + 1 < path.size(); ++i) {
      YAML::Node child = node[path[i]];
      if (!child.IsDefined() || child.IsNull()) {
        node[path[i]] = YAML::Node(YAML::NodeType::Map);
        child = node[path[i]];
      } else if (!child.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--set ", item, ": ", path[i], " is not a mapping"));
      }
      node.reset(child);
    }
    node[path.back()] = value;
  }
  YAML::Emitter out;
  out << root;
  std::string text = std::string(out.c_str()) + "\n";
  // yaml-cpp reads no more than about 500 levels of nesting, and a long override path can build
  // more: callers may count on reading the result.
  try {
    YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("config: the overrides make a document that cannot be read back: ", e.what()));
  }
  return text;
}

absl::Status ExpectPositive(absl::string_view field, double value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected a value > 0, got ", value));
}

absl::Status ExpectNonNegative(absl::string_view field, double value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected a value >= 0, got ", value));
}

absl::Status ExpectInRange(absl::string_view field, double value, double low, double high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": expected a value in [", low, ", ", high, "], got ", value));
}

}  // namespace peco
