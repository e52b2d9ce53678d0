#include "common/json_line.h"

#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace peco {
namespace {

// A strict parser of one JSON value (RFC 8259) that keeps what JsonFields holds: top-level
// scalars as text and top-level lists of scalars. Nested objects and lists are parsed (so
// malformed ones are refused) and dropped. Written by hand: these lines are read on hot paths
// (every progress event, every config check), where yaml-cpp cost more than the work around it.
class Parser {
 public:
  explicit Parser(absl::string_view text) : text_(text) {}

  std::optional<JsonFields> ParseObjectLine() {
    std::map<std::string, std::string> fields;
    std::map<std::string, std::vector<std::string>> lists;
    SkipSpace();
    if (!Consume('{')) return std::nullopt;
    SkipSpace();
    if (!Consume('}')) {
      while (true) {
        SkipSpace();
        std::string key;
        if (!String(&key)) return std::nullopt;
        SkipSpace();
        if (!Consume(':')) return std::nullopt;
        SkipSpace();
        Value value;
        if (!ParseValue(/*depth=*/1, &value)) return std::nullopt;
        if (value.kind == Value::kScalar) {
          fields[key] = std::move(value.text);
          lists.erase(key);
        } else {
          fields.erase(key);
          if (value.kind == Value::kList) {
            lists[key] = std::move(value.items);
          } else {
            lists.erase(key);
          }
        }
        SkipSpace();
        if (Consume('}')) break;
        if (!Consume(',')) return std::nullopt;
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return std::nullopt;
    return JsonFields(std::move(fields), std::move(lists));
  }

 private:
  struct Value {
    enum Kind { kScalar, kNull, kList, kOther } kind = kOther;
    std::string text;                // kScalar
    std::vector<std::string> items;  // kList: a list of scalars
  };

  static constexpr int kMaxDepth = 64;

  bool ParseValue(int depth, Value* value) {
    if (depth > kMaxDepth || pos_ >= text_.size()) return false;
    const char c = text_[pos_];
    if (c == '"') {
      value->kind = Value::kScalar;
      return String(&value->text);
    }
    if (c == '{') return SkipObject(depth);
    if (c == '[') return List(depth, value);
    if (Literal("true")) {
      *value = Value{Value::kScalar, "true", {}};
      return true;
    }
    if (Literal("false")) {
      *value = Value{Value::kScalar, "false", {}};
      return true;
    }
    if (Literal("null")) {
      value->kind = Value::kNull;
      return true;
    }
    value->kind = Value::kScalar;
    return Number(&value->text);
  }

  bool SkipObject(int depth) {
    ++pos_;  // '{'
    SkipSpace();
    if (Consume('}')) return true;
    while (true) {
      SkipSpace();
      std::string key;
      if (!String(&key)) return false;
      SkipSpace();
      if (!Consume(':')) return false;
      SkipSpace();
      Value ignored;
      if (!ParseValue(depth + 1, &ignored)) return false;
      SkipSpace();
      if (Consume('}')) return true;
      if (!Consume(',')) return false;
    }
  }

  // A list; kList when every element is a string, number or boolean.
  bool List(int depth, Value* value) {
    ++pos_;  // '['
    value->kind = Value::kList;
    SkipSpace();
    if (Consume(']')) return true;
    while (true) {
      SkipSpace();
      Value item;
      if (!ParseValue(depth + 1, &item)) return false;
      if (item.kind == Value::kScalar && value->kind == Value::kList) {
        value->items.push_back(std::move(item.text));
      } else {
        value->kind = Value::kOther;
        value->items.clear();
      }
      SkipSpace();
      if (Consume(']')) return true;
      if (!Consume(',')) return false;
    }
  }

  bool Number(std::string* out) {
    const size_t start = pos_;
    Consume('-');
    if (Consume('0')) {
    } else if (!Digits()) {
      return false;
    }
    if (Consume('.') && !Digits()) return false;
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (!Consume('+')) Consume('-');
      if (!Digits()) return false;
    }
    *out = std::string(text_.substr(start, pos_ - start));
    return true;
  }

  bool Digits() {
    const size_t start = pos_;
    while (pos_ < text_.size() && absl::ascii_isdigit(static_cast<unsigned char>(text_[pos_]))) {
      ++pos_;
    }
    return pos_ > start;
  }

  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return false;
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      value <<= 4;
      if (c >= '0' && c <= '9') {
        value |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        value |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        value |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        return false;
      }
    }
    *out = value;
    return true;
  }

  static void AppendUtf8(uint32_t code, std::string* out) {
    if (code < 0x80) {
      out->push_back(static_cast<char>(code));
    } else if (code < 0x800) {
      out->push_back(static_cast<char>(0xc0 | (code >> 6)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else if (code < 0x10000) {
      out->push_back(static_cast<char>(0xe0 | (code >> 12)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    } else {
      out->push_back(static_cast<char>(0xf0 | (code >> 18)));
      out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3f)));
      out->push_back(static_cast<char>(0x80 | (code & 0x3f)));
    }
  }

  bool String(std::string* out) {
    if (!Consume('"')) return false;
    out->clear();
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;  // raw control character
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= text_.size()) return false;
      const char escape = text_[pos_++];
      switch (escape) {
        case '"':
        case '\\':
        case '/':
          out->push_back(escape);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t code;
          if (!Hex4(&code)) return false;
          if (code >= 0xd800 && code <= 0xdbff) {  // a surrogate pair
            uint32_t low;
            if (!Consume('\\') || !Consume('u') || !Hex4(&low) || low < 0xdc00 || low > 0xdfff) {
              return false;
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
          } else if (code >= 0xdc00 && code <= 0xdfff) {
            return false;
          }
          AppendUtf8(code, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;  // unterminated
  }

  bool Literal(absl::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<std::string> JsonFields::String(absl::string_view key) const {
  auto it = fields_.find(std::string(key));
  if (it == fields_.end()) return std::nullopt;
  return it->second;
}

std::optional<double> JsonFields::Number(absl::string_view key) const {
  std::optional<std::string> text = String(key);
  double value;
  if (!text || !absl::SimpleAtod(*text, &value)) return std::nullopt;
  return value;
}

std::optional<int64_t> JsonFields::Int(absl::string_view key) const {
  std::optional<std::string> text = String(key);
  int64_t value;
  if (!text || !absl::SimpleAtoi(*text, &value)) return std::nullopt;
  return value;
}

std::optional<bool> JsonFields::Bool(absl::string_view key) const {
  std::optional<std::string> text = String(key);
  if (text == "true") return true;
  if (text == "false") return false;
  return std::nullopt;
}

std::optional<std::vector<std::string>> JsonFields::StringList(absl::string_view key) const {
  auto it = lists_.find(std::string(key));
  if (it == lists_.end()) return std::nullopt;
  return it->second;
}

std::optional<JsonFields> ParseJsonObjectLine(absl::string_view line) {
  return Parser(absl::StripAsciiWhitespace(line)).ParseObjectLine();
}

}  // namespace peco
