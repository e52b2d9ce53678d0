#include "common/json_writer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace peco {

std::string JsonWriter::Quote(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    // C1 controls U+0080..U+009F (C2 80..C2 9F), U+2028 (E2 80 A8) and U+2029 (E2 80 A9).
    if (c == '\xc2' && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(text[i + 1]));
      ++i;
      continue;
    }
    if (c == '\xe2' && i + 2 < text.size() && text[i + 1] == '\x80' &&
        (text[i + 2] == '\xa8' || text[i + 2] == '\xa9')) {
      out += text[i + 2] == '\xa8' ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += absl::StrFormat("\\u%04x", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  out += "\"";
  return out;
}

void JsonWriter::Key(absl::string_view key) {
  if (!body_.empty()) body_ += ",";
  body_ += Quote(key);
  body_ += ":";
}

JsonWriter& JsonWriter::Add(absl::string_view key, absl::string_view value) {
  Key(key);
  body_ += Quote(value);
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, int64_t value) {
  Key(key);
  absl::StrAppend(&body_, value);
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, uint64_t value) {
  Key(key);
  absl::StrAppend(&body_, value);
  return *this;
}

namespace {

void AppendDouble(double value, std::string* out) {
  if (std::isfinite(value)) {
    *out += absl::StrFormat("%.9g", value);
  } else {
    *out += "null";
  }
}

}  // namespace

JsonWriter& JsonWriter::Add(absl::string_view key, double value) {
  Key(key);
  AppendDouble(value, &body_);
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, bool value) {
  Key(key);
  body_ += value ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, const std::vector<int64_t>& values) {
  Key(key);
  body_ += "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) body_ += ",";
    absl::StrAppend(&body_, values[i]);
  }
  body_ += "]";
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, const std::vector<double>& values) {
  Key(key);
  body_ += "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) body_ += ",";
    AppendDouble(values[i], &body_);
  }
  body_ += "]";
  return *this;
}

JsonWriter& JsonWriter::Add(absl::string_view key, const std::vector<std::string>& values) {
  Key(key);
  body_ += "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) body_ += ",";
    body_ += Quote(values[i]);
  }
  body_ += "]";
  return *this;
}

JsonWriter& JsonWriter::AddRaw(absl::string_view key, absl::string_view json) {
  Key(key);
  absl::StrAppend(&body_, json);
  return *this;
}

}  // namespace peco
