// The fault-injection harness (trainer/engine/fault_injection.h) and what peco-train does under
// each fault, as a process, for every job kind (they share the training loop): a crash after a step
// resumes step-exact, a hang shows where it hangs in the SIGQUIT stack dump, a NaN loss fails
// without retry, a corrupted checkpoint is skipped on resume, a full disk fails the checkpoint
// cleanly.
#include "trainer/engine/fault_injection.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_replace.h"
#include "tests/test_util/subprocess.h"
#include "tests/test_util/tiny_jobs.h"
#include "tests/test_util/train_process.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/models/weights.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/contrastive_task.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/tokenizer_task.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::TrainRun;

// ---------------------------------------------------------------------------------------------
// The plan and the injector.

TEST(FaultPlanTest, ParsesEveryField) {
  absl::StatusOr<FaultPlan> plan = ParseFaultPlan(
      "{attempt: 2, rank: 1, exit_at_step: 3, exit_code: 7, hang_at_step: 4, "
      "hang_in: collective, slow_step_ms: 5, nan_loss_at_step: 6, "
      "corrupt_checkpoint_at_step: 8}",
      "test");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->attempt, 2);
  EXPECT_EQ(plan->rank, 1);
  EXPECT_EQ(plan->exit_at_step, 3);
  EXPECT_EQ(plan->exit_code, 7);
  EXPECT_EQ(plan->hang_at_step, 4);
  EXPECT_EQ(plan->hang_in, "collective");
  EXPECT_EQ(plan->slow_step_ms, 5);
  EXPECT_EQ(plan->nan_loss_at_step, 6);
  EXPECT_EQ(plan->corrupt_checkpoint_at_step, 8);
  EXPECT_TRUE(plan->armed());
  EXPECT_FALSE(FaultPlan().armed());
}

TEST(FaultPlanTest, BadFieldsAreNamed) {
  for (const auto& [text, field] : std::vector<std::pair<std::string, std::string>>{
           {"{hang_in: disk}", "hang_in"},
           {"{exit_code: 0}", "faults.exit_code"},
           {"{exit_at_step: -1}", "faults.exit_at_step"},
           {"{rank: -2}", "faults.rank"},
           {"{explode_at_step: 1}", "explode_at_step"}}) {
    absl::StatusOr<FaultPlan> plan = ParseFaultPlan(text, "test");
    ASSERT_FALSE(plan.ok()) << text;
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(plan.status().message().find(field), std::string::npos) << plan.status();
  }
}

TEST(FaultInjectorTest, ArmsOnlyForItsAttemptAndRank) {
  FaultPlan plan;
  plan.attempt = 2;
  plan.rank = 1;
  plan.nan_loss_at_step = 3;
  FaultInjector injector;
  ASSERT_TRUE(injector.Configure(plan, /*attempt=*/1, /*rank=*/1).ok());
  EXPECT_FALSE(injector.armed());
  ASSERT_TRUE(injector.Configure(plan, /*attempt=*/2, /*rank=*/0).ok());
  EXPECT_FALSE(injector.armed());
  ASSERT_TRUE(injector.Configure(plan, /*attempt=*/2, /*rank=*/1).ok());
  EXPECT_TRUE(injector.armed());
  EXPECT_FALSE(injector.NanLoss(2));
  EXPECT_TRUE(injector.NanLoss(3));
  EXPECT_FALSE(injector.NanLoss(4));
}

TEST(FaultInjectorTest, TheEnvironmentPlanWinsAndMustParse) {
  FaultPlan plan;
  plan.nan_loss_at_step = 3;
  FaultInjector injector;
  ASSERT_EQ(setenv("PECO_FAULTS", "{nan_loss_at_step: 5}", 1), 0);
  ASSERT_TRUE(injector.Configure(plan, 0, 0).ok());
  EXPECT_FALSE(injector.NanLoss(3));
  EXPECT_TRUE(injector.NanLoss(5));
  ASSERT_EQ(setenv("PECO_FAULTS", "{nan_loss_at: 5}", 1), 0);
  absl::Status bad = injector.Configure(plan, 0, 0);
  ASSERT_EQ(unsetenv("PECO_FAULTS"), 0);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("nan_loss_at"), std::string::npos) << bad;
}

