// End-to-end tests of `peco-train pretrain` as a process, on real Fashion-MNIST images with a
// tiny peco tokenizer trained by `peco-train tokenizer` first: learning, refusal of a tokenizer
// whose grid or vocabulary differs from the ViT's, step-exact resume after SIGTERM, refusal of a
// resume with another tokenizer, export, and 2 data-parallel ranks against 1 rank.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>

#include "tests/test_util/subprocess.h"
#include "tests/test_util/tiny_jobs.h"
#include "tests/test_util/train_process.h"
#include "trainer/data/image_codec.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/models/weights.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/preview.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  return ::peco::testing::TempDir("peco_pretrain_test", name);
}

using ::peco::testing::TinyPretrainConfig;
using ::peco::testing::TinyTokenizerConfig;
using ::peco::testing::WriteConfig;

using RunResult = ::peco::testing::TrainRun;

RunResult RunTrain(const std::vector<std::string>& args, const std::string& log,
                   int stop_at_step = 0, const std::vector<std::string>& prefix = {}) {
  return ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log, stop_at_step, prefix);
}

class PretrainRunTest : public ::testing::Test {
 protected:
  // Two tokenizers of the same shape, trained once for the whole suite.
  static void SetUpTestSuite() {
    const std::string dir = TempDir("tokenizers");
    for (int i = 0; i < 2; ++i) {
      const std::string run = dir + "/tok" + std::to_string(i);
      const std::string config =
          WriteConfig(dir, "tok" + std::to_string(i) + ".yaml", TinyTokenizerConfig(run, 7 + i));
      RunResult result = RunTrain({"tokenizer", "--config", config}, run + ".log");
      ASSERT_EQ(result.exit_code, 0) << "training tokenizer " << i;
      (i == 0 ? *tokenizer_ : *other_tokenizer_) = run;
    }
  }
  static std::string* tokenizer_;
  static std::string* other_tokenizer_;
};
std::string* PretrainRunTest::tokenizer_ = new std::string;
std::string* PretrainRunTest::other_tokenizer_ = new std::string;

TEST_F(PretrainRunTest, TrainingLowersTheMaskedTokenLoss) {
  const std::string dir = TempDir("learn");
  const std::string config =
      WriteConfig(dir, "config.yaml", TinyPretrainConfig(dir + "/run", *tokenizer_, 60));
  RunResult run = RunTrain({"pretrain", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  ASSERT_EQ(run.Of("start").size(), 1u);
  EXPECT_EQ(run.Of("start")[0]["grid"].as<int>(), 8);
  EXPECT_EQ(run.Of("start")[0]["tokenizer_sha256"].as<std::string>().size(), 64u);
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 60u);
  double first = 0, last = 0;
  for (int i = 0; i < 5; ++i) {
    first += steps[i]["loss"].as<double>() / 5;
    last += steps[steps.size() - 1 - i]["loss"].as<double>() / 5;
  }
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;
  for (const YAML::Node& step : steps) {
    EXPECT_GE(step["mlm_acc"].as<double>(), 0.0);  // null (non-finite) would not parse
    EXPECT_GT(step["masked_per_image"].as<double>(), 0.0);
    EXPECT_LE(step["masked_per_image"].as<double>(), 26.0);
    EXPECT_GT(step["images_per_second"].as<double>(), 0.0);
  }
  EXPECT_DOUBLE_EQ(steps[0]["lr"].as<double>(), 0.0);  // linear warmup from 0
  ASSERT_EQ(run.Of("completed").size(), 1u);
  ASSERT_EQ(ListCheckpoints(dir + "/run/checkpoints").size(), 1u);

  // preview.png: 8 masked inputs, the target tokens decoded, the predicted tokens decoded.
  auto files = ReadCheckpoint(ListCheckpoints(dir + "/run/checkpoints")[0]);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->count(kPreviewFile), 1u);
  absl::StatusOr<Image> grid = DecodePng(files->at(kPreviewFile), kPreviewFile);
  ASSERT_TRUE(grid.ok()) << grid.status();
  const int tile = (grid->height - kPreviewGap) / 3 - kPreviewGap;
  EXPECT_EQ(grid->height, kPreviewGap + 3 * (tile + kPreviewGap));
  EXPECT_EQ(grid->width, kPreviewGap + 8 * (tile + kPreviewGap));
  EXPECT_GE(tile, kPreviewMinTile / 2);
  torch::Tensor hwc =
      torch::from_blob(grid->pixels.data(), {grid->height, grid->width, 3}, torch::kUInt8)
          .to(torch::kFloat32);
  for (int row = 0; row < 3; ++row) {
    const int top = kPreviewGap + row * (tile + kPreviewGap);
    EXPECT_GT(hwc.slice(0, top, top + tile).std().item<double>(), 10.0) << "row " << row;
  }

  // Export: BEiT's {'model': state_dict}.
  RunResult exported = RunTrain({"export", "--checkpoint", dir + "/run", "--out", dir + "/m.pt"},
                                dir + "/export.log");
  ASSERT_EQ(exported.exit_code, 0) << exported.ErrorMessage();
  EXPECT_EQ(exported.Of("exported")[0]["kind"].as<std::string>(), "pretrain");
  EXPECT_TRUE(fs::exists(dir + "/m.pt"));
}

