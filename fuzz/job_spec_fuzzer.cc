// Fuzzes the path a job spec takes before anything is stored: the CLI's spec parser
// (cli/spec_file.h ParseJobSpec: YAML or JSON text -> v1::JobSpec, strict about the job: section)
// and the coordinator's in-process checks of the envelope (coordinator/spec_validator.h
// NormalizeJobSpec and CheckJobSpecFields). It never runs peco-train.
//
// Input: spec text. Its leading "#set key.path=value" lines are also passed as overrides, as
// `peco submit --set` would (fuzz/fuzz_util.h).
//
// Asserts, besides no crash, no sanitizer report and no escaping exception:
//  - a refused spec is InvalidArgument and the message starts with the file name;
//  - a parsed spec keeps ParseJobSpec's promises: a known kind, a non-empty name, world_size >= 1,
//    gpus and cpu_slots >= 0 and not both 0, max_restarts >= 0 when set, exactly one non-empty
//    dependency target when depends_on is set, non-empty label keys, non-empty config_yaml;
//  - config_yaml is what the trainer gets: parsed again as a spec (no overrides) it gives the same
//    kind, the default envelope and the same config_yaml byte for byte (the job: section is gone
//    and the re-emitted YAML reads back);
//  - NormalizeJobSpec changes nothing in a parsed spec (the parser already applied the defaults);
//  - a spec that passes CheckJobSpecFields survives the trip to the coordinator: it serializes,
//    parses back equal, and passes CheckJobSpecFields again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/spec_file.h"
#include "coordinator/spec_validator.h"
#include "fuzz/fuzz_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "peco/v1/job.pb.h"
#include "service/job_kinds.h"

namespace peco {
namespace {

constexpr char kSource[] = "spec.yaml";
constexpr char kDefaultName[] = "fuzz-spec";

using ::google::protobuf::util::MessageDifferencer;

void CheckEnvelope(const v1::JobSpec& spec) {
  const std::string dump = spec.ShortDebugString();
  PECO_FUZZ_CHECK(!service::JobKindName(spec.kind()).empty(), dump);
  PECO_FUZZ_CHECK(!spec.name().empty(), dump);
  PECO_FUZZ_CHECK(spec.world_size() >= 1, dump);
  const v1::DeviceRequest& devices = spec.devices_per_rank();
  PECO_FUZZ_CHECK(devices.gpus() >= 0 && devices.cpu_slots() >= 0, dump);
  PECO_FUZZ_CHECK(devices.gpus() > 0 || devices.cpu_slots() > 0, dump);
  PECO_FUZZ_CHECK(!spec.has_max_restarts() || spec.max_restarts() >= 0, dump);
  if (spec.has_depends_on()) {
    const v1::Dependency& dependency = spec.depends_on();
    PECO_FUZZ_CHECK((dependency.has_job_id() && !dependency.job_id().empty()) ||
                        (dependency.has_checkpoint_id() && !dependency.checkpoint_id().empty()),
                    dump);
  }
  for (const auto& [key, value] : spec.labels()) PECO_FUZZ_CHECK(!key.empty(), dump);
  PECO_FUZZ_CHECK(!spec.config_yaml().empty(), dump);
}

// The spec the trainer's config alone describes: the defaults ParseJobSpec fills in.
void CheckConfigReadsBack(const v1::JobSpec& spec) {
  absl::StatusOr<v1::JobSpec> again =
      cli::ParseJobSpec(spec.config_yaml(), "config", kDefaultName, {});
  PECO_FUZZ_CHECK(again.ok(), again.status().ToString(), "\nconfig_yaml:\n", spec.config_yaml());
  v1::JobSpec expected;
  expected.set_kind(spec.kind());
  expected.set_name(kDefaultName);
  expected.set_world_size(1);
  expected.mutable_devices_per_rank()->set_cpu_slots(1);
  expected.set_config_yaml(spec.config_yaml());
  PECO_FUZZ_CHECK(MessageDifferencer::Equals(*again, expected), "got ", again->ShortDebugString(),
                  "\nexpected ", expected.ShortDebugString());
}

void CheckCoordinatorSide(const v1::JobSpec& parsed) {
  v1::JobSpec spec = parsed;
  coordinator::NormalizeJobSpec(&spec);
  PECO_FUZZ_CHECK(MessageDifferencer::Equals(spec, parsed), "NormalizeJobSpec changed ",
                  parsed.ShortDebugString(), " into ", spec.ShortDebugString());

  const coordinator::SpecLimits limits;
  const absl::Status checked = coordinator::CheckJobSpecFields(spec, limits);
  if (!checked.ok()) {
    PECO_FUZZ_CHECK(checked.code() == absl::StatusCode::kInvalidArgument, checked.ToString());
    PECO_FUZZ_CHECK(absl::StartsWith(checked.message(), "spec."), checked.ToString());
    return;
  }
  std::string wire;
  PECO_FUZZ_CHECK(spec.SerializeToString(&wire), spec.ShortDebugString());
  v1::JobSpec received;
  PECO_FUZZ_CHECK(received.ParseFromString(wire),
                  "the coordinator cannot parse a spec the CLI sends: ", spec.ShortDebugString());
  PECO_FUZZ_CHECK(MessageDifferencer::Equals(received, spec), "sent ", spec.ShortDebugString(),
                  "\nreceived ", received.ShortDebugString());
  const absl::Status again = coordinator::CheckJobSpecFields(received, limits);
  PECO_FUZZ_CHECK(again.ok(), again.ToString());
}

void FuzzJobSpec(const std::string& text) {
  absl::StatusOr<v1::JobSpec> spec =
      cli::ParseJobSpec(text, kSource, kDefaultName, fuzz::LeadingOverrides(text));
  if (!spec.ok()) {
    PECO_FUZZ_CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument,
                    spec.status().ToString());
    PECO_FUZZ_CHECK(absl::StartsWith(spec.status().message(), absl::StrCat(kSource, ": ")),
                    spec.status().ToString());
    return;
  }
  CheckEnvelope(*spec);
  CheckConfigReadsBack(*spec);
  CheckCoordinatorSide(*spec);
}

}  // namespace
}  // namespace peco

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peco::FuzzJobSpec(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