TEST(FaultInjectorTest, CorruptsTheCommittedCheckpointOfItsStepOnly) {
  const std::string root = ::peco::testing::TempDir("fault_injection_test", "corrupt");
  FaultPlan plan;
  plan.corrupt_checkpoint_at_step = 2;
  ASSERT_TRUE(Faults().Configure(plan, 0, 0).ok());
  const CheckpointFiles files = {{"model.pt", std::string(4096, 'm')}, {"state.json", "{}"}};
  absl::StatusOr<std::string> one = WriteCheckpoint(root, 1, files);
  absl::StatusOr<std::string> two = WriteCheckpoint(root, 2, files);
  ASSERT_TRUE(Faults().Configure(FaultPlan(), 0, 0).ok());  // disarm for the other tests
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_TRUE(VerifyCheckpoint(*one).ok());
  absl::Status damaged = VerifyCheckpoint(*two);
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss) << damaged;
  EXPECT_NE(damaged.message().find("model.pt"), std::string::npos) << damaged;
  absl::StatusOr<RestoredCheckpoint> latest = RestoreLatest(root);
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->dir, *one);
  EXPECT_EQ(latest->skipped.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// peco-train under faults.

// A tiny job of `kind` (tests/test_util/tiny_jobs.h for the tokenizer and pretrain jobs; a
// random-backbone ViT for finetune; a tiny MoCo v3 for contrastive), logging and checkpointing
// every step, with
// `faults` as its faults section. A pretrain job trains on the tokenizer checkpoint `tokenizer`.
std::string FaultyConfig(const std::string& kind, const std::string& output_dir, int max_steps,
                         const std::string& faults, const std::string& tokenizer = "") {
  std::string yaml;
  if (kind == "tokenizer") {
    yaml = ::peco::testing::TinyTokenizerConfig(output_dir, /*seed=*/4, "{perceptual_weight: 0}",
                                                max_steps);
    yaml = absl::StrReplaceAll(yaml, {{"eval: {max_images: 64}", "eval: {max_images: 16}"}});
  } else if (kind == "pretrain") {
    yaml = ::peco::testing::TinyPretrainConfig(output_dir, tokenizer, max_steps, /*batch_size=*/8);
  } else if (kind == "contrastive") {
    yaml = R"(kind: contrastive
seed: 4
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 16, num_workers: 2, prefetch: 4}
model: {preset: vit_small_fashion_mnist, img_size: 16, patch_size: 4, embed_dim: 32, depth: 2,
        num_heads: 2, dim: 16, mlp_dim: 32}
eval: {train_images: 64, max_images: 32, batch_size: 32}
optim: {lr: 0.01, warmup_steps: 2}
train: {max_steps: )" +
           std::to_string(max_steps) +
           ", log_every: 10, checkpoint_every: 1000, output_dir: " + output_dir + "}\n";
  } else {
    yaml = "kind: " + kind + R"(
seed: 4
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 16, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7}
model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 4, embed_dim: 32, depth: 2,
        num_heads: 2}
eval: {split: test, batch_size: 32, max_images: 32}
optim: {lr: 0.01, warmup_steps: 2}
train: {max_steps: )" +
           std::to_string(max_steps) +
           ", log_every: 10, checkpoint_every: 1000, output_dir: " + output_dir + "}\n";
  }
  yaml = absl::StrReplaceAll(
      yaml, {{"log_every: 10, checkpoint_every: 1000", "log_every: 1, checkpoint_every: 1"},
             {"log_every: 1, checkpoint_every: 1000", "log_every: 1, checkpoint_every: 1"}});
  return yaml + "faults: " + faults + "\n";
}

