// A peco pre-training checkpoint as the perceptual network of a tokenizer job
// (loss.perceptual.checkpoint): configuration errors that name the field, `validate`'s input
// event, and the bootstrap chain tiny tokenizer -> tiny pretrain -> tokenizer whose perceptual
// loss runs on that pretrain run's BEiT trunk, recording its provenance in the checkpoint and
// refusing a resume with another network.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/test_util/tiny_jobs.h"
#include "tests/test_util/train_process.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/perceptual_network.h"
#include "trainer/tasks/tokenizer_config.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::TinyPretrainConfig;
using ::peco::testing::TinyTokenizerConfig;
using ::peco::testing::TrainRun;
using ::peco::testing::WriteConfig;
using ::testing::HasSubstr;

// The BEiT of TinyPretrainConfig has 2 blocks.
constexpr char kPerceptualLoss[] =
    "{perceptual_weight: 0.5, perceptual: {blocks: [1, 2], layer_weights: [1.0, 0.5]}}";

std::string TempDir(const std::string& name) {
  return ::peco::testing::TempDir("peco_perceptual_checkpoint_test", name);
}

TrainRun RunTrain(const std::vector<std::string>& args, const std::string& log) {
  return ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log);
}

class PerceptualCheckpointTest : public ::testing::Test {
 protected:
  // A tiny tokenizer, then a tiny pretrain run on its codes, once for the suite.
  static void SetUpTestSuite() {
    const std::string dir = TempDir("chain");
    *tokenizer_ = dir + "/tok";
    TrainRun tok = RunTrain(
        {"tokenizer", "--config",
         WriteConfig(dir, "tok.yaml", TinyTokenizerConfig(*tokenizer_, 7, kNoPerceptual, 4))},
        dir + "/tok.log");
    ASSERT_EQ(tok.exit_code, 0) << tok.ErrorMessage();
    *pretrain_ = dir + "/pre";
    TrainRun pre =
        RunTrain({"pretrain", "--config",
                  WriteConfig(dir, "pre.yaml", TinyPretrainConfig(*pretrain_, *tokenizer_, 3))},
                 dir + "/pre.log");
    ASSERT_EQ(pre.exit_code, 0) << pre.ErrorMessage();
  }

  static absl::StatusOr<TokenizerJobConfig> Parse(const std::string& loss, bool check_paths) {
    return ParseTokenizerConfig(TinyTokenizerConfig(TempDir("parse") + "/run", 1, loss),
                                "test.yaml", check_paths);
  }

  static constexpr char kNoPerceptual[] = "{perceptual_weight: 0}";
  static std::string* tokenizer_;
  static std::string* pretrain_;
};
std::string* PerceptualCheckpointTest::tokenizer_ = new std::string;
std::string* PerceptualCheckpointTest::pretrain_ = new std::string;

std::string Loss(const std::string& perceptual) {
  return "{perceptual_weight: 0.5, perceptual: {blocks: [1, 2], " + perceptual + "}}";
}

TEST_F(PerceptualCheckpointTest, WeightsAndCheckpointTogetherAreRefusedNamingBoth) {
  absl::StatusOr<TokenizerJobConfig> config =
      Parse(Loss("checkpoint: " + *pretrain_ + ", weights: /tmp/moco.pth"), false);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("loss.perceptual.checkpoint"));
  EXPECT_THAT(config.status().message(), HasSubstr("loss.perceptual.weights"));
}

TEST_F(PerceptualCheckpointTest, MissingDirectoryIsRefusedOnlyWhenPathsAreChecked) {
  const std::string missing = TempDir("missing") + "/nothing-here";
  absl::StatusOr<TokenizerJobConfig> config = Parse(Loss("checkpoint: " + missing), true);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("loss.perceptual.checkpoint"));
  EXPECT_THAT(config.status().message(), HasSubstr(missing));
  config = Parse(Loss("checkpoint: " + missing), false);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->loss.perceptual.checkpoint, missing);
}

TEST_F(PerceptualCheckpointTest, TokenizerCheckpointIsRefusedNamingTheField) {
  absl::StatusOr<TokenizerJobConfig> config = Parse(Loss("checkpoint: " + *tokenizer_), true);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("loss.perceptual.checkpoint"));
  EXPECT_THAT(config.status().message(), HasSubstr("'tokenizer'"));
}

TEST_F(PerceptualCheckpointTest, BlocksDeeperThanTheBeitAreRefusedNamingTheField) {
  // The timm extractor's depth (12 by default) does not matter: the checkpoint's BEiT has 2.
  absl::StatusOr<TokenizerJobConfig> config = Parse(
      "{perceptual_weight: 0.5, perceptual: {blocks: [1, 3], checkpoint: " + *pretrain_ + "}}",
      true);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("loss.perceptual.blocks"));
  EXPECT_THAT(config.status().message(), HasSubstr("1..2"));
  // With paths checked and blocks that fit, the run directory is accepted.
  config = Parse(Loss("checkpoint: " + *pretrain_), true);
  EXPECT_TRUE(config.ok()) << config.status();
}

