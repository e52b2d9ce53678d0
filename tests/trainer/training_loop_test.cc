// The one training loop (trainer/engine/training_loop.h), in process, with a fake job kind:
// cadence of metrics, evaluations and checkpoints, the final checkpoint, resume position, the
// non-finite-loss rule, both checkpoint-failure policies, events, and a stop asked of one rank
// of a two-rank group (ranks are threads joined by an in-process collective group).
#include "trainer/engine/training_loop.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "tests/test_util/in_process_group.h"
#include "tests/test_util/tiny_jobs.h"
#include "trainer/data/synthetic.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/runtime.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kStateFile[] = "fake_state.txt";

struct FakeTaskOptions {
  EvaluationPolicy evaluation;
  int64_t nan_at_step = -1;         // ForwardLoss returns NaN with this many steps completed
  int64_t fail_checkpoint_at = -1;  // CheckpointContents of this step fails (as a full disk)
};

// A job kind that trains nothing: its "model" is the running sum of the global batches' first
// sample indices, reduced over the ranks at every step (so ranks must move in lockstep).
class FakeTask : public TrainingTask {
 public:
  explicit FakeTask(FakeTaskOptions options = {}) : options_(options) {}

  absl::Status Build(const RunContext& run) override {
    calls.push_back("build");
    return absl::OkStatus();
  }
  absl::Status Restore(const RestoredCheckpoint& checkpoint) override {
    ASSIGN_OR_RETURN(const std::string* text,
                     CheckpointFile(checkpoint.files, kStateFile, checkpoint.dir));
    std::istringstream in(*text);
    in >> step_ >> model_;
    calls.push_back(absl::StrCat("restore ", step_));
    return absl::OkStatus();
  }
  absl::Status Connect(DistributedContext* group) override {
    group_ = group;
    LoaderOptions options;
    options.batch_size = 2;
    options.num_threads = 1;
    options.prefetch_batches = 1;
    options.rank = group->rank();
    options.world_size = group->world_size();
    options.transform.output_sizes = {8};
    ASSIGN_OR_RETURN(loader_, DataLoader::Create(MakeSyntheticDataset(64, 8, 8, 3, 4, /*seed=*/1),
                                                 options, LoaderPosition{0, step_}));
    calls.push_back("connect");
    return absl::OkStatus();
  }
  DataLoader* loader() override { return loader_.get(); }
  int64_t step() const override { return step_; }
  std::string DescribeStart(JsonWriter* start) override {
    start->Add("fake", true);
    return "a fake job";
  }
  absl::StatusOr<double> ForwardLoss(const Batch& batch) override {
    calls.push_back(absl::StrCat("forward ", step_));
    batch_first_ = batch.indices[0].item<int64_t>();
    if (step_ == options_.nan_at_step) return std::numeric_limits<double>::quiet_NaN();
    return 1.0 / static_cast<double>(step_ + 1);
  }
  absl::Status Update() override {
    ASSIGN_OR_RETURN(std::vector<double> mean,
                     group_->AllReduceMean({static_cast<double>(batch_first_)}));
    model_ += mean[0] * group_->world_size();
    ++step_;
    calls.push_back(absl::StrCat("update ", step_));
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> Metrics(const MetricWindow& window, JsonWriter* event) override {
    calls.push_back(absl::StrCat("metrics ", step_, " over ", window.steps));
    event->Add("model", model_);
    return absl::StrCat("model ", model_);
  }
  absl::StatusOr<CheckpointFiles> CheckpointContents(bool final) override {
    calls.push_back(absl::StrCat("checkpoint ", step_, final ? " final" : ""));
    if (step_ == options_.fail_checkpoint_at) {
      return absl::ResourceExhaustedError("No space left on device (fake)");
    }
    CheckpointFiles files;
    if (group_->is_main()) {
      files[kStateFile] = absl::StrCat(step_, " ", model_);
      files[kTrainerStateFile] = "{\"kind\": \"fake\"}\n";
    }
    return files;
  }
  EvaluationPolicy evaluation() const override { return options_.evaluation; }
  absl::Status Evaluate() override {
    calls.push_back(absl::StrCat("eval ", step_));
    evaluated_ = step_;
    return absl::OkStatus();
  }
  int64_t evaluated_step() const override { return evaluated_; }
  void AddResult(JsonWriter* done) override { done->Add("model", model_); }

  double model() const { return model_; }
  std::vector<std::string> calls;

 private:
  FakeTaskOptions options_;
  DistributedContext* group_ = nullptr;
  std::unique_ptr<DataLoader> loader_;
  int64_t step_ = 0;
  int64_t evaluated_ = -1;
  int64_t batch_first_ = 0;
  double model_ = 0;
};

// The progress events of one rank, written to a file and read back.
class EventLog {
 public:
  explicit EventLog(const std::string& path)
      : path_(path),
        fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600)),
        human_(::open((path + ".log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600)),
        sink_(fd_, human_) {}
  ~EventLog() {
    ::close(fd_);
    ::close(human_);
  }
  ProgressSink* sink() { return &sink_; }

  std::vector<YAML::Node> Events() const {
    std::vector<YAML::Node> events;
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) events.push_back(YAML::Load(line));
    return events;
  }
  // "type step" for every event but heartbeats, in order.
  std::vector<std::string> Summary() const {
    std::vector<std::string> out;
    for (const YAML::Node& e : Events()) {
      std::string item = e["event"].as<std::string>();
      if (e["step"]) item += " " + e["step"].as<std::string>();
      if (e["final"] && e["final"].as<bool>()) item += " final";
      out.push_back(item);
    }
    return out;
  }

 private:
  std::string path_;
  int fd_, human_;
  ProgressSink sink_;
};

class TrainingLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::peco::testing::TempDir(
        "training_loop_test", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  TrainingLoopOptions Options(EventLog& log, int64_t max_steps) {
    TrainingLoopOptions options;
    options.kind = "fake";
    options.threads = 1;
    options.max_steps = max_steps;
    options.log_every = 3;
    options.checkpoint_every = 2;
    options.keep_checkpoints = 10;
    options.output_dir = dir_ + "/run";
    options.progress = log.sink();
    options.stop_requested = [] { return false; };
    return options;
  }

  std::vector<int64_t> CheckpointSteps() {
    std::vector<int64_t> steps;
    for (const std::string& dir : ListCheckpoints(dir_ + "/run/checkpoints")) {
      steps.push_back(CheckpointStep(dir));
    }
    return steps;
  }

  std::string dir_;
};

TEST(PrecisionTest, AutoIsBf16OnlyWhereTheHardwareHasIt) {
  EXPECT_TRUE(CpuinfoHasBf16("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16 fma\n"));
  EXPECT_TRUE(CpuinfoHasBf16("flags\t: amx_tile amx_bf16\n"));
  EXPECT_FALSE(CpuinfoHasBf16("flags\t: fpu avx2 avx512f avx512_vnni\n"));
  EXPECT_FALSE(CpuinfoHasBf16("model name\t: avx512_bf16\nflags\t: avx2\n"));  // flags only
  EXPECT_FALSE(CpuinfoHasBf16(""));
  EXPECT_EQ(ResolvePrecision("fp32", "cuda"), "fp32");
  EXPECT_EQ(ResolvePrecision("bf16", "cpu"), "bf16");
  EXPECT_EQ(ResolvePrecision("auto", "cuda"), "bf16");
  EXPECT_EQ(ResolvePrecision("auto", "cpu"), CpuHasBf16Hardware() ? "bf16" : "fp32");
}

TEST_F(TrainingLoopTest, CadenceOfMetricsCheckpointsAndEvaluationBeforeTheCheckpoint) {
  EventLog log(dir_ + "/events");
  FakeTask task({EvaluationPolicy{EvalOrder::kBeforeCheckpoint, 3}});
  absl::StatusOr<TrainingResult> result = RunTrainingLoop(task, Options(log, 7));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->final_step, 7);
  EXPECT_FALSE(result->stopped_by_signal);
  EXPECT_THAT(result->last_checkpoint, HasSubstr("step-000000000007"));
  // Task calls the loop makes besides forward/update: setup, then per step the cadence.
  std::vector<std::string> cadence;
  for (const std::string& call : task.calls) {
    if (call.rfind("forward", 0) != 0 && call.rfind("update", 0) != 0) cadence.push_back(call);
  }
  EXPECT_THAT(cadence, ElementsAre("build", "connect", "checkpoint 2", "metrics 3 over 3", "eval 3",
                                   "checkpoint 4", "metrics 6 over 3", "eval 6", "checkpoint 6",
                                   "eval 7", "metrics 7 over 1", "checkpoint 7 final"));
  EXPECT_THAT(log.Summary(),
              ElementsAre("start 0", "checkpoint 2", "step 3", "checkpoint 4", "step 6",
                          "checkpoint 6", "step 7", "checkpoint 7 final", "completed 7"));
  EXPECT_THAT(CheckpointSteps(), ElementsAre(2, 4, 6, 7));
  const std::vector<YAML::Node> events = log.Events();
  EXPECT_EQ(events[0]["kind"].as<std::string>(), "fake");
  EXPECT_TRUE(events[0]["fake"].as<bool>()) << "the task's start fields";
  EXPECT_EQ(events[0]["world_size"].as<int>(), 1);
  EXPECT_TRUE(events[2]["model"]) << "metrics come from the task";
  for (const char* field : {"images_per_second", "step_seconds", "data_wait_seconds"}) {
    EXPECT_TRUE(events[2][field]) << field;
  }
  EXPECT_EQ(events.back()["checkpoint"].as<std::string>(), result->last_checkpoint);
}

