#include "coordinator/spec_validator.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/path_roots.h"
#include "common/status_macros.h"
#include "common/validation_protocol.h"
#include "service/job_kinds.h"

namespace peco::coordinator {
namespace {

namespace fs = std::filesystem;

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

bool ValidLabelText(absl::string_view text, size_t max_size) {
  if (text.empty() || text.size() > max_size) return false;
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

void NormalizeJobSpec(v1::JobSpec* spec) {
  if (spec->world_size() == 0) spec->set_world_size(1);
  if (spec->devices_per_rank().gpus() == 0 && spec->devices_per_rank().cpu_slots() == 0) {
    spec->mutable_devices_per_rank()->set_cpu_slots(1);
  }
  if (spec->name().empty()) spec->set_name(service::JobKindName(spec->kind()));
}

absl::Status CheckResumeOverrides(const std::vector<std::string>& overrides) {
  constexpr size_t kMaxOverrides = 64;
  if (overrides.size() > kMaxOverrides) {
    return absl::InvalidArgumentError(
        absl::StrCat("config_overrides: at most ", kMaxOverrides, ", got ", overrides.size()));
  }
  for (const std::string& entry : overrides) {
    const size_t eq = entry.find('=');
    const std::string key = entry.substr(0, eq);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("config_overrides: '", entry.substr(0, 200), "': ", why));
    };
    if (eq == std::string::npos || eq == 0) return bad("expected section.field=value");
    const std::string section = key.substr(0, key.find('.'));
    if (key.find('.') == std::string::npos ||
        (section != "train" && section != "optim" && section != "eval")) {
      return bad("a resumed job may change train.*, optim.* and eval.* only (its model stays)");
    }
    if (key == "train.device" || key == "train.output_dir") {
      return bad("train.device and train.output_dir are not the job's to change on resume");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckJobSpecFields(const v1::JobSpec& spec, const SpecLimits& limits) {
  if (service::JobKindName(spec.kind()).empty()) {
    return Bad("kind", absl::StrCat("expected one of ", service::KnownJobKindNames()));
  }
  if (!ValidLabelText(spec.name(), 128)) {
    return Bad("name", "expected 1 to 128 printable characters");
  }
  if (spec.config_yaml().empty()) return Bad("config_yaml", "must not be empty");
  if (static_cast<int64_t>(spec.config_yaml().size()) > limits.max_config_bytes) {
    return Bad("config_yaml",
               absl::StrCat("is ", spec.config_yaml().size(), " bytes, more than the limit of ",
                            limits.max_config_bytes));
  }
  if (spec.world_size() < 1 || spec.world_size() > limits.max_world_size) {
    return Bad("world_size",
               absl::StrCat("expected 1 to ", limits.max_world_size, ", got ", spec.world_size()));
  }
  const v1::DeviceRequest& devices = spec.devices_per_rank();
  if (devices.gpus() < 0 || devices.gpus() > 64) {
    return Bad("devices_per_rank.gpus", absl::StrCat("expected 0 to 64, got ", devices.gpus()));
  }
  if (devices.cpu_slots() < 0 || devices.cpu_slots() > 1024) {
    return Bad("devices_per_rank.cpu_slots",
               absl::StrCat("expected 0 to 1024, got ", devices.cpu_slots()));
  }
  if (spec.priority() < -limits.max_priority || spec.priority() > limits.max_priority) {
    return Bad("priority", absl::StrCat("expected ", -limits.max_priority, " to ",
                                        limits.max_priority, ", got ", spec.priority()));
  }
  if (spec.has_max_restarts() &&
      (spec.max_restarts() < 0 || spec.max_restarts() > limits.max_restarts)) {
    return Bad("max_restarts",
               absl::StrCat("expected 0 to ", limits.max_restarts, ", got ", spec.max_restarts()));
  }
  if (spec.labels_size() > limits.max_labels) {
    return Bad("labels",
               absl::StrCat("at most ", limits.max_labels, " labels, got ", spec.labels_size()));
  }
  for (const auto& [key, value] : spec.labels()) {
    if (!ValidLabelText(key, 63)) {
      return Bad("labels", absl::StrCat("key '", key, "': expected 1 to 63 printable characters"));
    }
    if (value.size() > 256) {
      return Bad(absl::StrCat("labels.", key), "expected at most 256 characters");
    }
  }
  return absl::OkStatus();
}

// Stands for a checkpoint directory the worker fills in at launch.
constexpr char kServiceInputPlaceholder[] = "/peco-service-input";

namespace {

ValidatorPool::Options PoolOptions(const TrainerSpecValidator::Options& options) {
  ValidatorPool::Options pool;
  pool.argv = {options.trainer_binary, "validate", "--serve"};
  pool.pool_size = options.pool_size;
  pool.request_timeout = options.timeout;
  pool.startup_timeout = options.startup_timeout;
  return pool;
}

}  // namespace

absl::Status TrainerSpecValidator::Options::Validate() const {
  if (trainer_binary.empty()) {
    return absl::InvalidArgumentError("spec validator: trainer_binary must not be empty");
  }
  for (const std::string& root : allowed_roots) {
    if (!fs::path(root).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec validator: allowed_roots: '", root, "' is not an absolute path"));
    }
  }
  // pool_size, timeout (the pool's request_timeout) and startup_timeout.
  return PoolOptions(*this).Validate();
}

TrainerSpecValidator::TrainerSpecValidator(Options options, ProcessLauncher* launcher)
    : options_(std::move(options)), pool_(PoolOptions(options_), launcher) {}

absl::Status TrainerSpecValidator::Validate(const v1::JobSpec& spec,
                                            const std::vector<std::string>& input_fields) {
  const std::string kind = service::JobKindName(spec.kind());
  ValidationRequest request;
  request.config = spec.config_yaml();
  request.check_paths = false;
  for (const std::string& field : input_fields) {
    // The directory the worker will fetch the checkpoint into; paths are not checked here.
    request.sets.push_back(absl::StrCat(field, "=", kServiceInputPlaceholder));
  }
  ASSIGN_OR_RETURN(ValidationResponse verdict, pool_.Check(std::move(request)));
  if (!verdict.status.ok()) {
    // The trainer names the document `config` (common/validation_protocol.h).
    return absl::InvalidArgumentError(absl::StrCat("spec.config_yaml: ", verdict.status.message()));
  }
  if (verdict.kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.kind: the job is a ", kind, " job but its config says kind: ", verdict.kind));
  }
  // The placement and the trainer must agree on the device: a job given GPUs that trains on the
  // CPU would hold them idle, one that trains on CUDA without them would fail on its worker.
  const int gpus = spec.devices_per_rank().gpus();
  if (gpus > 0 && verdict.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.devices_per_rank.gpus is ", gpus, " but spec.config_yaml: train.device is ",
        verdict.device, ": set train.device: cuda, or gpus: 0 for a CPU job"));
  }
  if (gpus == 0 && verdict.device == "cuda") {
    return absl::InvalidArgumentError(
        "spec.config_yaml: train.device is cuda but spec.devices_per_rank.gpus is 0: give each "
        "rank a GPU (job: devices_per_rank: {gpus: 1}), or train.device: cpu");
  }
  for (const auto& [field, path] : verdict.inputs) {
    if (std::find(input_fields.begin(), input_fields.end(), field) != input_fields.end()) continue;
    if (!fs::path(path).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.config_yaml: ", field, ": '", path, "' must be an absolute path"));
    }
    bool allowed = false;
    for (const std::string& root : options_.allowed_roots) allowed |= PathIsUnder(path, root);
    if (!allowed) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec.config_yaml: ", field, ": '", path, "' is outside the allowed roots (",
                       absl::StrJoin(options_.allowed_roots, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

std::vector<pid_t> TrainerSpecValidator::ValidatorPidsForTest() const {
  return pool_.PidsForTest();
}

}  // namespace peco::coordinator
