#include "cli/json_tree.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/json_writer.h"
#include "common/rfc3339.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace peco::cli {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

constexpr absl::string_view kMicrosSuffix = "_us";

bool IsTimestamp(const FieldDescriptor& field) {
  return field.cpp_type() == FieldDescriptor::CPPTYPE_INT64 && !field.is_repeated() &&
         absl::EndsWith(field.name(), kMicrosSuffix) && field.name().size() > kMicrosSuffix.size();
}

YAML::Node Quoted(const std::string& text) {
  YAML::Node node(text);
  node.SetTag("!");
  return node;
}

// Rewrites the timestamps of the mapping `node` of a message of type `type`, recursively.
YAML::Node Rewrite(const YAML::Node& node, const Descriptor& type) {
  if (!node.IsMap()) return node;
  YAML::Node out(YAML::NodeType::Map);
  for (auto it = node.begin(); it != node.end(); ++it) {
    const std::string key = it->first.as<std::string>();
    YAML::Node value = it->second;
    const FieldDescriptor* field = type.FindFieldByName(key);
    if (field == nullptr) {
      out[key] = value;
      continue;
    }
    if (field->is_map()) {
      // Only maps of messages hold timestamps; the keys are data and stay as they are.
      const FieldDescriptor* map_value = field->message_type()->map_value();
      if (map_value->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && value.IsMap()) {
        YAML::Node entries(YAML::NodeType::Map);
        for (auto entry = value.begin(); entry != value.end(); ++entry) {
          entries[entry->first] = Rewrite(entry->second, *map_value->message_type());
        }
        value = entries;
      }
      out[key] = value;
    } else if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (value.IsSequence()) {
        YAML::Node items(YAML::NodeType::Sequence);
        for (const YAML::Node& item : value) items.push_back(Rewrite(item, *field->message_type()));
        value = items;
      } else {
        value = Rewrite(value, *field->message_type());
      }
      out[key] = value;
    } else if (IsTimestamp(*field) && value.IsScalar()) {
      int64_t time_us = 0;
      const std::string name = key.substr(0, key.size() - kMicrosSuffix.size());
      if (absl::SimpleAtoi(value.Scalar(), &time_us)) {
        out[name] =
            time_us == 0 ? YAML::Node(YAML::NodeType::Null) : Quoted(Rfc3339FromMicros(time_us));
      } else {
        out[key] = value;
      }
    } else {
      out[key] = value;
    }
  }
  return out;
}

void AppendJson(const YAML::Node& node, bool indent, int depth, std::string* out) {
  const std::string newline = indent ? "\n" + std::string(2 * (depth + 1), ' ') : "";
  const std::string closing = indent ? "\n" + std::string(2 * depth, ' ') : "";
  if (node.IsMap()) {
    if (node.size() == 0) {
      out->append("{}");
      return;
    }
    out->push_back('{');
    bool first = true;
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!first) out->push_back(',');
      first = false;
      absl::StrAppend(out, newline, JsonWriter::Quote(it->first.as<std::string>()),
                      indent ? ": " : ":");
      AppendJson(it->second, indent, depth + 1, out);
    }
    absl::StrAppend(out, closing, "}");
  } else if (node.IsSequence()) {
    if (node.size() == 0) {
      out->append("[]");
      return;
    }
    out->push_back('[');
    bool first = true;
    for (const YAML::Node& item : node) {
      if (!first) out->push_back(',');
      first = false;
      out->append(newline);
      AppendJson(item, indent, depth + 1, out);
    }
    absl::StrAppend(out, closing, "]");
  } else if (node.IsScalar()) {
    // Plain scalars are JSON's numbers and booleans; quoted ones its strings.
    out->append(node.Tag() == "!" ? JsonWriter::Quote(node.Scalar()) : node.Scalar());
  } else {
    out->append("null");
  }
}

}  // namespace

std::string Rfc3339FromMicros(int64_t time_us) { return Rfc3339(absl::FromUnixMicros(time_us)); }

absl::StatusOr<YAML::Node> MessageTree(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat("JSON output: ", status.ToString()));
  }
  try {
    return Rewrite(YAML::Load(json), *message.GetDescriptor());
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("JSON output: ", e.what()));
  }
}

std::string TreeToJson(const YAML::Node& tree, bool indent) {
  std::string out;
  AppendJson(tree, indent, 0, &out);
  return out;
}

}  // namespace peco::cli
