// Strict reading of YAML (or JSON) configuration into typed fields.
//
// A ConfigReader wraps one mapping node. Each Read* call consumes a key: when the key is absent
// the output keeps its default; when present it must have the expected type, or the call returns
// InvalidArgument naming the full dotted path ("model.ch_mult: expected a list of integers").
// Finish() then reports keys that no call consumed, which catches misspelled fields.
//
// Ownership: readers share the parsed document by value (YAML::Node is reference counted).
// Not thread-safe; use one reader per thread.
#ifndef PECO_COMMON_CONFIG_READER_H_
#define PECO_COMMON_CONFIG_READER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace peco {

class ConfigReader {
 public:
  // Parses a document whose root must be a mapping. `source` names it in errors (a file path).
  static absl::StatusOr<ConfigReader> FromString(absl::string_view text, std::string source);
  static absl::StatusOr<ConfigReader> FromFile(const std::string& path);

  // An empty mapping (every Read keeps defaults).
  ConfigReader() : node_(YAML::NodeType::Map) {}

  bool Has(absl::string_view key) const;
  // True when `key` holds a scalar (a word or a number), not a mapping or a list.
  bool HasScalar(absl::string_view key) const;

  absl::Status Read(absl::string_view key, int64_t* value);
  absl::Status Read(absl::string_view key, int* value);
  absl::Status Read(absl::string_view key, double* value);
  absl::Status Read(absl::string_view key, bool* value);
  // A string holding a NUL, control or DEL character is refused ("expected a string without
  // control characters").
  absl::Status Read(absl::string_view key, std::string* value);
  absl::Status Read(absl::string_view key, std::vector<int64_t>* value);
  absl::Status Read(absl::string_view key, std::vector<int>* value);
  absl::Status Read(absl::string_view key, std::vector<double>* value);

  // Like Read(std::string*) but the value must be one of `allowed`.
  absl::Status ReadEnum(absl::string_view key, const std::vector<std::string>& allowed,
                        std::string* value);

  // The nested mapping under `key` (an empty one when absent). InvalidArgument when the key
  // holds something other than a mapping.
  absl::StatusOr<ConfigReader> Child(absl::string_view key);

  // InvalidArgument naming the first key of this mapping that no Read/Child consumed.
  absl::Status Finish() const;

  // Dotted path of a key in this mapping, for error messages ("loss.gan.disc_weight").
  std::string PathOf(absl::string_view key) const;

 private:
  ConfigReader(YAML::Node node, std::string source, std::string prefix);
  // The node under `key`, or an undefined node; marks the key consumed.
  YAML::Node Take(absl::string_view key);
  absl::Status TypeError(absl::string_view key, absl::string_view expected) const;

  YAML::Node node_;
  std::string source_;
  std::string prefix_;
  std::set<std::string> consumed_;
};

// Applies `key.path=value` overrides (value parsed as YAML, so `[1, 2]` is a list) to a YAML
// document and returns the resulting document as YAML text, which yaml-cpp reads back (with no
// overrides: `yaml` unchanged). InvalidArgument naming the override when it is not `path=value`,
// holds a NUL byte, or when the path runs through a non-mapping value; InvalidArgument when the
// document is not YAML, is neither a mapping nor empty, or would nest too deeply to be read back.
absl::StatusOr<std::string> ApplyConfigOverrides(const std::string& yaml,
                                                 const std::vector<std::string>& overrides);

// Field-range helpers for Options::Validate() methods: InvalidArgument naming `field`.
absl::Status ExpectPositive(absl::string_view field, double value);
absl::Status ExpectNonNegative(absl::string_view field, double value);
absl::Status ExpectInRange(absl::string_view field, double value, double low, double high);

}  // namespace peco

#endif  // PECO_COMMON_CONFIG_READER_H_