TEST_F(PretrainRunTest, Bf16AutocastTrains) {
  const std::string dir = TempDir("bf16");
  std::string yaml = TinyPretrainConfig(dir + "/run", *tokenizer_, 3);
  yaml.replace(yaml.find("log_every"), 0, "precision: bf16, ");
  RunResult run =
      RunTrain({"pretrain", "--config", WriteConfig(dir, "c.yaml", yaml)}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  ASSERT_EQ(run.Of("step").size(), 3u);
  for (const YAML::Node& step : run.Of("step")) EXPECT_GT(step["loss"].as<double>(), 0.0);
}

TEST_F(PretrainRunTest, MismatchedTokenizerIsRefusedBeforeTrainingNamingBothSides) {
  const std::string dir = TempDir("mismatch");
  std::string grid = TinyPretrainConfig(dir + "/grid", *tokenizer_, 2);
  grid.replace(grid.find("patch_size: 2"), 13, "patch_size: 4");
  grid.replace(grid.find("num_masking_patches: 26"), 23, "num_masking_patches: 6");
  RunResult run =
      RunTrain({"pretrain", "--config", WriteConfig(dir, "g.yaml", grid)}, dir + "/g.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.Of("start").empty());
  EXPECT_NE(run.ErrorMessage().find("token grid 8x8"), std::string::npos) << run.ErrorMessage();
  EXPECT_NE(run.ErrorMessage().find("patch grid 4x4"), std::string::npos) << run.ErrorMessage();
  EXPECT_FALSE(fs::exists(dir + "/grid/checkpoints"));

  std::string vocab = TinyPretrainConfig(dir + "/vocab", *tokenizer_, 2);
  vocab.replace(vocab.find("vocab_size: 64"), 14, "vocab_size: 128");
  run = RunTrain({"pretrain", "--config", WriteConfig(dir, "v.yaml", vocab)}, dir + "/v.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("model.vocab_size: 128"), std::string::npos);
  EXPECT_NE(run.ErrorMessage().find("codebook size 64"), std::string::npos);

  // `validate` refuses it too, before any job starts.
  run = RunTrain({"validate", "--config", dir + "/v.yaml"}, dir + "/validate.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("codebook size 64"), std::string::npos);

  // A missing tokenizer checkpoint.
  run = RunTrain({"pretrain", "--config",
                  WriteConfig(dir, "m.yaml", TinyPretrainConfig(dir + "/m", dir + "/none", 2))},
                 dir + "/m.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("tokenizer.checkpoint"), std::string::npos);
}

TEST_F(PretrainRunTest, ResumeAfterSigtermIsStepExactAndPinsTheTokenizer) {
  const std::string dir = TempDir("resume");
  constexpr int kSteps = 10;
  RunResult a = RunTrain(
      {"pretrain", "--config",
       WriteConfig(dir, "a.yaml", TinyPretrainConfig(dir + "/straight", *tokenizer_, kSteps))},
      dir + "/a.log");
  ASSERT_EQ(a.exit_code, 0) << a.ErrorMessage();

  const std::string split =
      WriteConfig(dir, "b.yaml", TinyPretrainConfig(dir + "/split", *tokenizer_, kSteps));
  RunResult first = RunTrain({"pretrain", "--config", split}, dir + "/b1.log", kSteps / 2);
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();
  ASSERT_EQ(first.Of("stopped").size(), 1u) << "the SIGTERM arrived after training finished";
  const int stopped_at = first.Of("stopped")[0]["step"].as<int>();
  ASSERT_LT(stopped_at, kSteps);

  // Another tokenizer (same shape, other weights) is refused.
  RunResult other = RunTrain({"pretrain", "--config", split, "--resume", dir + "/split", "--set",
                              "tokenizer.checkpoint=" + *other_tokenizer_},
                             dir + "/other.log");
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.ErrorMessage().find("is not the tokenizer checkpoint"), std::string::npos)
      << other.ErrorMessage();

  RunResult second =
      RunTrain({"pretrain", "--config", split, "--resume", dir + "/split"}, dir + "/b2.log");
  ASSERT_EQ(second.exit_code, 0) << second.ErrorMessage();
  ASSERT_EQ(second.Of("start")[0]["step"].as<int>(), stopped_at);

  absl::StatusOr<LoadedPretrain> a_model = LoadPretrainCheckpoint(dir + "/straight");
  absl::StatusOr<LoadedPretrain> b_model = LoadPretrainCheckpoint(dir + "/split");
  ASSERT_TRUE(a_model.ok()) << a_model.status();
  ASSERT_TRUE(b_model.ok()) << b_model.status();
  EXPECT_EQ(a_model->step, kSteps);
  EXPECT_EQ(b_model->step, kSteps);
  EXPECT_EQ(a_model->tokenizer_sha256, b_model->tokenizer_sha256);
  NamedTensors a_state = ModuleState(*a_model->model);
  NamedTensors b_state = ModuleState(*b_model->model);
  ASSERT_EQ(a_state.size(), b_state.size());
  for (size_t i = 0; i < a_state.size(); ++i) {
    EXPECT_TRUE(torch::equal(a_state[i].second, b_state[i].second)) << a_state[i].first;
  }
  std::map<int, double> a_loss;
  for (const auto& e : a.Of("step")) a_loss[e["step"].as<int>()] = e["loss"].as<double>();
  for (const auto& e : second.Of("step")) {
    EXPECT_EQ(e["loss"].as<double>(), a_loss[e["step"].as<int>()]) << "step " << e["step"];
  }
}

TEST_F(PretrainRunTest, TwoRanksEqualOneRankWithTheDoubleBatch) {
  const std::string dir = TempDir("ddp");
  constexpr int kSteps = 3;
  RunResult one = RunTrain({"pretrain", "--config",
                            WriteConfig(dir, "one.yaml",
                                        TinyPretrainConfig(dir + "/one", *tokenizer_, kSteps,
                                                           /*batch_size=*/16, /*drop_path=*/0))},
                           dir + "/one.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();

  const std::string config = WriteConfig(
      dir, "two.yaml", TinyPretrainConfig(dir + "/two", *tokenizer_, kSteps, 8, /*drop_path=*/0));
  std::vector<RunResult> ranks =
      ::peco::testing::RunRanksProcesses(PECO_TRAIN_BINARY, {"pretrain", "--config", config},
                                         dir + "/rank", 29000 + ::getpid() % 2000);
  for (const RunResult& rank : ranks) EXPECT_EQ(rank.exit_code, 0) << rank.ErrorMessage();
  absl::StatusOr<LoadedPretrain> a = LoadPretrainCheckpoint(dir + "/one");
  absl::StatusOr<LoadedPretrain> b = LoadPretrainCheckpoint(dir + "/two");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  NamedTensors a_state = ModuleState(*a->model);
  NamedTensors b_state = ModuleState(*b->model);
  ASSERT_EQ(a_state.size(), b_state.size());
  for (size_t i = 0; i < a_state.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a_state[i].second.to(torch::kFloat64),
                                b_state[i].second.to(torch::kFloat64), 1e-4, 1e-4))
        << a_state[i].first;
  }
}

}  // namespace
}  // namespace peco::trainer
