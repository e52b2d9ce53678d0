#include "cli/spec_file.h"

#include <filesystem>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/config_reader.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "service/job_kinds.h"
#include "yaml-cpp/yaml.h"

namespace peco::cli {
namespace {

// Returns the offset of the first byte of `text` that is a NUL or not part of well-formed UTF-8
// (RFC 3629), or npos when there is none. NUL is no YAML character, and yaml-cpp takes text that
// starts with NULs for UTF-16 or UTF-32 (re-emitting its code points as bytes that are not UTF-8).
size_t FirstNonTextByte(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    if (lead == 0) return i;
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char second_min = 0x80;
    unsigned char second_max = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) second_min = 0xA0;  // overlong
      if (lead == 0xED) second_max = 0x9F;  // UTF-16 surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) second_min = 0x90;  // overlong
      if (lead == 0xF4) second_max = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (text.size() - i < length) return i;
    const unsigned char second = static_cast<unsigned char>(text[i + 1]);
    if (second < second_min || second > second_max) return i;
    for (size_t k = 2; k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      if (next < 0x80 || next > 0xBF) return i;
    }
    i += length;
  }
  return absl::string_view::npos;
}

// A JobSpec's strings travel as proto3 `string` fields, which must be UTF-8: the coordinator
// could not even parse a request holding other bytes.
absl::Status CheckUtf8(const std::string& source, absl::string_view what, absl::string_view text) {
  const size_t bad = FirstNonTextByte(text);
  if (bad == absl::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", what, "not UTF-8 text (byte ", bad,
                                                 " is a NUL or not part of a UTF-8 character)"));
}

absl::Status FieldError(const std::string& source, absl::string_view field,
                        absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", field, ": ", message));
}

absl::Status ReadDevices(const std::string& source, ConfigReader& job, v1::DeviceRequest* out) {
  ASSIGN_OR_RETURN(ConfigReader devices, job.Child("devices_per_rank"));
  int gpus = 0;
  int cpu_slots = 1;
  RETURN_IF_ERROR(devices.Read("gpus", &gpus));
  RETURN_IF_ERROR(devices.Read("cpu_slots", &cpu_slots));
  RETURN_IF_ERROR(devices.Finish());
  if (gpus < 0) {
    return FieldError(source, devices.PathOf("gpus"),
                      absl::StrCat("expected an integer >= 0, got ", gpus));
  }
  if (cpu_slots < 0) {
    return FieldError(source, devices.PathOf("cpu_slots"),
                      absl::StrCat("expected an integer >= 0, got ", cpu_slots));
  }
  if (gpus == 0 && cpu_slots == 0) {
    return FieldError(source, "job.devices_per_rank",
                      "a rank needs gpus >= 1 or cpu_slots >= 1, got neither");
  }
  out->set_gpus(gpus);
  out->set_cpu_slots(cpu_slots);
  return absl::OkStatus();
}

// `present` is false when `job.depends_on` is absent or null (no dependency).
absl::Status ReadDependency(const std::string& source, ConfigReader& job, bool present,
                            v1::Dependency* out) {
  ASSIGN_OR_RETURN(ConfigReader depends, job.Child("depends_on"));
  std::string job_id;
  std::string checkpoint_id;
  RETURN_IF_ERROR(depends.Read("job_id", &job_id));
  RETURN_IF_ERROR(depends.Read("checkpoint_id", &checkpoint_id));
  RETURN_IF_ERROR(depends.Finish());
  if (!present) return absl::OkStatus();
  if (job_id.empty() == checkpoint_id.empty()) {
    return FieldError(source, "job.depends_on",
                      "expected exactly one of job_id, checkpoint_id (a non-empty string)");
  }
  if (!job_id.empty()) {
    out->set_job_id(job_id);
  } else {
    out->set_checkpoint_id(checkpoint_id);
  }
  return absl::OkStatus();
}

// `labels_node` is the raw `job.labels` node (already checked to be a mapping or absent).
absl::Status ReadLabels(const std::string& source, const YAML::Node& labels_node,
                        v1::JobSpec* spec) {
  if (!labels_node.IsDefined() || labels_node.IsNull()) return absl::OkStatus();
  for (const auto& entry : labels_node) {
    if (!entry.first.IsScalar()) {
      return FieldError(source, "job.labels", "expected string keys");
    }
    const std::string key = entry.first.Scalar();
    if (key.empty()) return FieldError(source, "job.labels", "expected non-empty keys");
    if (!entry.second.IsScalar()) {
      return FieldError(source, absl::StrCat("job.labels.", key), "expected a string");
    }
    (*spec->mutable_labels())[key] = entry.second.Scalar();
  }
  return absl::OkStatus();
}

