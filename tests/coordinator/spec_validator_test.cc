// The submit-time checks: the envelope (pure) and the trainer's own config check, run through
// the real peco-train binary (`validate --serve` behind a pool, compared with one-shot
// `validate`).
#include "coordinator/spec_validator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "common/json_line.h"
#include "common/validation_protocol.h"
#include "coordinator/validator_pool.h"
#include "tests/test_util/files.h"
#include "tests/test_util/subprocess.h"

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

class TrainerSpecValidatorTest : public ::testing::Test {
 protected:
  TrainerSpecValidatorTest() {
    options_.trainer_binary = PECO_TRAIN_BINARY;
    options_.allowed_roots = {"/usr/share/datasets"};
  }
  ::peco::testing::ScopedTempDir temp_{"spec_validator_test"};
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

// The placement and the trainer agree on the device: GPUs for a CPU trainer, or a CUDA trainer
// without GPUs, is refused at submit naming both fields.
TEST_F(TrainerSpecValidatorTest, GpusAndTheTrainersDeviceMustAgree) {
  TrainerSpecValidator validator(options_);
  v1::JobSpec gpus_for_cpu = Spec(SmallConfig());
  gpus_for_cpu.mutable_devices_per_rank()->set_gpus(1);
  absl::Status idle = validator.Validate(gpus_for_cpu, {});
  EXPECT_EQ(idle.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(idle.message(), HasSubstr("spec.devices_per_rank.gpus is 1"));
  EXPECT_THAT(idle.message(), HasSubstr("train.device is cpu"));

  const std::string cuda = absl::StrReplaceAll(
      SmallConfig(), {{"  max_steps: 300\n", "  max_steps: 300\n  device: cuda\n"}});
  ASSERT_NE(cuda, SmallConfig());
  absl::Status no_gpu = validator.Validate(Spec(cuda), {});
  EXPECT_EQ(no_gpu.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_gpu.message(), HasSubstr("train.device is cuda"));
  EXPECT_THAT(no_gpu.message(), HasSubstr("devices_per_rank.gpus is 0"));
  v1::JobSpec on_gpus = Spec(cuda);
  on_gpus.mutable_devices_per_rank()->set_gpus(1);
  absl::Status agreed = validator.Validate(on_gpus, {});
  EXPECT_TRUE(agreed.ok()) << agreed;
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

// What one-shot `peco-train validate --check_paths false` says about `config` (with `sets`),
// in the shape of a --serve response; its file name in messages becomes `config`.
ValidationResponse OneShot(const std::string& dir, const std::string& config,
                           const std::vector<std::string>& sets) {
  const std::string path = absl::StrCat(dir, "/one-shot.yaml");
  EXPECT_TRUE(WriteFileAtomic(path, config).ok());
  std::vector<std::string> argv = {PECO_TRAIN_BINARY, "validate", "--config", path,
                                   "--check_paths",   "false"};
  for (const std::string& set : sets) argv.insert(argv.end(), {"--set", set});
  peco::testing::Subprocess child(argv, "/dev/null");
  ValidationResponse response;
  std::string line;
  while (child.ReadLine(&line)) {
    std::optional<JsonFields> event = ParseJsonObjectLine(line);
    if (!event) continue;
    const std::string type = event->String("event").value_or("");
    if (type == "input") {
      response.inputs.emplace_back(*event->String("field"), *event->String("path"));
    } else if (type == "valid") {
      response.kind = *event->String("kind");
      response.max_steps = *event->Int("max_steps");
    } else if (type == "error") {
      response.status =
          absl::Status(StatusCodeFromName(*event->String("code")),
                       absl::StrReplaceAll(*event->String("message"), {{path, "config"}}));
    }
  }
  const int exit_code = child.Wait();
  EXPECT_EQ(exit_code, response.status.ok() ? 0 : 2) << line;
  return response;
}

TEST_F(TrainerSpecValidatorTest, ServeGivesTheVerdictsOfOneShot) {
  ValidatorPool::Options pool_options;
  pool_options.argv = {PECO_TRAIN_BINARY, "validate", "--serve"};
  pool_options.pool_size = 1;
  ValidatorPool pool(pool_options);
  const std::string small = SmallConfig();
  const std::string pretrain =
      *ReadFileToString(absl::StrCat(PECO_SOURCE_DIR, "/configs/pretrain_small.yaml"));
  const std::string probe =
      *ReadFileToString(absl::StrCat(PECO_SOURCE_DIR, "/configs/linear_probe_small.yaml"));
  struct Case {
    std::string config;
    std::vector<std::string> sets;
  };
  const Case cases[] = {
      {small, {}},
      {small, {"train.max_steps=7"}},
      {pretrain, {"tokenizer.checkpoint=/peco-service-input"}},
      {probe, {"backbone.checkpoint=/peco-service-input"}},
      {pretrain, {}},
      {"[unclosed", {}},
      {absl::StrReplaceAll(small, {{"max_steps: 300", "max_steps: -4"}}), {}},
      {absl::StrCat(small, "surprise: 1\n"), {}},
      {absl::StrReplaceAll(small, {{"kind: tokenizer", "kind: painting"}}), {}},
      {small, {"no_equals_sign"}},
      {small, {"train.max_steps=[1, 2]"}},
  };
  int valid = 0;
  for (const Case& c : cases) {
    const ValidationResponse expected = OneShot(temp_.path(), c.config, c.sets);
    ValidationRequest request;
    request.config = c.config;
    request.sets = c.sets;
    absl::StatusOr<ValidationResponse> served = pool.Check(request);
    ASSERT_TRUE(served.ok()) << served.status();
    const std::string what = absl::StrCat(c.config.substr(0, 40), " ", c.sets.size(), " sets");
    EXPECT_EQ(served->status, expected.status) << what;
    EXPECT_EQ(served->kind, expected.kind) << what;
    EXPECT_EQ(served->max_steps, expected.max_steps) << what;
    EXPECT_EQ(served->inputs, expected.inputs) << what;
    if (expected.status.ok()) ++valid;
  }
  // The first five: the trainer leaves the pretrain preset's relative tokenizer path to the
  // coordinator's path check.
  EXPECT_EQ(valid, 5);
  EXPECT_EQ(pool.PidsForTest().size(), 1u) << "one process answered every request";
}

TEST_F(TrainerSpecValidatorTest, ManyThreadsShareAPoolOfTwo) {
  options_.pool_size = 2;
  TrainerSpecValidator validator(options_);
  const std::string good = SmallConfig();
  const std::string bad = absl::StrReplaceAll(good, {{"max_steps: 300", "max_steps: -4"}});
  constexpr int kThreads = 4;
  constexpr int kRequests = 10;
  std::vector<std::vector<absl::Status>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        results[t].push_back(validator.Validate(Spec((i + t) % 2 == 0 ? good : bad), {}));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kRequests; ++i) {
      const absl::Status& status = results[t][i];
      if ((i + t) % 2 == 0) {
        EXPECT_TRUE(status.ok()) << status;
      } else {
        EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
        EXPECT_THAT(status.message(), HasSubstr("train.max_steps"));
      }
    }
  }
  EXPECT_LE(validator.ValidatorPidsForTest().size(), 2u);
}

TEST_F(TrainerSpecValidatorTest, KilledValidatorIsReplaced) {
  options_.pool_size = 1;
  TrainerSpecValidator validator(options_);
  ASSERT_TRUE(validator.Validate(Spec(SmallConfig()), {}).ok());
  const std::vector<pid_t> before = validator.ValidatorPidsForTest();
  ASSERT_EQ(before.size(), 1u);
  ASSERT_EQ(::kill(before[0], SIGKILL), 0);
  // Whether or not the kill has landed when the next request picks the process, the request
  // gets a verdict from a live validator.
  absl::Status after_kill = validator.Validate(Spec(SmallConfig()), {});
  EXPECT_TRUE(after_kill.ok()) << after_kill;
  const std::vector<pid_t> after = validator.ValidatorPidsForTest();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);
  EXPECT_EQ(validator.Validate(Spec("[unclosed"), {}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peco::coordinator
