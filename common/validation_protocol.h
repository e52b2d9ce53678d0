// The wire format of `peco-train validate --serve` (docs/TRAINER.md): one JSON object per line
// in each direction, one response line per request line, in order. Both sides (trainer/main.cc
// and the coordinator's validator pool) encode and parse through this file, so they cannot
// disagree on it.
//
//   request:  {"id":7,"config":"kind: tokenizer\n...","sets":["train.max_steps=10"],
//              "check_paths":false}
//   response: {"id":7,"ok":true,"kind":"tokenizer","max_steps":10,
//              "inputs":["data.path=/usr/share/datasets/fashion-mnist"]}
//          or {"id":7,"ok":false,"code":"INVALID_ARGUMENT","message":"config: train.max_steps:
//          ..."}
//
// A request carries what one-shot `peco-train validate` gets on its command line (the config
// text instead of a file, the `--set` overrides, --check_paths); a response carries what
// one-shot validate prints as events (`valid` with kind and max_steps, one `input` per path the
// job would read as "field=path", or `error` with the status code name and the message).
//
// Thread-safe: pure functions.
#ifndef PECO_COMMON_VALIDATION_PROTOCOL_H_
#define PECO_COMMON_VALIDATION_PROTOCOL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco {

struct ValidationRequest {
  // Echoed in the response; the client checks it to detect a confused server.
  int64_t id = 0;
  // The job config YAML, as a user submitted it.
  std::string config;
  // `key.path=value` overrides applied to `config` before the check (peco-train's --set).
  std::vector<std::string> sets;
  // Whether the paths the config names must exist (peco-train's --check_paths).
  bool check_paths = false;
};

struct ValidationResponse {
  int64_t id = 0;
  // OK when the config is valid; otherwise the trainer's error (InvalidArgument naming the
  // field, for a bad config).
  absl::Status status;
  // For a valid config: its `kind:`, its train.max_steps and, in order, every (config field,
  // path) the job would read.
  std::string kind;
  int64_t max_steps = 0;
  std::vector<std::pair<std::string, std::string>> inputs;
  // Where each rank trains: "cpu" or "cuda" (train.device).
  std::string device = "cpu";
};

// Returns the request or response as one line of JSON, without the trailing newline.
std::string EncodeValidationRequest(const ValidationRequest& request);
std::string EncodeValidationResponse(const ValidationResponse& response);

// Parse one line. InvalidArgument naming the problem for anything that is not a well-formed
// message of that kind.
absl::StatusOr<ValidationRequest> ParseValidationRequest(absl::string_view line);
absl::StatusOr<ValidationResponse> ParseValidationResponse(absl::string_view line);

// Returns the code whose absl::StatusCodeToString() is `name` ("INVALID_ARGUMENT"); kUnknown
// for a name no code has.
absl::StatusCode StatusCodeFromName(absl::string_view name);

}  // namespace peco

#endif  // PECO_COMMON_VALIDATION_PROTOCOL_H_