// The weights of the newest verified checkpoint of a run of `kind`.
NamedTensors ModelStateOf(const std::string& kind, const std::string& dir) {
  if (kind == "tokenizer") {
    auto loaded = LoadTokenizerCheckpoint(dir);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? ModuleState(*loaded->model) : NamedTensors();
  }
  if (kind == "pretrain") {
    auto loaded = LoadPretrainCheckpoint(dir);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? ModuleState(*loaded->model) : NamedTensors();
  }
  if (kind == "contrastive") {
    auto loaded = LoadContrastiveCheckpoint(dir);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? ModuleState(*loaded->model) : NamedTensors();
  }
  auto loaded = LoadEvalCheckpoint(dir);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return {};
  return ModuleState(*loaded->model);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Waits (at most 60 s) until `path` contains `text`.
bool WaitForText(const std::string& path, const std::string& text) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < limit) {
    if (ReadFile(path).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Every fault against every job kind: they share one training loop, and this shows that each
// kind's job reaches it (its faults section, its checkpoints, its step).
class FaultRunTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!fs::is_directory("/usr/share/datasets/fashion-mnist")) {
      GTEST_SKIP() << "needs Debian's dataset-fashion-mnist (scripts/setup)";
    }
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    name = absl::StrReplaceAll(name, {{"/", "_"}});
    dir_ = ::peco::testing::TempDir("fault_injection_test", name);
    if (kind() == "pretrain") {
      // The frozen tokenizer a pretrain job needs: one step of the tiny one.
      tokenizer_ = dir_ + "/tokenizer";
      std::string yaml =
          ::peco::testing::TinyTokenizerConfig(tokenizer_, 4, "{perceptual_weight: 0}", 1);
      yaml = absl::StrReplaceAll(yaml, {{"eval: {max_images: 64}", "eval: {enabled: false}"}});
      TrainRun made = RunJob("tokenizer", ::peco::testing::WriteConfig(dir_, "tok.yaml", yaml),
                             dir_ + "/tok.log", 1);
      ASSERT_EQ(made.exit_code, 0) << ReadFile(dir_ + "/tok.log");
    }
  }
  const std::string& kind() const { return GetParam(); }

  std::string Config(const std::string& name, int max_steps, const std::string& faults) {
    return ::peco::testing::WriteConfig(
        dir_, name + ".yaml",
        FaultyConfig(kind(), dir_ + "/" + name, max_steps, faults, tokenizer_));
  }

  // Runs `peco-train <kind>` on `config` as attempt `attempt` (PECO_ATTEMPT, as the worker sets).
  static TrainRun RunJob(const std::string& kind, const std::string& config, const std::string& log,
                         int attempt, const std::string& resume = "") {
    setenv("PECO_ATTEMPT", std::to_string(attempt).c_str(), 1);
    std::vector<std::string> args = {kind, "--config", config};
    if (!resume.empty()) args.insert(args.end(), {"--resume", resume});
    TrainRun run = ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log);
    unsetenv("PECO_ATTEMPT");
    return run;
  }
  TrainRun Run(const std::string& config, const std::string& log, int attempt,
               const std::string& resume = "") {
    return RunJob(kind(), config, log, attempt, resume);
  }

  void ExpectSameWeights(const std::string& a_dir, const std::string& b_dir) {
    NamedTensors a_state = ModelStateOf(kind(), a_dir), b_state = ModelStateOf(kind(), b_dir);
    ASSERT_FALSE(a_state.empty());
    ASSERT_EQ(a_state.size(), b_state.size());
    for (size_t i = 0; i < a_state.size(); ++i) {
      EXPECT_TRUE(torch::equal(a_state[i].second, b_state[i].second)) << a_state[i].first;
    }
  }

  std::string dir_;
  std::string tokenizer_;
};

TEST_P(FaultRunTest, CrashAfterAStepResumesStepExact) {
  constexpr int kSteps = 4;
  const std::string straight = Config("straight", kSteps, "{}");
  ASSERT_EQ(Run(straight, dir_ + "/straight.log", 1).exit_code, 0);

  const std::string crashing =
      Config("crashing", kSteps, "{attempt: 1, exit_at_step: 2, exit_code: 7}");
  TrainRun first = Run(crashing, dir_ + "/first.log", 1);
  EXPECT_EQ(first.exit_code, 7);
  EXPECT_TRUE(first.Of("completed").empty());
  ASSERT_EQ(CheckpointStep(ListCheckpoints(dir_ + "/crashing/checkpoints").back()), 2);
  // The next attempt is not armed: it resumes from step 2 and finishes.
  TrainRun second = Run(crashing, dir_ + "/second.log", 2, dir_ + "/crashing");
  ASSERT_EQ(second.exit_code, 0) << ReadFile(dir_ + "/second.log");
  EXPECT_EQ(second.Of("start")[0]["step"].as<int>(), 2);
  ExpectSameWeights(dir_ + "/straight", dir_ + "/crashing");
}