absl::Status ReadJobSection(const std::string& source, ConfigReader& root,
                            const YAML::Node& job_node, v1::JobSpec* spec) {
  ASSIGN_OR_RETURN(ConfigReader job, root.Child("job"));

  std::string name = spec->name();
  RETURN_IF_ERROR(job.Read("name", &name));
  if (name.empty()) return FieldError(source, "job.name", "expected a non-empty string");
  spec->set_name(name);

  int world_size = 1;
  RETURN_IF_ERROR(job.Read("world_size", &world_size));
  if (world_size < 1) {
    return FieldError(source, "job.world_size",
                      absl::StrCat("expected an integer >= 1, got ", world_size));
  }
  spec->set_world_size(world_size);

  RETURN_IF_ERROR(ReadDevices(source, job, spec->mutable_devices_per_rank()));

  int priority = 0;
  RETURN_IF_ERROR(job.Read("priority", &priority));
  spec->set_priority(priority);

  if (job.Has("max_restarts")) {
    int max_restarts = 0;
    RETURN_IF_ERROR(job.Read("max_restarts", &max_restarts));
    if (max_restarts < 0) {
      return FieldError(source, "job.max_restarts",
                        absl::StrCat("expected an integer >= 0, got ", max_restarts));
    }
    spec->set_max_restarts(max_restarts);
  }

  const bool has_dependency =
      job_node.IsMap() && job_node["depends_on"].IsDefined() && !job_node["depends_on"].IsNull();
  // Without a dependency the spec keeps depends_on unset rather than an empty message.
  RETURN_IF_ERROR(ReadDependency(source, job, has_dependency,
                                 has_dependency ? spec->mutable_depends_on() : nullptr));

  // Child() checks the type and marks the key consumed; the entries are read from the raw node
  // because ConfigReader reads fixed keys only.
  ASSIGN_OR_RETURN(ConfigReader labels, job.Child("labels"));
  (void)labels;
  // Copy-construct: assigning yaml-cpp's node for a missing key throws.
  const YAML::Node labels_node = job_node.IsMap() ? job_node["labels"] : YAML::Node();
  RETURN_IF_ERROR(ReadLabels(source, labels_node, spec));

  return job.Finish();
}

}  // namespace

std::string JobKindName(v1::JobKind kind) {
  std::string name = service::JobKindName(kind);
  return name.empty() ? "unspecified" : name;
}

absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, const std::string& source,
                                         const std::string& default_name,
                                         const std::vector<std::string>& overrides) {
  RETURN_IF_ERROR(CheckUtf8(source, "", text));
  for (const std::string& item : overrides) {
    RETURN_IF_ERROR(CheckUtf8(source, absl::StrCat("--set ", absl::CEscape(item), ": "), item));
  }
  // Parse once before the overrides so that broken YAML is reported against the file.
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": expected a mapping at the top (kind: ..., job: ...)"));
  }
  std::string document(text);
  if (!overrides.empty()) {
    absl::StatusOr<std::string> overridden = ApplyConfigOverrides(document, overrides);
    if (!overridden.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", overridden.status().message()));
    }
    document = *std::move(overridden);
    root = YAML::Load(document);  // ApplyConfigOverrides checked that it reads back
  }
  // yaml-cpp keeps a repeated key and lookups find its first entry: a second `job:` section would
  // be read by nothing here, yet stay in the config sent to the trainer.
  int job_sections = 0;
  for (const auto& entry : root) {
    if (entry.first.IsScalar() && entry.first.Scalar() == "job") ++job_sections;
  }
  if (job_sections > 1) return FieldError(source, "job", "appears more than once");

  ASSIGN_OR_RETURN(ConfigReader reader, ConfigReader::FromString(document, source));
  v1::JobSpec spec;
  if (!reader.Has("kind")) {
    return FieldError(source, "kind",
                      absl::StrCat("missing (one of ", service::KnownJobKindNames(), ")"));
  }
  std::string kind;
  std::vector<std::string> kind_names;
  for (const service::JobKindInfo& info : service::AllJobKinds()) {
    kind_names.emplace_back(info.name);
  }
  RETURN_IF_ERROR(reader.ReadEnum("kind", kind_names, &kind));
  spec.set_kind(service::JobKindFromName(kind).value_or(v1::JOB_KIND_UNSPECIFIED));

  spec.set_name(default_name);
  spec.set_world_size(1);
  spec.mutable_devices_per_rank()->set_gpus(0);
  spec.mutable_devices_per_rank()->set_cpu_slots(1);
  // Const lookups: yaml-cpp's non-const operator[] may add the key.
  const YAML::Node& const_root = root;
  const bool has_job = const_root["job"].IsDefined();
  const YAML::Node job_node = has_job ? const_root["job"] : YAML::Node();
  RETURN_IF_ERROR(ReadJobSection(source, reader, job_node, &spec));

  if (!has_job && overrides.empty()) {
    spec.set_config_yaml(std::string(text));
  } else {
    root.remove("job");
    YAML::Emitter out;
    out << root;
    spec.set_config_yaml(absl::StrCat(out.c_str(), "\n"));
  }
  return spec;
}

absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path,
                                            const std::vector<std::string>& overrides) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("reading spec file ", path, ": ", text.status().message()));
  }
  const std::string stem = std::filesystem::path(path).stem().string();
  return ParseJobSpec(*text, path, stem.empty() ? "job" : stem, overrides);
}

}  // namespace peco::cli
