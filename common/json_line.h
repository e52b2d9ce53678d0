// Reading one line of newline-delimited JSON, the format of peco-train's progress events
// (docs/TRAINER.md): a flat object whose interesting fields are scalars.
//
// Thread-safe: pure functions.
#ifndef PECO_COMMON_JSON_LINE_H_
#define PECO_COMMON_JSON_LINE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace peco {

// The top-level scalar fields of a JSON object, as their text without quotes ("step" -> "10");
// nested objects and lists are skipped, JSON null is absent.
class JsonFields {
 public:
  JsonFields() = default;
  explicit JsonFields(std::map<std::string, std::string> fields) : fields_(std::move(fields)) {}

  // Returns the field converted to the requested type, or std::nullopt when it is absent or
  // does not convert.
  std::optional<std::string> String(absl::string_view key) const;
  std::optional<double> Number(absl::string_view key) const;
  std::optional<int64_t> Int(absl::string_view key) const;
  std::optional<bool> Bool(absl::string_view key) const;

  const std::map<std::string, std::string>& fields() const { return fields_; }

 private:
  std::map<std::string, std::string> fields_;
};

// Parses one line holding a JSON object (surrounding whitespace ignored). Returns std::nullopt
// for anything else: an empty line, a list, a bare value, malformed JSON.
std::optional<JsonFields> ParseJsonObjectLine(absl::string_view line);

}  // namespace peco

#endif  // PECO_COMMON_JSON_LINE_H_