TEST_P(FaultRunTest, CorruptedCheckpointIsSkippedAndTheResumeIsStillStepExact) {
  constexpr int kSteps = 3;
  const std::string straight = Config("straight", kSteps, "{}");
  ASSERT_EQ(Run(straight, dir_ + "/straight.log", 1).exit_code, 0);
  // Attempt 1 finishes, but its final checkpoint is damaged after it was committed.
  const std::string damaged =
      Config("damaged", kSteps, "{attempt: 1, corrupt_checkpoint_at_step: 3}");
  ASSERT_EQ(Run(damaged, dir_ + "/first.log", 1).exit_code, 0);
  const std::string last = ListCheckpoints(dir_ + "/damaged/checkpoints").back();
  ASSERT_EQ(CheckpointStep(last), 3);
  EXPECT_EQ(VerifyCheckpoint(last).code(), absl::StatusCode::kDataLoss);
  // A rerun from the run directory goes back to step 2, the newest checkpoint that verifies,
  // and retrains step 3 to the same weights.
  TrainRun again = Run(damaged, dir_ + "/again.log", 2, dir_ + "/damaged");
  ASSERT_EQ(again.exit_code, 0) << ReadFile(dir_ + "/again.log");
  EXPECT_EQ(again.Of("start")[0]["step"].as<int>(), 2);
  ExpectSameWeights(dir_ + "/straight", dir_ + "/damaged");
}

// train.on_checkpoint_failure: the checkpoint of step 2 cannot be written (as on a full disk).
// `fail` (the default) ends the attempt with a retryable exit and keeps step 1 the newest;
// `skip` reports it, trains on to the same weights as an undisturbed run, and writes the later
// checkpoints; `skip` with max_skipped_checkpoints 0 behaves as `fail`.
TEST_P(FaultRunTest, FailedPeriodicCheckpointFailsOrIsSkippedByPolicy) {
  constexpr int kSteps = 4;
  auto config = [&](const std::string& name, const std::string& train_keys) {
    std::string yaml =
        FaultyConfig(kind(), dir_ + "/" + name, kSteps, "{fail_checkpoint_at_step: 2}", tokenizer_);
    yaml =
        absl::StrReplaceAll(yaml, {{"checkpoint_every: 1,", "checkpoint_every: 1," + train_keys}});
    return ::peco::testing::WriteConfig(dir_, name + ".yaml", yaml);
  };
  const std::string straight = Config("straight", kSteps, "{}");
  ASSERT_EQ(Run(straight, dir_ + "/straight.log", 1).exit_code, 0);

  TrainRun failed = Run(config("fail", ""), dir_ + "/fail.log", 1);
  EXPECT_EQ(failed.exit_code, 1) << ReadFile(dir_ + "/fail.log");
  EXPECT_NE(failed.ErrorMessage().find("checkpoint of step 2 not written"), std::string::npos)
      << failed.ErrorMessage();
  EXPECT_EQ(CheckpointStep(ListCheckpoints(dir_ + "/fail/checkpoints").back()), 1);

  TrainRun strict =
      Run(config("strict", " on_checkpoint_failure: skip, max_skipped_checkpoints: 0,"),
          dir_ + "/strict.log", 1);
  EXPECT_EQ(strict.exit_code, 1) << ReadFile(dir_ + "/strict.log");

  TrainRun skipped = Run(config("skip", " on_checkpoint_failure: skip,"), dir_ + "/skip.log", 1);
  ASSERT_EQ(skipped.exit_code, 0) << ReadFile(dir_ + "/skip.log");
  ASSERT_EQ(skipped.Of("checkpoint_failed").size(), 1u);
  EXPECT_EQ(skipped.Of("checkpoint_failed")[0]["step"].as<int>(), 2);
  EXPECT_NE(
      skipped.Of("checkpoint_failed")[0]["error"].as<std::string>().find("No space left on device"),
      std::string::npos);
  std::vector<int64_t> steps;
  for (const std::string& dir : ListCheckpoints(dir_ + "/skip/checkpoints")) {
    steps.push_back(CheckpointStep(dir));
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 3, 4}));
  ExpectSameWeights(dir_ + "/straight", dir_ + "/skip");
}

TEST(TrainSectionTest, CheckpointFailurePolicyIsCheckedByName) {
  TrainConfig train;
  train.max_skipped_checkpoints = -1;
  absl::Status negative = ValidateTrainSection(train);
  EXPECT_NE(negative.message().find("train.max_skipped_checkpoints"), std::string::npos)
      << negative;
  CheckpointFailurePolicy policy;
  absl::Status unknown = ParseCheckpointFailurePolicy("retry", &policy);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.message().find("train.on_checkpoint_failure"), std::string::npos) << unknown;
}