TEST_F(TrainingLoopTest, EvaluationAfterTheCheckpointEndsAfterTheFinalOne) {
  EventLog log(dir_ + "/events");
  FakeTask task({EvaluationPolicy{EvalOrder::kAfterCheckpoint, 2}});
  TrainingLoopOptions options = Options(log, 5);
  options.log_every = 100;
  ASSERT_TRUE(RunTrainingLoop(task, options).ok());
  std::vector<std::string> cadence;
  for (const std::string& call : task.calls) {
    if (call.rfind("checkpoint", 0) == 0 || call.rfind("eval", 0) == 0) cadence.push_back(call);
  }
  EXPECT_THAT(cadence, ElementsAre("checkpoint 2", "eval 2", "checkpoint 4", "eval 4",
                                   "checkpoint 5 final", "eval 5"));
}

TEST_F(TrainingLoopTest, ResumeContinuesFromTheNewestCheckpointAndAFreshRunIsRefused) {
  EventLog first_log(dir_ + "/first");
  FakeTask first;
  ASSERT_TRUE(RunTrainingLoop(first, Options(first_log, 4)).ok());

  // The same output directory without --resume: refused, nothing built.
  EventLog refused_log(dir_ + "/refused");
  FakeTask refused;
  absl::StatusOr<TrainingResult> again = RunTrainingLoop(refused, Options(refused_log, 8));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(again.status().message(), HasSubstr("already holds checkpoints"));
  EXPECT_TRUE(refused.calls.empty());

  EventLog log(dir_ + "/second");
  FakeTask resumed;
  TrainingLoopOptions options = Options(log, 8);
  options.resume_from = dir_ + "/run";
  absl::StatusOr<TrainingResult> result = RunTrainingLoop(resumed, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(resumed.calls[0], "build");
  EXPECT_EQ(resumed.calls[1], "restore 4");
  EXPECT_EQ(resumed.calls[3], "forward 4") << "the next step after the checkpoint";
  EXPECT_EQ(log.Events()[0]["step"].as<int>(), 4);
  EXPECT_THAT(CheckpointSteps(), ElementsAre(2, 4, 6, 8));

  // Step-exact: the same model as one uninterrupted run of 8 steps.
  fs::remove_all(dir_ + "/run");
  EventLog straight_log(dir_ + "/straight");
  FakeTask straight;
  ASSERT_TRUE(RunTrainingLoop(straight, Options(straight_log, 8)).ok());
  EXPECT_EQ(straight.model(), resumed.model());
}

TEST_F(TrainingLoopTest, NonFiniteLossStopsBeforeTheUpdateWithTheNonRetryableCode) {
  EventLog log(dir_ + "/events");
  FakeTaskOptions fake;
  fake.nan_at_step = 3;
  FakeTask task(fake);
  TrainingLoopOptions options = Options(log, 6);
  options.checkpoint_every = 1;
  absl::StatusOr<TrainingResult> result = RunTrainingLoop(task, options);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(trainer_protocol::ExitCodeFor(result.status()), trainer_protocol::kExitNonFiniteLoss);
  EXPECT_THAT(result.status().message(), HasSubstr("non-finite loss at step 3 on rank 0"));
  EXPECT_EQ(task.calls.back(), "forward 3") << "no update after the NaN";
  EXPECT_THAT(CheckpointSteps(), ElementsAre(1, 2, 3)) << "the last checkpoint stays clean";
}

TEST_F(TrainingLoopTest, FailedPeriodicCheckpointFailsOrIsSkippedByPolicy) {
  FakeTaskOptions fake;
  fake.fail_checkpoint_at = 2;
  {
    EventLog log(dir_ + "/fail");
    FakeTask task(fake);
    TrainingLoopOptions options = Options(log, 4);
    options.checkpoint_every = 1;
    absl::StatusOr<TrainingResult> result = RunTrainingLoop(task, options);
    EXPECT_EQ(trainer_protocol::ExitCodeFor(result.status()), trainer_protocol::kExitFailure);
    EXPECT_THAT(result.status().message(), HasSubstr("checkpoint of step 2 not written"));
    EXPECT_THAT(CheckpointSteps(), ElementsAre(1));
  }
  fs::remove_all(dir_ + "/run");
  {
    EventLog log(dir_ + "/skip");
    FakeTask task(fake);
    TrainingLoopOptions options = Options(log, 4);
    options.checkpoint_every = 1;
    options.on_checkpoint_failure = CheckpointFailurePolicy::kSkip;
    options.max_skipped_checkpoints = 1;
    absl::StatusOr<TrainingResult> result = RunTrainingLoop(task, options);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_THAT(CheckpointSteps(), ElementsAre(1, 3, 4));
    std::vector<YAML::Node> failed;
    for (const YAML::Node& e : log.Events()) {
      if (e["event"].as<std::string>() == trainer_protocol::kEventCheckpointFailed) {
        failed.push_back(e);
      }
    }
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0]["step"].as<int>(), 2);
  }
}

