#include "cli/spec_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/file_util.h"
#include "yaml-cpp/yaml.h"

namespace peco::cli {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTrainerConfig[] = R"(kind: pretrain   # trainer config
seed: 3
train:
  max_steps: 300
  output_dir: runs/x
)";

absl::StatusOr<v1::JobSpec> Parse(const std::string& text,
                                  const std::vector<std::string>& overrides = {}) {
  return ParseJobSpec(text, "spec.yaml", "spec", overrides);
}

YAML::Node Yaml(const std::string& text) { return YAML::Load(text); }

TEST(SpecFileTest, ShippedPresetParsesWithDefaultsAndIsSentVerbatim) {
  const std::string path = std::string(PECO_SOURCE_DIR) + "/configs/tokenizer_small.yaml";
  absl::StatusOr<v1::JobSpec> spec = ReadJobSpecFile(path, {});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind(), v1::JOB_KIND_TOKENIZER);
  EXPECT_EQ(spec->name(), "tokenizer_small");
  EXPECT_EQ(spec->world_size(), 1);
  EXPECT_EQ(spec->devices_per_rank().gpus(), 0);
  EXPECT_EQ(spec->devices_per_rank().cpu_slots(), 1);
  EXPECT_EQ(spec->priority(), 0);
  EXPECT_FALSE(spec->has_max_restarts());
  EXPECT_EQ(spec->depends_on().target_case(), v1::Dependency::TARGET_NOT_SET);
  EXPECT_TRUE(spec->labels().empty());
  // No job: section and no overrides: the text goes out byte for byte, comments included.
  EXPECT_EQ(spec->config_yaml(), *ReadFileToString(path));
}

TEST(SpecFileTest, JobSectionFillsTheSpecAndIsStripped) {
  const std::string text = std::string(kTrainerConfig) + R"(job:
  name: mim-base
  world_size: 4
  devices_per_rank: {gpus: 2, cpu_slots: 3}
  priority: -7
  max_restarts: 0
  depends_on: {job_id: job-000001}
  labels: {team: vision, tier: 1}
)";
  absl::StatusOr<v1::JobSpec> spec = Parse(text);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->kind(), v1::JOB_KIND_PRETRAIN);
  EXPECT_EQ(spec->name(), "mim-base");
  EXPECT_EQ(spec->world_size(), 4);
  EXPECT_EQ(spec->devices_per_rank().gpus(), 2);
  EXPECT_EQ(spec->devices_per_rank().cpu_slots(), 3);
  EXPECT_EQ(spec->priority(), -7);
  ASSERT_TRUE(spec->has_max_restarts());
  EXPECT_EQ(spec->max_restarts(), 0);
  EXPECT_EQ(spec->depends_on().job_id(), "job-000001");
  EXPECT_EQ(spec->labels().at("team"), "vision");
  EXPECT_EQ(spec->labels().at("tier"), "1");

  const YAML::Node config = Yaml(spec->config_yaml());
  EXPECT_FALSE(config["job"].IsDefined());
  EXPECT_EQ(config["kind"].as<std::string>(), "pretrain");
  EXPECT_EQ(config["seed"].as<int>(), 3);
  EXPECT_EQ(config["train"]["max_steps"].as<int>(), 300);
  EXPECT_EQ(config["train"]["output_dir"].as<std::string>(), "runs/x");
  EXPECT_EQ(config.size(), 3u);
}

TEST(SpecFileTest, PartialJobSectionKeepsDefaults) {
  absl::StatusOr<v1::JobSpec> spec =
      Parse(std::string(kTrainerConfig) + "job:\n  devices_per_rank: {gpus: 1}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "spec");
  EXPECT_EQ(spec->world_size(), 1);
  EXPECT_EQ(spec->devices_per_rank().gpus(), 1);
  EXPECT_EQ(spec->devices_per_rank().cpu_slots(), 1);

  absl::StatusOr<v1::JobSpec> empty = Parse(std::string(kTrainerConfig) + "job:\n");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->world_size(), 1);
  EXPECT_FALSE(Yaml(empty->config_yaml())["job"].IsDefined());
}