TEST_P(FaultRunTest, NanLossFailsWithTheNonRetryableExitCode) {
  const std::string config = Config("nan", 4, "{nan_loss_at_step: 1}");
  TrainRun run = Run(config, dir_ + "/nan.log", 1);
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_NE(run.ErrorMessage().find("non-finite loss at step 1"), std::string::npos)
      << run.ErrorMessage();
  // The checkpoint of step 1 is the last one: the NaN never reached the weights.
  EXPECT_EQ(CheckpointStep(ListCheckpoints(dir_ + "/nan/checkpoints").back()), 1);
}

TEST_P(FaultRunTest, HangShowsInTheStackDumpAndTheProcessLivesOn) {
  const std::string config = Config("hang", 4, "{hang_at_step: 1, hang_in: checkpoint}");
  const std::string log = dir_ + "/hang.log";
  ::peco::testing::Subprocess process({PECO_TRAIN_BINARY, kind(), "--config", config}, log);
  ASSERT_TRUE(process.started());
  ASSERT_TRUE(WaitForText(log, "hanging inside the checkpoint write after step 1"))
      << ReadFile(log);
  process.Signal(SIGQUIT);
  ASSERT_TRUE(WaitForText(log, "=== end of stacks ===")) << ReadFile(log);
  const std::string dump = ReadFile(log);
  EXPECT_NE(dump.find("=== SIGQUIT: stacks of every thread"), std::string::npos);
  EXPECT_NE(dump.find("FaultInjector::Hang"), std::string::npos) << dump;
  EXPECT_NE(dump.find("WriteCheckpoint"), std::string::npos) << dump;
  // Still alive after the dump (the worker decides when to kill); nothing was committed.
  process.Signal(SIGKILL);
  EXPECT_NE(process.Wait(), 0);
  EXPECT_TRUE(ListCheckpoints(dir_ + "/hang/checkpoints").empty());
}

// A tmpfs of `bytes` mounted at `dir` for the test's lifetime (needs root; mounted() says).
class SmallFilesystem {
 public:
  SmallFilesystem(const std::string& dir, uintmax_t bytes) : dir_(dir) {
    fs::create_directories(dir);
    const std::string options = "size=" + std::to_string(bytes);
    mounted_ = ::getuid() == 0 && ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallFilesystem() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

uintmax_t DirectoryBytes(const std::string& dir) {
  uintmax_t total = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file()) total += entry.file_size();
  }
  return total;
}

TEST_P(FaultRunTest, FullDiskFailsTheCheckpointCleanlyAndKeepsThePreviousOne) {
  // How big one checkpoint of the tiny tokenizer is.
  const std::string probe = Config("probe", 1, "{}");
  ASSERT_EQ(Run(probe, dir_ + "/probe.log", 1).exit_code, 0);
  const uintmax_t checkpoint = DirectoryBytes(ListCheckpoints(dir_ + "/probe/checkpoints")[0]);
  // Room for one checkpoint and a half: the second one does not fit.
  SmallFilesystem disk(dir_ + "/small", checkpoint + checkpoint / 2);
  if (!disk.mounted()) GTEST_SKIP() << "mounting a small tmpfs needs root";

  const std::string config = ::peco::testing::WriteConfig(
      dir_, "full.yaml", FaultyConfig(kind(), dir_ + "/small/run", 4, "{}", tokenizer_));
  TrainRun run = Run(config, dir_ + "/full.log", 1);
  EXPECT_EQ(run.exit_code, 1) << "a full disk is worth a retry elsewhere, not a crash";
  EXPECT_NE(run.ErrorMessage().find("checkpoint of step 2 not written"), std::string::npos)
      << run.ErrorMessage();
  EXPECT_NE(run.ErrorMessage().find("No space left on device"), std::string::npos)
      << run.ErrorMessage();
  // The checkpoint of step 1 is still the newest, whole, and nothing half-written is left.
  const std::string root = dir_ + "/small/run/checkpoints";
  const std::vector<std::string> left = ListCheckpoints(root);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(CheckpointStep(left[0]), 1);
  EXPECT_TRUE(VerifyCheckpoint(left[0]).ok());
  for (const auto& entry : fs::directory_iterator(root)) {
    EXPECT_EQ(entry.path().filename().string().rfind(".tmp-", 0), std::string::npos)
        << entry.path();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryJobKind, FaultRunTest,
                         // linear_probe is a job of one step (its feature pass and fits): its
                         // restart from the feature cache is tested in eval_run_test.
                         ::testing::Values("tokenizer", "pretrain", "finetune", "contrastive"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace peco::trainer