TEST_F(TrainingLoopTest, AFinalCheckpointThatFailsFailsTheRunUnderEitherPolicy) {
  FakeTaskOptions fake;
  fake.fail_checkpoint_at = 3;
  EventLog log(dir_ + "/events");
  FakeTask task(fake);
  TrainingLoopOptions options = Options(log, 3);
  options.on_checkpoint_failure = CheckpointFailurePolicy::kSkip;
  options.max_skipped_checkpoints = 5;
  absl::StatusOr<TrainingResult> result = RunTrainingLoop(task, options);
  EXPECT_FALSE(result.ok());
  EXPECT_THAT(log.Summary(), ::testing::Not(::testing::Contains("completed 3")));
}

// Rank 1 alone is asked to stop after its second step: both ranks stop after the same step,
// rank 0 writes the (non-final) checkpoint, rank 1 writes nothing, and the two ranks trained one
// model (the fake's model is reduced over the ranks at every step).
TEST_F(TrainingLoopTest, AStopAskedOfOneRankStopsEveryRankAfterTheSameStep) {
  ::peco::testing::InProcessGroup group(2);
  EventLog log0(dir_ + "/rank0"), log1(dir_ + "/rank1");
  FakeTask task0, task1;
  TrainingLoopOptions options0 = Options(log0, 100);
  options0.checkpoint_every = 1000;
  TrainingLoopOptions options1 = options0;
  options1.progress = log1.sink();
  options0.join_group = [&](const DistributedOptions&) { return group.Join(0); };
  options1.join_group = [&](const DistributedOptions&) { return group.Join(1); };
  options1.stop_requested = [&] { return task1.step() >= 2; };
  absl::StatusOr<TrainingResult> result1;
  std::thread rank1([&] { result1 = RunTrainingLoop(task1, options1); });
  absl::StatusOr<TrainingResult> result0 = RunTrainingLoop(task0, options0);
  rank1.join();
  ASSERT_TRUE(result0.ok()) << result0.status();
  ASSERT_TRUE(result1.ok()) << result1.status();
  EXPECT_TRUE(result0->stopped_by_signal);
  EXPECT_TRUE(result1->stopped_by_signal);
  EXPECT_EQ(result0->final_step, 2);
  EXPECT_EQ(result1->final_step, 2);
  EXPECT_THAT(result0->last_checkpoint, HasSubstr("step-000000000002"));
  EXPECT_EQ(result1->last_checkpoint, "") << "rank 1 writes no checkpoint";
  EXPECT_THAT(CheckpointSteps(), ElementsAre(2));
  EXPECT_EQ(task0.model(), task1.model());
  EXPECT_THAT(log0.Summary().back(), "stopped 2");
  EXPECT_THAT(log1.Summary(), ElementsAre("start 0", "step 2", "stopped 2"));
  EXPECT_EQ(log1.Events()[0]["rank"].as<int>(), 1);
  EXPECT_EQ(log1.Events()[0]["world_size"].as<int>(), 2);

  // Both resume to the end: rank 1 still names no checkpoint, not even the one it resumed from.
  ::peco::testing::InProcessGroup again(2);
  EventLog resumed_log0(dir_ + "/resumed0"), resumed_log1(dir_ + "/resumed1");
  FakeTask resumed0, resumed1;
  options0.resume_from = options1.resume_from = dir_ + "/run";
  options0.max_steps = options1.max_steps = 4;
  options0.progress = resumed_log0.sink();
  options1.progress = resumed_log1.sink();
  options0.join_group = [&](const DistributedOptions&) { return again.Join(0); };
  options1.join_group = [&](const DistributedOptions&) { return again.Join(1); };
  options1.stop_requested = [] { return false; };
  std::thread resumed_rank1([&] { result1 = RunTrainingLoop(resumed1, options1); });
  result0 = RunTrainingLoop(resumed0, options0);
  resumed_rank1.join();
  ASSERT_TRUE(result0.ok()) << result0.status();
  ASSERT_TRUE(result1.ok()) << result1.status();
  EXPECT_EQ(resumed1.calls[1], "restore 2");
  EXPECT_THAT(result0->last_checkpoint, HasSubstr("step-000000000004"));
  EXPECT_EQ(result1->last_checkpoint, "");
  EXPECT_EQ(resumed0.model(), resumed1.model());
}

TEST_F(TrainingLoopTest, BadOptionsAreRefusedNamingTheField) {
  EventLog log(dir_ + "/events");
  FakeTask task;
  TrainingLoopOptions options = Options(log, 0);
  EXPECT_THAT(RunTrainingLoop(task, options).status().message(), HasSubstr("train.max_steps"));
  options = Options(log, 1);
  options.collective_timeout = 0;
  EXPECT_THAT(RunTrainingLoop(task, options).status().message(),
              HasSubstr("train.collective_timeout"));
  options = Options(log, 1);
  options.progress = nullptr;
  EXPECT_EQ(RunTrainingLoop(task, options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(task.calls.empty());
}

}  // namespace
}  // namespace peco::trainer