TEST_F(PerceptualCheckpointTest, ValidateEmitsAnInputEventForTheCheckpoint) {
  const std::string dir = TempDir("validate");
  const std::string config =
      WriteConfig(dir, "c.yaml", TinyTokenizerConfig(dir + "/run", 1, kPerceptualLoss));
  TrainRun run = RunTrain(
      {"validate", "--config", config, "--set", "loss.perceptual.checkpoint=" + *pretrain_},
      dir + "/validate.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  bool found = false;
  for (const YAML::Node& input : run.Of("input")) {
    if (input["field"].as<std::string>() == "loss.perceptual.checkpoint") {
      EXPECT_EQ(input["path"].as<std::string>(), *pretrain_);
      found = true;
    }
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(run.Of("valid").size(), 1u);

  run = RunTrain(
      {"validate", "--config", config, "--set", "loss.perceptual.checkpoint=" + *tokenizer_},
      dir + "/validate_tokenizer.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.ErrorMessage(), HasSubstr("loss.perceptual.checkpoint"));
}

TEST_F(PerceptualCheckpointTest, TokenizerTrainsOnAPretrainRunsBeitAndRecordsIt) {
  const std::string dir = TempDir("bootstrap");
  // As the service does it: the dependency's run directory through --set.
  const std::string config =
      WriteConfig(dir, "c.yaml", TinyTokenizerConfig(dir + "/run", 3, kPerceptualLoss, 3));
  TrainRun run = RunTrain(
      {"tokenizer", "--config", config, "--set", "loss.perceptual.checkpoint=" + *pretrain_},
      dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();

  std::vector<std::string> pretrain_checkpoints = ListCheckpoints(*pretrain_ + "/checkpoints");
  ASSERT_EQ(pretrain_checkpoints.size(), 1u);
  const std::string used = pretrain_checkpoints.back();
  absl::StatusOr<std::string> digest = Sha256FileHex(used + "/" + kManifestFileName);
  ASSERT_TRUE(digest.ok()) << digest.status();

  ASSERT_EQ(run.Of("start").size(), 1u);
  const YAML::Node start = run.Of("start")[0];
  EXPECT_THAT(start["perceptual"].as<std::string>(), HasSubstr("pretrain checkpoint " + used));
  EXPECT_EQ(start["perceptual_sha256"].as<std::string>(), *digest);
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_FALSE(steps.empty());
  for (const YAML::Node& step : steps) EXPECT_GT(step["loss_perceptual"].as<double>(), 0.0);

  // The checkpoint records the perceptual network's provenance.
  std::vector<std::string> written = ListCheckpoints(dir + "/run/checkpoints");
  ASSERT_EQ(written.size(), 1u);
  absl::StatusOr<std::string> state = ReadFileToString(written[0] + "/trainer_state.json");
  ASSERT_TRUE(state.ok()) << state.status();
  YAML::Node json = YAML::Load(*state);
  EXPECT_EQ(json["perceptual_path"].as<std::string>(), used);
  EXPECT_EQ(json["perceptual_sha256"].as<std::string>(), *digest);
  EXPECT_THAT(json["perceptual"].as<std::string>(), HasSubstr("pretrain checkpoint"));
}

TEST_F(PerceptualCheckpointTest, ResumeWithAnotherPretrainCheckpointIsRefused) {
  const std::string dir = TempDir("resume");
  const std::string other = dir + "/other_pre";
  TrainRun pre = RunTrain({"pretrain", "--config",
                           WriteConfig(dir, "pre.yaml", TinyPretrainConfig(other, *tokenizer_, 2))},
                          dir + "/pre.log");
  ASSERT_EQ(pre.exit_code, 0) << pre.ErrorMessage();
  const std::string config =
      WriteConfig(dir, "c.yaml", TinyTokenizerConfig(dir + "/run", 3, kPerceptualLoss, 2));
  TrainRun first = RunTrain(
      {"tokenizer", "--config", config, "--set", "loss.perceptual.checkpoint=" + *pretrain_},
      dir + "/first.log");
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();

  TrainRun resumed = RunTrain({"tokenizer", "--config", config, "--resume", dir + "/run", "--set",
                               "train.max_steps=4", "--set", "loss.perceptual.checkpoint=" + other},
                              dir + "/resumed.log");
  EXPECT_EQ(resumed.exit_code, 2);
  EXPECT_THAT(resumed.ErrorMessage(), HasSubstr("loss.perceptual.checkpoint"));
  EXPECT_THAT(resumed.ErrorMessage(), HasSubstr("sha256"));
  EXPECT_TRUE(resumed.Of("step").empty());

  // The same network resumes.
  resumed = RunTrain({"tokenizer", "--config", config, "--resume", dir + "/run", "--set",
                      "train.max_steps=4", "--set", "loss.perceptual.checkpoint=" + *pretrain_},
                     dir + "/same.log");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.ErrorMessage();
}

// A supervised network (the study's positive control): a finetune run's classifier trunk serves
// as the perceptual network, reading images as the run did, and a tokenizer trains on it.
TEST_F(PerceptualCheckpointTest, FinetuneRunsTrunkIsAPerceptualNetwork) {
  const std::string dir = TempDir("finetune");
  const std::string finetune = dir + "/ft";
  const std::string yaml = R"(kind: finetune
seed: 3
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 16, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7}
backbone: {checkpoint: )" + *pretrain_ +
                           R"(}
eval: {split: test, batch_size: 100, max_images: 100}
optim: {lr: 1.0e-3, warmup_steps: 1}
train: {max_steps: 2, log_every: 1, checkpoint_every: 1000, output_dir: )" +
                           finetune + "}\n";
  TrainRun ft =
      RunTrain({"finetune", "--config", WriteConfig(dir, "ft.yaml", yaml)}, dir + "/ft.log");
  ASSERT_EQ(ft.exit_code, 0) << ft.ErrorMessage();

  absl::StatusOr<LoadedEval> loaded = LoadEvalCheckpoint(finetune);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // The pretrain run's ViT view normalisation (0.5 / 0.5), recorded by the finetune run.
  EXPECT_EQ(loaded->input_mean, std::vector<double>({0.5, 0.5, 0.5}));
  PerceptualLossConfig config;
  config.checkpoint = finetune;
  config.blocks = {1, 2};
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = CreatePerceptualLoss(config);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_THAT((*loss)->source(), HasSubstr("finetune checkpoint"));
  // Images in [-1, 1] map to ((x + 1) / 2 - 0.5) / 0.5 = x: the trunk sees them unchanged.
  torch::manual_seed(0);
  torch::Tensor images = torch::rand({2, 3, 16, 16}) * 2 - 1;
  std::vector<torch::Tensor> features = (*loss)->Features(images);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> expected = loaded->model->BlockTokens(images, {1, 2});
  ASSERT_EQ(features.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::allclose(features[i], expected[i], 1e-5, 1e-5)) << "block " << i + 1;
  }

  const std::string config_path =
      WriteConfig(dir, "c.yaml", TinyTokenizerConfig(dir + "/run", 3, kPerceptualLoss, 2));
  TrainRun run = RunTrain(
      {"tokenizer", "--config", config_path, "--set", "loss.perceptual.checkpoint=" + finetune},
      dir + "/tok.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  ASSERT_EQ(run.Of("start").size(), 1u);
  EXPECT_THAT(run.Of("start")[0]["perceptual"].as<std::string>(), HasSubstr("finetune checkpoint"));
}

// loss.perceptual_balance: initial scales the perceptual term to the pixel term on the first
// batch (here with token-normalised features), keeps the factor in the checkpoint and does not
// measure it again on resume.
TEST_F(PerceptualCheckpointTest, BalancedPerceptualTermStartsAtItsWeightTimesThePixelTerm) {
  const std::string dir = TempDir("balance");
  const std::string loss =
      "{perceptual_weight: 0.5, perceptual_balance: initial, perceptual: {blocks: [1, 2], "
      "normalize: token, include_cls_token: false}}";
  const std::string config =
      WriteConfig(dir, "c.yaml", TinyTokenizerConfig(dir + "/run", 3, loss, 2));
  TrainRun first = RunTrain(
      {"tokenizer", "--config", config, "--set", "loss.perceptual.checkpoint=" + *pretrain_,
       "--set", "train.log_every=1", "--set", "eval.enabled=false"},
      dir + "/first.log");
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();
  std::vector<YAML::Node> steps = first.Of("step");
  ASSERT_EQ(steps.size(), 2u);
  const double pixel = steps[0]["loss_pixel"].as<double>();
  EXPECT_NEAR(steps[0]["loss_perceptual"].as<double>(), 0.5 * pixel, 1e-4 * pixel);
  absl::StatusOr<std::string> log = ReadFileToString(dir + "/first.log");  // the human log
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, HasSubstr("perceptual term balanced at step 0"));
  auto balance_of = [](const std::string& run) {
    std::vector<std::string> written = ListCheckpoints(run + "/checkpoints");
    EXPECT_FALSE(written.empty());
    absl::StatusOr<std::string> state = ReadFileToString(written.back() + "/trainer_state.json");
    EXPECT_TRUE(state.ok()) << state.status();
    return state.ok() ? YAML::Load(*state)["perceptual_balance"].as<double>() : 0.0;
  };
  const double balance = balance_of(dir + "/run");
  EXPECT_GT(balance, 0.0);

  TrainRun resumed =
      RunTrain({"tokenizer", "--config", config, "--resume", dir + "/run", "--set",
                "train.max_steps=3", "--set", "loss.perceptual.checkpoint=" + *pretrain_, "--set",
                "train.log_every=1", "--set", "eval.enabled=false"},
               dir + "/resumed.log");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.ErrorMessage();
  log = ReadFileToString(dir + "/resumed.log");
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_THAT(*log, ::testing::Not(HasSubstr("balanced")));
  EXPECT_EQ(balance_of(dir + "/run"), balance);
}

}  // namespace
}  // namespace peco::trainer
