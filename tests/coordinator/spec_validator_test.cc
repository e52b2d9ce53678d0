// The submit-time checks: the envelope (pure) and the trainer's own config check, run through
// the real peco-train binary.
#include "coordinator/spec_validator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"

namespace peco::coordinator {
namespace {

using ::testing::HasSubstr;

std::string SmallConfig() {
  return *ReadFileToString(absl::StrCat(PECO_SOURCE_DIR, "/configs/tokenizer_small.yaml"));
}

v1::JobSpec Spec(const std::string& config) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_TOKENIZER);
  spec.set_config_yaml(config);
  NormalizeJobSpec(&spec);
  return spec;
}

TEST(JobSpecFieldsTest, NormalizeFillsDefaults) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_PRETRAIN);
  NormalizeJobSpec(&spec);
  EXPECT_EQ(spec.world_size(), 1);
  EXPECT_EQ(spec.devices_per_rank().cpu_slots(), 1);
  EXPECT_EQ(spec.name(), "pretrain");
}

TEST(JobSpecFieldsTest, EachBadFieldIsNamed) {
  SpecLimits limits;
  struct Case {
    const char* field;
    void (*mutate)(v1::JobSpec*);
  };
  const Case cases[] = {
      {"spec.kind", [](v1::JobSpec* s) { s->set_kind(static_cast<v1::JobKind>(42)); }},
      {"spec.world_size", [](v1::JobSpec* s) { s->set_world_size(5000); }},
      {"spec.devices_per_rank.gpus",
       [](v1::JobSpec* s) { s->mutable_devices_per_rank()->set_gpus(-1); }},
      {"spec.priority", [](v1::JobSpec* s) { s->set_priority(1 << 20); }},
      {"spec.max_restarts", [](v1::JobSpec* s) { s->set_max_restarts(-2); }},
      {"spec.config_yaml", [](v1::JobSpec* s) { s->set_config_yaml(""); }},
      {"spec.name", [](v1::JobSpec* s) { s->set_name(std::string(300, 'x')); }},
      {"spec.labels", [](v1::JobSpec* s) { (*s->mutable_labels())[""] = "v"; }},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = Spec("kind: tokenizer\n");
    ASSERT_TRUE(CheckJobSpecFields(spec, limits).ok());
    c.mutate(&spec);
    absl::Status status = CheckJobSpecFields(spec, limits);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

TEST(PathIsUnderTest, ComparesWholeComponentsAfterNormalising) {
  EXPECT_TRUE(PathIsUnder("/usr/share/datasets/fashion-mnist", "/usr/share/datasets"));
  EXPECT_TRUE(PathIsUnder("/usr/share/datasets", "/usr/share/datasets/"));
  EXPECT_FALSE(PathIsUnder("/usr/share/datasets2/x", "/usr/share/datasets"));
  EXPECT_FALSE(PathIsUnder("/usr/share/datasets/../../../etc/passwd", "/usr/share/datasets"));
  EXPECT_FALSE(PathIsUnder("relative/path", "/usr"));
}

class TrainerSpecValidatorTest : public ::testing::Test {
 protected:
  TrainerSpecValidatorTest() {
    std::string pattern = absl::StrCat(::testing::TempDir(), "/spec_validator_test_XXXXXX");
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    options_.trainer_binary = PECO_TRAIN_BINARY;
    options_.scratch_dir = pattern;
    options_.allowed_roots = {"/usr/share/datasets"};
  }
  TrainerSpecValidator::Options options_;
};

TEST_F(TrainerSpecValidatorTest, AcceptsTheSmallPreset) {
  TrainerSpecValidator validator(options_);
  absl::Status status = validator.Validate(Spec(SmallConfig()), {});
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(TrainerSpecValidatorTest, NamesTheBadFieldOfTheConfig) {
  TrainerSpecValidator validator(options_);
  struct Case {
    std::string config;
    std::string needle;
  };
  const std::string small = SmallConfig();
  const Case cases[] = {
      {"[unclosed", "config"},
      {absl::StrReplaceAll(small, {{"max_steps: 300", "max_steps: -4"}}), "train.max_steps"},
      {absl::StrReplaceAll(small, {{"  ch: 32", "  ch: thirty"}}), "model.ch"},
      {absl::StrCat(small, "surprise: 1\n"), "surprise"},
      {absl::StrReplaceAll(small, {{"kind: tokenizer", "kind: painting"}}), "kind"},
  };
  for (const Case& c : cases) {
    absl::Status status = validator.Validate(Spec(c.config), {});
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.needle << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.needle));
  }
}

TEST_F(TrainerSpecValidatorTest, RefusesPathsOutsideTheAllowedRoots) {
  TrainerSpecValidator validator(options_);
  const std::string config = absl::StrReplaceAll(
      SmallConfig(), {{"path: /usr/share/datasets/fashion-mnist", "path: /etc/secrets"}});
  absl::Status status = validator.Validate(Spec(config), {});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("data.path"));
  EXPECT_THAT(status.message(), HasSubstr("outside the allowed roots"));
}

TEST_F(TrainerSpecValidatorTest, FieldsTheServiceFillsAreNotCheckedAsPaths) {
  // The pretrain preset names its tokenizer by a relative path; as a dependent job the worker
  // fills tokenizer.checkpoint with the fetched dependency checkpoint instead.
  v1::JobSpec spec =
      Spec(*ReadFileToString(absl::StrCat(PECO_SOURCE_DIR, "/configs/pretrain_small.yaml")));
  spec.set_kind(v1::JOB_KIND_PRETRAIN);
  TrainerSpecValidator validator(options_);
  absl::Status alone = validator.Validate(spec, {});
  EXPECT_EQ(alone.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(alone.message(), HasSubstr("tokenizer.checkpoint"));
  absl::Status filled = validator.Validate(spec, {"tokenizer.checkpoint"});
  EXPECT_TRUE(filled.ok()) << filled;
  // Other paths are still checked.
  spec.set_config_yaml(absl::StrReplaceAll(
      spec.config_yaml(), {{"path: /usr/share/datasets/fashion-mnist", "path: /etc"}}));
  absl::Status outside = validator.Validate(spec, {"tokenizer.checkpoint"});
  EXPECT_THAT(outside.message(), HasSubstr("data.path"));
}

TEST_F(TrainerSpecValidatorTest, MissingTrainerIsUnavailableNotInvalid) {
  options_.trainer_binary = "/nonexistent/peco-train";
  TrainerSpecValidator validator(options_);
  EXPECT_EQ(validator.Validate(Spec(SmallConfig()), {}).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace peco::coordinator