TEST(SpecFileTest, CheckpointDependency) {
  absl::StatusOr<v1::JobSpec> spec =
      Parse(std::string(kTrainerConfig) + "job:\n  depends_on: {checkpoint_id: ck-1}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->depends_on().checkpoint_id(), "ck-1");
}

struct BadCase {
  std::string name;
  std::string yaml;
  std::string expected;  // substring of the error, after "spec.yaml: "
};

class SpecFileBadInputTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SpecFileBadInputTest, NamesTheFileAndTheField) {
  absl::StatusOr<v1::JobSpec> spec = Parse(GetParam().yaml);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr(std::string("spec.yaml: ") + GetParam().expected));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, SpecFileBadInputTest,
    ::testing::Values(
        BadCase{"WorldSizeZero", "kind: tokenizer\njob: {world_size: 0}\n",
                "job.world_size: expected an integer >= 1, got 0"},
        BadCase{"WorldSizeText", "kind: tokenizer\njob: {world_size: two}\n",
                "job.world_size: expected an integer"},
        BadCase{"WorldSizeFraction", "kind: tokenizer\njob: {world_size: 1.5}\n",
                "job.world_size: expected an integer"},
        BadCase{"UnknownJobField", "kind: tokenizer\njob: {wrld_size: 2}\n",
                "job.wrld_size: unknown field"},
        BadCase{"UnknownDeviceField", "kind: tokenizer\njob: {devices_per_rank: {gpu: 1}}\n",
                "job.devices_per_rank.gpu: unknown field"},
        BadCase{"NegativeGpus", "kind: tokenizer\njob: {devices_per_rank: {gpus: -1}}\n",
                "job.devices_per_rank.gpus: expected an integer >= 0, got -1"},
        BadCase{"NoDevices", "kind: tokenizer\njob: {devices_per_rank: {gpus: 0, cpu_slots: 0}}\n",
                "job.devices_per_rank: a rank needs gpus >= 1 or cpu_slots >= 1"},
        BadCase{"DevicesNotMapping", "kind: tokenizer\njob: {devices_per_rank: 2}\n",
                "job.devices_per_rank: expected a mapping"},
        BadCase{"NegativeMaxRestarts", "kind: tokenizer\njob: {max_restarts: -1}\n",
                "job.max_restarts: expected an integer >= 0, got -1"},
        BadCase{"PriorityText", "kind: tokenizer\njob: {priority: high}\n",
                "job.priority: expected an integer"},
        BadCase{"EmptyName", "kind: tokenizer\njob: {name: ''}\n",
                "job.name: expected a non-empty string"},
        BadCase{"NameList", "kind: tokenizer\njob: {name: [a]}\n", "job.name: expected a string"},
        BadCase{"TwoDependencies",
                "kind: tokenizer\njob: {depends_on: {job_id: a, checkpoint_id: b}}\n",
                "job.depends_on: expected exactly one of job_id, checkpoint_id"},
        BadCase{"EmptyDependency", "kind: tokenizer\njob: {depends_on: {}}\n",
                "job.depends_on: expected exactly one of job_id, checkpoint_id"},
        BadCase{"UnknownDependencyField", "kind: tokenizer\njob: {depends_on: {jobid: a}}\n",
                "job.depends_on.jobid: unknown field"},
        BadCase{"LabelNotString", "kind: tokenizer\njob: {labels: {team: [a, b]}}\n",
                "job.labels.team: expected a string"},
        BadCase{"LabelsList", "kind: tokenizer\njob: {labels: [a]}\n",
                "job.labels: expected a mapping"},
        BadCase{"JobNotMapping", "kind: tokenizer\njob: 5\n", "job: expected a mapping"},
        BadCase{"UnknownKind", "kind: pretrian\n",
                "kind: expected one of tokenizer, pretrain, finetune, linear_probe"},
        BadCase{"MissingKind", "seed: 1\n", "kind: missing"},
        BadCase{"NotYaml", "kind: [tokenizer\n", "not valid YAML"},
        BadCase{"NotMapping", "- kind\n- tokenizer\n", "expected a mapping at the top"},
        BadCase{"Scalar", "just text\n", "expected a mapping at the top"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

TEST(SpecFileTest, OverridesApplyBeforeParsing) {
  const std::string text = std::string(kTrainerConfig) + "job:\n  world_size: 2\n";
  absl::StatusOr<v1::JobSpec> spec =
      Parse(text, {"train.max_steps=50", "job.world_size=8", "job.labels.run=a1"});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->world_size(), 8);
  EXPECT_EQ(spec->labels().at("run"), "a1");
  const YAML::Node config = Yaml(spec->config_yaml());
  EXPECT_EQ(config["train"]["max_steps"].as<int>(), 50);
  EXPECT_FALSE(config["job"].IsDefined());

  // An override can add a job: section to a file that has none; it is still stripped.
  absl::StatusOr<v1::JobSpec> added = Parse(kTrainerConfig, {"job.priority=9"});
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->priority(), 9);
  EXPECT_FALSE(Yaml(added->config_yaml())["job"].IsDefined());
}

