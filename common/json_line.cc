#include "common/json_line.h"

#include <yaml-cpp/yaml.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"

namespace peco {

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
  line = absl::StripAsciiWhitespace(line);
  // JSON is YAML's flow syntax; YAML also accepts "key: value" and bare words, which are not
  // JSON objects, so only text in braces is parsed.
  if (line.size() < 2 || line.front() != '{' || line.back() != '}') return std::nullopt;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(line));
  } catch (const YAML::Exception&) {
    return std::nullopt;
  }
  if (!root.IsMap()) return std::nullopt;
  std::map<std::string, std::string> fields;
  std::map<std::string, std::vector<std::string>> lists;
  for (const auto& entry : root) {
    if (!entry.first.IsScalar()) continue;
    if (entry.second.IsScalar()) {
      fields[entry.first.Scalar()] = entry.second.Scalar();
    } else if (entry.second.IsSequence()) {
      std::vector<std::string> items;
      bool scalars = true;
      for (const YAML::Node& item : entry.second) {
        scalars = scalars && item.IsScalar();
        if (scalars) items.push_back(item.Scalar());
      }
      if (scalars) lists[entry.first.Scalar()] = std::move(items);
    }
  }
  return JsonFields(std::move(fields), std::move(lists));
}

}  // namespace peco
