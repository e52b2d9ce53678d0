// Builds one JSON object on a single line (newline-delimited JSON events, state files).
//
// Usage: JsonWriter w; w.Add("event", "step").Add("step", 10).Add("loss", 0.5); w.str().
// Non-finite doubles are written as null (JSON has no NaN). Not thread-safe.
#ifndef PECO_COMMON_JSON_WRITER_H_
#define PECO_COMMON_JSON_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace peco {

class JsonWriter {
 public:
  JsonWriter& Add(absl::string_view key, absl::string_view value);
  JsonWriter& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  JsonWriter& Add(absl::string_view key, const std::string& value) {
    return Add(key, absl::string_view(value));
  }
  JsonWriter& Add(absl::string_view key, int64_t value);
  JsonWriter& Add(absl::string_view key, int value) { return Add(key, int64_t{value}); }
  JsonWriter& Add(absl::string_view key, uint64_t value);
  JsonWriter& Add(absl::string_view key, double value);
  JsonWriter& Add(absl::string_view key, bool value);
  JsonWriter& Add(absl::string_view key, const std::vector<int64_t>& values);
  // Non-finite entries are written as null, as for a single double.
  JsonWriter& Add(absl::string_view key, const std::vector<double>& values);
  JsonWriter& Add(absl::string_view key, const std::vector<std::string>& values);
  // Adds an already-serialised JSON value (an object built by another JsonWriter).
  JsonWriter& AddRaw(absl::string_view key, absl::string_view json);

  // The object, `{...}` without a trailing newline.
  std::string str() const { return "{" + body_ + "}"; }

  // Quotes and escapes a string as a JSON string literal. Besides the characters JSON requires,
  // DEL, the C1 controls (U+0080..U+009F), U+2028 and U+2029 are escaped, so that a reader
  // taking JSON as YAML (which it nearly is) gets the same text: YAML refuses those controls
  // and folds U+0085, U+2028 and U+2029 like line breaks.
  static std::string Quote(absl::string_view text);

 private:
  void Key(absl::string_view key);
  std::string body_;
};

}  // namespace peco

#endif  // PECO_COMMON_JSON_WRITER_H_
