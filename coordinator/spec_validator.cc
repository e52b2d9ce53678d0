#include "coordinator/spec_validator.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/json_line.h"
#include "common/process_launcher.h"
#include "common/status_macros.h"
#include "proto/job_kind_names.h"

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

// Removes the temporary file on every path out of Validate().
class ScratchFile {
 public:
  ~ScratchFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  absl::Status Create(const std::string& dir, const std::string& contents) {
    std::error_code error;
    fs::create_directories(dir, error);
    std::string pattern = absl::StrCat(dir, "/spec-XXXXXX.yaml");
    int fd = ::mkstemps(pattern.data(), 5);
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat("creating a scratch file in ", dir, ": ", std::strerror(errno)));
    }
    ::close(fd);
    path_ = pattern;
    return WriteFileAtomic(path_, contents);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Reads the child's stdout until end of file or the deadline. Returns false on timeout.
bool ReadAll(int fd, absl::Time deadline, std::string* out) {
  char buffer[4096];
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd pfd{fd, POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    out->append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace

void NormalizeJobSpec(v1::JobSpec* spec) {
  if (spec->world_size() == 0) spec->set_world_size(1);
  if (spec->devices_per_rank().gpus() == 0 && spec->devices_per_rank().cpu_slots() == 0) {
    spec->mutable_devices_per_rank()->set_cpu_slots(1);
  }
  if (spec->name().empty()) spec->set_name(v1::JobKindName(spec->kind()));
}

absl::Status CheckJobSpecFields(const v1::JobSpec& spec, const SpecLimits& limits) {
  if (v1::JobKindName(spec.kind()).empty()) {
    return Bad("kind", absl::StrCat("expected one of ", v1::KnownJobKindNames()));
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

bool PathIsUnder(absl::string_view path, absl::string_view root) {
  fs::path p = fs::path(std::string(path)).lexically_normal();
  fs::path r = fs::path(std::string(root)).lexically_normal();
  if (!p.is_absolute() || !r.is_absolute()) return false;
  auto pi = p.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri) {
    if (ri->empty()) continue;  // the trailing "" of "/a/b/"
    if (pi == p.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

absl::Status TrainerSpecValidator::Options::Validate() const {
  if (trainer_binary.empty()) {
    return absl::InvalidArgumentError("spec validator: trainer_binary must not be empty");
  }
  if (scratch_dir.empty()) {
    return absl::InvalidArgumentError("spec validator: scratch_dir must not be empty");
  }
  for (const std::string& root : allowed_roots) {
    if (!fs::path(root).is_absolute()) {
      return absl::InvalidArgumentError(
          absl::StrCat("spec validator: allowed_roots: '", root, "' is not an absolute path"));
    }
  }
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("spec validator: timeout must be positive");
  }
  return absl::OkStatus();
}

// Stands for a checkpoint directory the worker fills in at launch.
constexpr char kServiceInputPlaceholder[] = "/peco-service-input";

TrainerSpecValidator::TrainerSpecValidator(Options options) : options_(std::move(options)) {}

absl::Status TrainerSpecValidator::Validate(const v1::JobSpec& spec,
                                            const std::vector<std::string>& input_fields) {
  const std::string kind = v1::JobKindName(spec.kind());
  ScratchFile config;
  RETURN_IF_ERROR(config.Create(options_.scratch_dir, spec.config_yaml()));

  LaunchSpec launch;
  launch.argv = {options_.trainer_binary, "validate",      "--config",
                 config.path(),           "--check_paths", "false"};
  for (const std::string& field : input_fields) {
    // The directory the worker will fetch the checkpoint into; paths are not checked here.
    launch.argv.insert(launch.argv.end(),
                       {"--set", absl::StrCat(field, "=", kServiceInputPlaceholder)});
  }
  // Validation runs no tensor code: keep the trainer from re-executing itself for OpenMP.
  launch.env = {"OMP_WAIT_POLICY=PASSIVE", "OMP_NUM_THREADS=1"};
  launch.stderr_path = "/dev/null";
  PosixProcessLauncher launcher;
  absl::StatusOr<std::unique_ptr<Process>> process = launcher.Launch(launch);
  if (!process.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot check the config: starting ",
                                               options_.trainer_binary, ": ",
                                               process.status().message()));
  }
  std::string output;
  const bool finished = ReadAll((*process)->stdout_fd(), absl::Now() + options_.timeout, &output);
  if (!finished) (*process)->Signal(SIGKILL).IgnoreError();
  ASSIGN_OR_RETURN(ExitStatus exit, (*process)->Wait());
  if (!finished) {
    return absl::UnavailableError(absl::StrCat("cannot check the config: ", options_.trainer_binary,
                                               " validate took longer than ",
                                               absl::FormatDuration(options_.timeout)));
  }

  std::optional<std::string> error_message;
  std::optional<std::string> valid_kind;
  std::vector<std::pair<std::string, std::string>> inputs;  // field, path
  for (absl::string_view line : absl::StrSplit(output, '\n', absl::SkipEmpty())) {
    std::optional<JsonFields> event = ParseJsonObjectLine(line);
    if (!event) continue;
    const std::string type = event->String("event").value_or("");
    if (type == "error") {
      error_message = event->String("message").value_or("invalid config");
    } else if (type == "input") {
      inputs.emplace_back(event->String("field").value_or("?"), event->String("path").value_or(""));
    } else if (type == "valid") {
      valid_kind = event->String("kind").value_or("");
    }
  }
  if (error_message) {
    // The trainer names the config document by the scratch file; name it `config` instead.
    std::string message = *error_message;
    size_t at = message.find(config.path());
    if (at != std::string::npos) message.replace(at, config.path().size(), "config");
    return absl::InvalidArgumentError(absl::StrCat("spec.config_yaml: ", message));
  }
  if (!exit.success() || !valid_kind) {
    return absl::InternalError(absl::StrCat("cannot check the config: ", options_.trainer_binary,
                                            " validate ended with ", exit.ToString(),
                                            " and no verdict"));
  }
  if (*valid_kind != kind) {
    return absl::InvalidArgumentError(absl::StrCat("spec.kind: the job is a ", kind,
                                                   " job but its config says kind: ", *valid_kind));
  }
  for (const auto& [field, path] : inputs) {
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

}  // namespace peco::coordinator
