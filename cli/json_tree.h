// The tree of a proto message's JSON mapping, as the CLI prints it with -o json and -o yaml:
// protobuf's mapping (field names as in the .proto files, default values included), in field
// order, with peco's timestamps readable: every int64 field named `<x>_us` (microseconds since
// the Unix epoch: submit_time_us, time_us, last_heartbeat_us, ...) becomes `<x>` holding an
// RFC 3339 time in UTC ("2026-12-07T23:59:01.123456+00:00"), or null when 0 (not yet).
//
// The rewrite follows the message's descriptor, never key names alone: a label or metric map
// whose key happens to end in "_us" is printed as it is.
//
// Thread-safe: pure functions.
#ifndef PECO_CLI_JSON_TREE_H_
#define PECO_CLI_JSON_TREE_H_

#include <yaml-cpp/yaml.h>

#include <string>

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"

namespace peco::cli {

// The message's JSON mapping as a tree (see above). Scalars that JSON quotes carry the tag "!".
// Internal when the message cannot be serialised.
absl::StatusOr<YAML::Node> MessageTree(const google::protobuf::Message& message);

// The tree as JSON: indented by two spaces per level when `indent`, else on one line.
std::string TreeToJson(const YAML::Node& tree, bool indent);

// Microseconds since the Unix epoch as RFC 3339 in UTC with microseconds.
std::string Rfc3339FromMicros(int64_t time_us);

}  // namespace peco::cli

#endif  // PECO_CLI_JSON_TREE_H_
