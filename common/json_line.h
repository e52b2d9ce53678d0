// Reading one line of newline-delimited JSON, the format of peco-train's progress events
// (docs/TRAINER.md) and of `peco-train validate --serve` (common/validation_protocol.h): an
// object whose interesting fields are scalars or lists of scalars.
//
// Thread-safe: pure functions.
#ifndef PECO_COMMON_JSON_LINE_H_
#define PECO_COMMON_JSON_LINE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace peco {

// The top-level scalar fields of a JSON object, as their text without quotes ("step" -> "10"),
// and its top-level lists of scalars; nested objects and lists holding anything else are
// skipped, JSON null is absent.
class JsonFields {
 public:
  JsonFields() = default;
  explicit JsonFields(std::map<std::string, std::string> fields,
                      std::map<std::string, std::vector<std::string>> lists = {})
      : fields_(std::move(fields)), lists_(std::move(lists)) {}

  // Returns the field converted to the requested type, or std::nullopt when it is absent or
  // does not convert.
  std::optional<std::string> String(absl::string_view key) const;
  std::optional<double> Number(absl::string_view key) const;
  std::optional<int64_t> Int(absl::string_view key) const;
  std::optional<bool> Bool(absl::string_view key) const;
  // Returns the elements of a list of scalars as text (["a", 1] -> {"a", "1"}), or std::nullopt
  // when the key is absent or is not such a list.
  std::optional<std::vector<std::string>> StringList(absl::string_view key) const;

  const std::map<std::string, std::string>& fields() const { return fields_; }

 private:
  std::map<std::string, std::string> fields_;
  std::map<std::string, std::vector<std::string>> lists_;
};

// Parses one line holding a JSON object (surrounding whitespace ignored). Returns std::nullopt
// for anything else: an empty line, a list, a bare value, malformed JSON.
std::optional<JsonFields> ParseJsonObjectLine(absl::string_view line);

}  // namespace peco

#endif  // PECO_COMMON_JSON_LINE_H_
