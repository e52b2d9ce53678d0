// Fuzzes common/config_reader.h, which reads every trainer config: that includes the config_yaml
// of every submitted job, which the coordinator's validator pool hands to
// `peco-train validate --serve` together with `key=value` overrides naming the service's inputs
// (trainer/tasks/config_check.cc). Covered: ConfigReader::FromString, every typed Read, ReadEnum,
// Child, Finish, and ApplyConfigOverrides.
//
// Input: YAML text; its leading "#set key.path=value" lines are the overrides
// (fuzz/fuzz_util.h).
//
// Asserts, besides no crash, no sanitizer report and no escaping exception:
//  - every error is InvalidArgument;
//  - ApplyConfigOverrides: with no overrides the text comes back unchanged; a result reads back
//    as YAML with a mapping at the top, holding the last override's value at its path (same shape
//    and scalar text) when that override is UTF-8;
//  - ConfigReader, walking every mapping of the document (to a bounded depth): Has() is true for
//    each key; each typed Read of a key is OK or an error naming the key's dotted path; Child()
//    of a key is OK exactly when its value is a mapping or null; once every key has been read,
//    Finish() is OK, unless the mapping has a key that is not a string (which nothing can read),
//    and then it is an error.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config_reader.h"
#include "fuzz/fuzz_util.h"
#include "yaml-cpp/yaml.h"

namespace peco {
namespace {

constexpr char kSource[] = "config.yaml";
constexpr int kMaxDepth = 6;

// Returns the document `text` holds, or an undefined node when yaml-cpp refuses it.
YAML::Node LoadOrUndefined(const std::string& text) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception&) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
}

std::string Emit(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return out.c_str();
}

// Returns true when two documents mean the same to a ConfigReader: the same shape, with the same
// scalar text (tags and quoting aside: readers convert the text). Deeper than `depth` levels
// counts as the same.
bool SameYaml(const YAML::Node& a, const YAML::Node& b, int depth = 32) {
  if (depth == 0) return true;
  if (a.Type() != b.Type()) return false;
  switch (a.Type()) {
    case YAML::NodeType::Scalar:
      return a.Scalar() == b.Scalar();
    case YAML::NodeType::Sequence:
    case YAML::NodeType::Map: {
      if (a.size() != b.size()) return false;
      for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
        const bool same = a.IsMap() ? SameYaml(i->first, j->first, depth - 1) &&
                                          SameYaml(i->second, j->second, depth - 1)
                                    : SameYaml(*i, *j, depth - 1);
        if (!same) return false;
      }
      return true;
    }
    default:
      return true;
  }
}

void CheckError(const absl::Status& status, absl::string_view must_contain) {
  PECO_FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
  PECO_FUZZ_CHECK(absl::StrContains(status.message(), must_contain), status.ToString(),
                  "\nshould name: ", must_contain);
}

// Reads `key` of a copy of `reader` as T; the copy keeps `reader`'s consumed keys unchanged.
template <typename T>
void ReadAs(const ConfigReader& reader, const std::string& key) {
  ConfigReader copy = reader;
  T value{};
  const absl::Status status = copy.Read(key, &value);
  if (!status.ok()) CheckError(status, absl::StrCat(reader.PathOf(key), ": expected "));
}

