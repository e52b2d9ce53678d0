#include "common/validation_protocol.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/json_line.h"
#include "common/json_writer.h"

namespace peco {
namespace {

absl::Status Malformed(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed validation ", what, ": ", why));
}

}  // namespace

absl::StatusCode StatusCodeFromName(absl::string_view name) {
  // absl offers only code -> name; the codes are the 17 canonical ones, 0..16.
  for (int code = 0; code <= 16; ++code) {
    const absl::StatusCode candidate = static_cast<absl::StatusCode>(code);
    if (absl::StatusCodeToString(candidate) == name) return candidate;
  }
  return absl::StatusCode::kUnknown;
}

std::string EncodeValidationRequest(const ValidationRequest& request) {
  JsonWriter writer;
  writer.Add("id", request.id)
      .Add("config", request.config)
      .Add("sets", request.sets)
      .Add("check_paths", request.check_paths);
  return writer.str();
}

std::string EncodeValidationResponse(const ValidationResponse& response) {
  JsonWriter writer;
  writer.Add("id", response.id).Add("ok", response.status.ok());
  if (!response.status.ok()) {
    writer.Add("code", absl::StatusCodeToString(response.status.code()))
        .Add("message", std::string(response.status.message()));
    return writer.str();
  }
  std::vector<std::string> inputs;
  inputs.reserve(response.inputs.size());
  for (const auto& [field, path] : response.inputs)
    inputs.push_back(absl::StrCat(field, "=", path));
  writer.Add("kind", response.kind)
      .Add("max_steps", response.max_steps)
      .Add("inputs", inputs)
      .Add("device", response.device);
  return writer.str();
}

absl::StatusOr<ValidationRequest> ParseValidationRequest(absl::string_view line) {
  std::optional<JsonFields> fields = ParseJsonObjectLine(line);
  if (!fields) return Malformed("request", "not a JSON object");
  ValidationRequest request;
  std::optional<int64_t> id = fields->Int("id");
  std::optional<std::string> config = fields->String("config");
  if (!id) return Malformed("request", "no integer id");
  if (!config) return Malformed("request", "no config text");
  request.id = *id;
  request.config = *std::move(config);
  if (fields->fields().count("sets") > 0) return Malformed("request", "sets must be a list");
  request.sets = fields->StringList("sets").value_or(std::vector<std::string>());
  if (fields->fields().count("check_paths") > 0) {
    std::optional<bool> check_paths = fields->Bool("check_paths");
    if (!check_paths) return Malformed("request", "check_paths must be true or false");
    request.check_paths = *check_paths;
  }
  return request;
}

absl::StatusOr<ValidationResponse> ParseValidationResponse(absl::string_view line) {
  std::optional<JsonFields> fields = ParseJsonObjectLine(line);
  if (!fields) return Malformed("response", "not a JSON object");
  ValidationResponse response;
  std::optional<int64_t> id = fields->Int("id");
  std::optional<bool> ok = fields->Bool("ok");
  if (!id || !ok) return Malformed("response", "no integer id or boolean ok");
  response.id = *id;
  if (!*ok) {
    std::optional<std::string> code = fields->String("code");
    std::optional<std::string> message = fields->String("message");
    if (!code || !message) return Malformed("response", "an error without code or message");
    absl::StatusCode status_code = StatusCodeFromName(*code);
    // An error that claims to be OK would turn into a verdict of valid: never.
    if (status_code == absl::StatusCode::kOk) status_code = absl::StatusCode::kUnknown;
    response.status = absl::Status(status_code, *message);
    return response;
  }
  std::optional<std::string> kind = fields->String("kind");
  std::optional<int64_t> max_steps = fields->Int("max_steps");
  std::optional<std::vector<std::string>> inputs = fields->StringList("inputs");
  if (!kind || !max_steps || !inputs) {
    return Malformed("response", "a verdict of valid without kind, max_steps or inputs");
  }
  response.kind = *std::move(kind);
  response.max_steps = *max_steps;
  std::optional<std::string> device = fields->String("device");
  if (!device || (*device != "cpu" && *device != "cuda")) {
    return Malformed("response", "a verdict of valid without a device of cpu or cuda");
  }
  response.device = *std::move(device);
  for (const std::string& input : *inputs) {
    const size_t eq = input.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Malformed("response", absl::StrCat("input '", input, "' is not field=path"));
    }
    response.inputs.emplace_back(input.substr(0, eq), input.substr(eq + 1));
  }
  return response;
}

}  // namespace peco