TEST(SpecFileTest, OverrideErrorsNameTheOverrideOrTheField) {
  absl::StatusOr<v1::JobSpec> malformed = Parse(kTrainerConfig, {"train.max_steps"});
  ASSERT_FALSE(malformed.ok());
  EXPECT_THAT(malformed.status().message(),
              AllOf(HasSubstr("spec.yaml"), HasSubstr("--set train.max_steps")));

  absl::StatusOr<v1::JobSpec> invalid = Parse(kTrainerConfig, {"job.world_size=0"});
  ASSERT_FALSE(invalid.ok());
  EXPECT_THAT(invalid.status().message(), HasSubstr("job.world_size: expected an integer >= 1"));

  absl::StatusOr<v1::JobSpec> through_scalar = Parse(kTrainerConfig, {"seed.x=1"});
  ASSERT_FALSE(through_scalar.ok());
  EXPECT_THAT(through_scalar.status().message(), HasSubstr("seed is not a mapping"));
}

// Found by fuzz/job_spec_fuzzer.cc: a spec whose bytes are not UTF-8 (here a Latin-1 comment)
// parsed, and was sent verbatim in config_yaml, a proto3 string the coordinator cannot parse.
TEST(SpecFileTest, TextThatIsNotUtf8IsRefusedWithItsOffset) {
  absl::StatusOr<v1::JobSpec> latin1 = Parse("# caf\xe9\nkind: tokenizer\n");
  EXPECT_EQ(latin1.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(latin1.status().message(), HasSubstr("spec.yaml: not UTF-8 text (byte 5 "));

  // yaml-cpp reads text that starts with NULs as UTF-32 and re-emits code points that are not
  // UTF-8; NUL is no YAML character anyway.
  absl::StatusOr<v1::JobSpec> nul = Parse(
      "kind: tokenizer\n", {"job.labels.a=" + std::string("\0\0\0t", 4) + " job.gorld_size=2"});
  EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nul.status().message(),
              AllOf(HasSubstr("spec.yaml: --set job.labels.a="), HasSubstr("not UTF-8 text")));

  absl::StatusOr<v1::JobSpec> utf8 = Parse("# caf\xc3\xa9\nkind: tokenizer\n");
  EXPECT_TRUE(utf8.ok()) << utf8.status();
}

// Found by fuzz/job_spec_fuzzer.cc: yaml-cpp keeps a repeated key, so a second `job:` section was
// read by nothing and sent to the trainer inside config_yaml.
TEST(SpecFileTest, RepeatedJobSectionIsRefused) {
  absl::StatusOr<v1::JobSpec> spec =
      Parse("kind: tokenizer\njob: {name: a}\nseed: 1\njob: {name: b}\n");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("spec.yaml: job: appears more than once"));
}

// Found by fuzz/job_spec_fuzzer.cc: these threw out of yaml-cpp and ended `peco`.
TEST(SpecFileTest, KeyThatIsNotAStringAndDeepOverrideAreErrors) {
  absl::StatusOr<v1::JobSpec> key = Parse("kind: tokenizer\njob: {? [a] : 1}\n");
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(key.status().message(),
              HasSubstr("spec.yaml: job: unknown field whose key is not a string"));

  std::string path;
  for (int i = 0; i < 520; ++i) path += "a.";
  absl::StatusOr<v1::JobSpec> deep = Parse(kTrainerConfig, {path + "b=1"});
  EXPECT_EQ(deep.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(deep.status().message(), HasSubstr("spec.yaml: config: the overrides make"));
}

TEST(SpecFileTest, MissingFileIsNotFoundNamingThePath) {
  absl::StatusOr<v1::JobSpec> spec = ReadJobSpecFile("/nonexistent/dir/job.yaml", {});
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(spec.status().message(), HasSubstr("/nonexistent/dir/job.yaml"));
}

TEST(SpecFileTest, KindNames) {
  EXPECT_EQ(JobKindName(v1::JOB_KIND_LINEAR_PROBE), "linear_probe");
  EXPECT_EQ(JobKindName(v1::JOB_KIND_UNSPECIFIED), "unspecified");
  for (const char* kind : {"tokenizer", "pretrain", "finetune", "linear_probe"}) {
    absl::StatusOr<v1::JobSpec> spec = Parse(std::string("kind: ") + kind + "\n");
    ASSERT_TRUE(spec.ok()) << spec.status();
    EXPECT_EQ(JobKindName(spec->kind()), kind);
    EXPECT_THAT(spec->config_yaml(), Not(HasSubstr("job")));
  }
}

}  // namespace
}  // namespace peco::cli