// Reads every key of `node` (the mapping `reader` wraps) in every way, then recurses into the
// values that are mappings.
void Walk(ConfigReader& reader, const YAML::Node& node, int depth) {
  bool all_keys_are_strings = true;
  std::set<std::string> seen;
  for (const auto& entry : node) {
    if (!entry.first.IsScalar()) {
      all_keys_are_strings = false;
      continue;
    }
    const std::string key = entry.first.Scalar();
    // yaml-cpp keeps repeated keys; lookups find the first, which is the one to walk.
    if (!seen.insert(key).second) continue;
    PECO_FUZZ_CHECK(reader.Has(key), "Has('", key, "') is false for a key of the mapping");
    ReadAs<int64_t>(reader, key);
    ReadAs<int>(reader, key);
    ReadAs<double>(reader, key);
    ReadAs<bool>(reader, key);
    ReadAs<std::string>(reader, key);
    ReadAs<std::vector<int64_t>>(reader, key);
    ReadAs<std::vector<int>>(reader, key);
    ReadAs<std::vector<double>>(reader, key);
    {
      ConfigReader copy = reader;
      std::string value = "a";
      const absl::Status status = copy.ReadEnum(key, {"a", "b"}, &value);
      if (!status.ok()) CheckError(status, absl::StrCat(reader.PathOf(key), ": expected "));
    }
    const YAML::Node& value = entry.second;
    absl::StatusOr<ConfigReader> child = reader.Child(key);
    PECO_FUZZ_CHECK(child.ok() == (value.IsMap() || value.IsNull()), "Child('", key,
                    "'): ", child.status().ToString());
    if (!child.ok()) {
      CheckError(child.status(), reader.PathOf(key));
    } else if (value.IsMap() && depth < kMaxDepth) {
      Walk(*child, value, depth + 1);
    }
  }
  const absl::Status finished = reader.Finish();
  PECO_FUZZ_CHECK(finished.ok() == all_keys_are_strings, "Finish(): ", finished.ToString());
  if (!finished.ok()) CheckError(finished, "unknown field");
}

void FuzzReader(const std::string& text) {
  absl::StatusOr<ConfigReader> reader = ConfigReader::FromString(text, kSource);
  if (!reader.ok()) {
    CheckError(reader.status(), kSource);
    return;
  }
  const YAML::Node root = LoadOrUndefined(text);
  PECO_FUZZ_CHECK(root.IsMap() || root.IsNull(), "FromString accepted a non-mapping document");
  if (root.IsMap()) Walk(*reader, root, 0);
}

void FuzzOverrides(const std::string& text, const std::vector<std::string>& overrides) {
  absl::StatusOr<std::string> result = ApplyConfigOverrides(text, overrides);
  if (!result.ok()) {
    PECO_FUZZ_CHECK(result.status().code() == absl::StatusCode::kInvalidArgument,
                    result.status().ToString());
    return;
  }
  if (overrides.empty()) {
    PECO_FUZZ_CHECK(*result == text, "no overrides, yet the text changed");
    return;
  }
  const YAML::Node root = LoadOrUndefined(*result);
  PECO_FUZZ_CHECK(root.IsMap(), "the result does not read back as a mapping:\n", *result);
  const std::string& last = overrides.back();
  // yaml-cpp's emitter writes U+FFFD for the bytes of a quoted string that are not UTF-8, which
  // is not YAML to begin with.
  if (!fuzz::IsValidUtf8(last)) return;
  const size_t eq = last.find('=');
  std::vector<std::string> path = absl::StrSplit(last.substr(0, eq), '.');
  YAML::Node node = root;
  for (const std::string& key : path) {
    PECO_FUZZ_CHECK(node.IsMap(), "--set ", last, ": '", key, "' is not inside a mapping in\n",
                    *result);
    const YAML::Node& const_node = node;
    const YAML::Node child = const_node[key];
    PECO_FUZZ_CHECK(child.IsDefined(), "--set ", last, ": '", key, "' is missing from\n", *result);
    node.reset(child);
  }
  const YAML::Node expected = LoadOrUndefined(last.substr(eq + 1));
  PECO_FUZZ_CHECK(SameYaml(node, expected), "--set ", last, ": the value reads back as '",
                  Emit(node), "', expected '", Emit(expected), "'");
}

void FuzzConfig(const std::string& text) {
  FuzzReader(text);
  FuzzOverrides(text, {});
  FuzzOverrides(text, fuzz::LeadingOverrides(text));
}

}  // namespace
}  // namespace peco

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peco::FuzzConfig(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
