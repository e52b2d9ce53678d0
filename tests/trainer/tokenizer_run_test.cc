// End-to-end tests of `peco-train tokenizer` and `peco-train export` as processes: training on
// real Fashion-MNIST images, step-exact resume after SIGTERM, refusal of bad configurations,
// and the exported file as Python's torch.load sees it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/test_util/subprocess.h"
#include "tests/test_util/train_process.h"
#include "trainer/data/image_codec.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/module_state.h"
#include "trainer/export/tokenizer_export.h"
#include "trainer/models/patch_discriminator.h"
#include "trainer/models/weights.h"
#include "trainer/tasks/preview.h"
#include "trainer/tasks/tokenizer_config.h"
#include "trainer/tasks/tokenizer_task.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;

constexpr char kFashionMnist[] = "/usr/share/datasets/fashion-mnist";

std::string TempDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("peco_run_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// A tiny tokenizer on 16x16 Fashion-MNIST crops, with the perceptual term and (optionally) the
// GAN on, so that every piece of training state takes part.
std::string TinyConfig(const std::string& output_dir, int max_steps, bool gan) {
  std::string yaml = R"(kind: tokenizer
seed: 7
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 8, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7, horizontal_flip: true}
model: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [8], z_channels: 32,
        n_embed: 64, embed_dim: 16}
loss:
  perceptual_weight: 0.1
  perceptual: {seed: 3, blocks: [1, 2],
               extractor: {img_size: 16, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2}}
)";
  if (gan) yaml += "  gan: {enabled: true, disc_start: 3, ndf: 8, n_layers: 2}\n";
  yaml += "optim: {lr: 1.0e-3, warmup_steps: 2, grad_clip: 1.0}\n";
  yaml += "train: {max_steps: " + std::to_string(max_steps) +
          ", log_every: 1, checkpoint_every: 1000, output_dir: " + output_dir + "}\n";
  return yaml;
}

std::string WriteConfig(const std::string& dir, const std::string& yaml) {
  const std::string path = dir + "/config.yaml";
  std::ofstream(path) << yaml;
  return path;
}

using RunResult = ::peco::testing::TrainRun;

RunResult RunTrain(const std::vector<std::string>& args, const std::string& log,
                   int stop_at_step = 0) {
  return ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log, stop_at_step);
}

TEST(TokenizerRunTest, TrainingOnFashionMnistLowersReconstructionLossAndUsesManyCodes) {
  const std::string dir = TempDir("learn");
  std::string yaml = TinyConfig(dir + "/run", 150, /*gan=*/false);
  const std::string config = WriteConfig(dir, yaml);
  RunResult run = RunTrain({"tokenizer", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0);
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_GE(steps.size(), 100u);
  // Mean pixel loss of the first and last ten logged steps.
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += steps[i]["loss_pixel"].as<double>() / 10;
    last += steps[steps.size() - 1 - i]["loss_pixel"].as<double>() / 10;
  }
  EXPECT_LT(last, 0.6 * first) << "first " << first << " last " << last;
  int codes = 0;
  for (size_t i = steps.size() - 10; i < steps.size(); ++i) {
    codes = std::max(codes, steps[i]["codes_used"].as<int>());
  }
  EXPECT_GT(codes, 8) << "codebook collapsed to " << codes << " codes";
  ASSERT_EQ(run.Of("completed").size(), 1u);
  EXPECT_EQ(run.Of("completed")[0]["step"].as<int>(), 150);

  // The held-out evaluation after the last step: the first 1000 test images (the default).
  ASSERT_EQ(run.Of("eval").size(), 1u);
  const YAML::Node eval = run.Of("eval")[0];
  EXPECT_EQ(eval["step"].as<int>(), 150);
  EXPECT_EQ(eval["eval_images"].as<int>(), 1000);
  EXPECT_LT(eval["eval_l1"].as<double>(), 0.6 * first) << "held-out L1 vs the first steps' loss";
  EXPECT_GT(eval["eval_codes_used"].as<int>(), 8);
  EXPECT_GT(eval["eval_perplexity"].as<double>(), 4.0);
  EXPECT_GT(eval["eval_token_agreement"].as<double>(), 0.0);
  EXPECT_LE(eval["eval_token_agreement"].as<double>(), 1.0);
  // Fashion-MNIST's black background: a good share of the 8x8 cells of 2x2 pixels is plain, and
  // the codes that mostly serve it are a part of the codes used.
  EXPECT_GT(eval["eval_plain_positions"].as<double>(), 0.1);
  EXPECT_LT(eval["eval_plain_positions"].as<double>(), 0.9);
  EXPECT_GE(eval["eval_plain_codes"].as<int>(), 1);
  EXPECT_LE(eval["eval_plain_codes"].as<int>(), eval["eval_codes_used"].as<int>());
  EXPECT_NEAR(eval["eval_plain_code_share"].as<double>(),
              eval["eval_plain_codes"].as<double>() / eval["eval_codes_used"].as<double>(), 1e-9);
  ASSERT_EQ(ListCheckpoints(dir + "/run/checkpoints").size(), 1u);

  // preview.png: 8 inputs (16 pixels, enlarged 4x) above their reconstructions.
  auto files = ReadCheckpoint(ListCheckpoints(dir + "/run/checkpoints")[0]);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->count(kPreviewFile), 1u);
  absl::StatusOr<Image> grid = DecodePng(files->at(kPreviewFile), kPreviewFile);
  ASSERT_TRUE(grid.ok()) << grid.status();
  constexpr int kTile = 64, kImages = 8;
  EXPECT_EQ(grid->width, kPreviewGap + kImages * (kTile + kPreviewGap));
  EXPECT_EQ(grid->height, kPreviewGap + 2 * (kTile + kPreviewGap));
  torch::Tensor hwc =
      torch::from_blob(grid->pixels.data(), {grid->height, grid->width, 3}, torch::kUInt8)
          .to(torch::kFloat32);
  auto tile = [&](int row, int column) {
    const int top = kPreviewGap + row * (kTile + kPreviewGap);
    const int left = kPreviewGap + column * (kTile + kPreviewGap);
    return hwc.slice(0, top, top + kTile).slice(1, left, left + kTile);
  };
  // Not blank, and each reconstruction is closer to its own input than to its neighbour's.
  for (int i = 0; i < kImages; ++i) {
    EXPECT_GT(tile(0, i).std().item<double>(), 10.0) << "input " << i << " is blank";
    EXPECT_GT(tile(1, i).std().item<double>(), 10.0) << "reconstruction " << i << " is blank";
    const double own = (tile(1, i) - tile(0, i)).abs().mean().item<double>();
    const double other = (tile(1, i) - tile(0, (i + 1) % kImages)).abs().mean().item<double>();
    EXPECT_LT(own, other) << "reconstruction " << i;
  }
}

// Loads two serialised Adam states over fresh copies of a module and compares every moment.
template <typename MakeModule>
void ExpectSameAdamState(const std::string& a_bytes, const std::string& b_bytes, MakeModule make) {
  auto a_module = make();
  auto b_module = make();
  torch::optim::Adam a(a_module->parameters()), b(b_module->parameters());
  ASSERT_TRUE(DeserializeOptimizer(a_bytes, a).ok());
  ASSERT_TRUE(DeserializeOptimizer(b_bytes, b).ok());
  std::vector<torch::Tensor> a_params = a_module->parameters(), b_params = b_module->parameters();
  ASSERT_EQ(a.state().size(), a_params.size());
  for (size_t i = 0; i < a_params.size(); ++i) {
    auto& sa = static_cast<torch::optim::AdamParamState&>(
        *a.state().at(c10::guts::to_string(a_params[i].unsafeGetTensorImpl())));
    auto& sb = static_cast<torch::optim::AdamParamState&>(
        *b.state().at(c10::guts::to_string(b_params[i].unsafeGetTensorImpl())));
    EXPECT_EQ(sa.step(), sb.step());
    EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg())) << "exp_avg of parameter " << i;
    EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq())) << "exp_avg_sq of parameter " << i;
  }
}

TEST(TokenizerRunTest, ResumeAfterSigtermIsStepExact) {
  const std::string dir = TempDir("resume");
  constexpr int kSteps = 12;
  const std::string straight = WriteConfig(dir, TinyConfig(dir + "/straight", kSteps, true));
  RunResult a = RunTrain({"tokenizer", "--config", straight}, dir + "/a.log");
  ASSERT_EQ(a.exit_code, 0);

  fs::create_directories(dir + "/b");
  const std::string split = WriteConfig(dir + "/b", TinyConfig(dir + "/split", kSteps, true));
  RunResult first_half = RunTrain({"tokenizer", "--config", split}, dir + "/b1.log", kSteps / 2);
  ASSERT_EQ(first_half.exit_code, 0);
  ASSERT_EQ(first_half.Of("stopped").size(), 1u) << "the SIGTERM arrived after training finished";
  const int stopped_at = first_half.Of("stopped")[0]["step"].as<int>();
  ASSERT_LT(stopped_at, kSteps);
  RunResult second_half =
      RunTrain({"tokenizer", "--config", split, "--resume", dir + "/split"}, dir + "/b2.log");
  ASSERT_EQ(second_half.exit_code, 0);
  ASSERT_EQ(second_half.Of("start")[0]["step"].as<int>(), stopped_at);

  auto a_model = LoadTokenizerCheckpoint(dir + "/straight");
  auto b_model = LoadTokenizerCheckpoint(dir + "/split");
  ASSERT_TRUE(a_model.ok()) << a_model.status();
  ASSERT_TRUE(b_model.ok()) << b_model.status();
  EXPECT_EQ(a_model->step, kSteps);
  EXPECT_EQ(b_model->step, kSteps);
  NamedTensors a_state = ModuleState(*a_model->model);
  NamedTensors b_state = ModuleState(*b_model->model);
  ASSERT_EQ(a_state.size(), b_state.size());
  for (size_t i = 0; i < a_state.size(); ++i) {
    EXPECT_TRUE(torch::equal(a_state[i].second, b_state[i].second)) << a_state[i].first;
  }
  // The optimizer moments and discriminator are part of the resumed state too.
  auto a_files = ReadCheckpoint(ListCheckpoints(dir + "/straight/checkpoints").back());
  auto b_files = ReadCheckpoint(ListCheckpoints(dir + "/split/checkpoints").back());
  ASSERT_TRUE(a_files.ok() && b_files.ok());
  ExpectSameAdamState(a_files->at("optimizer.pt"), b_files->at("optimizer.pt"),
                      [&] { return VqTokenizer(a_model->config.model).ptr(); });
  ExpectSameAdamState(a_files->at("disc_optimizer.pt"), b_files->at("disc_optimizer.pt"), [&] {
    return PatchDiscriminator(a_model->config.loss.gan.discriminator, 0).ptr();
  });
  PatchDiscriminator a_disc(a_model->config.loss.gan.discriminator, 0);
  PatchDiscriminator b_disc(a_model->config.loss.gan.discriminator, 0);
  ASSERT_TRUE(DeserializeModule(a_files->at("discriminator.pt"), *a_disc).ok());
  ASSERT_TRUE(DeserializeModule(b_files->at("discriminator.pt"), *b_disc).ok());
  NamedTensors a_d = ModuleState(*a_disc), b_d = ModuleState(*b_disc);
  for (size_t i = 0; i < a_d.size(); ++i) {
    EXPECT_TRUE(torch::equal(a_d[i].second, b_d[i].second)) << "discriminator " << a_d[i].first;
  }
  // Same losses at every step after the resume point.
  std::map<int, double> a_loss;
  for (const auto& e : a.Of("step")) a_loss[e["step"].as<int>()] = e["loss"].as<double>();
  for (const auto& e : second_half.Of("step")) {
    EXPECT_EQ(e["loss"].as<double>(), a_loss[e["step"].as<int>()]) << "step " << e["step"];
  }
}

// TinyConfig's model with the Gumbel-softmax (dVAE) quantizer: temperature 1 -> 1/16 over the
// run, KL weight ramping over its first third.
std::string TinyGumbelConfig(const std::string& output_dir, int max_steps) {
  std::string yaml = TinyConfig(output_dir, max_steps, /*gan=*/false);
  const std::string from = "n_embed: 64, embed_dim: 16}";
  yaml.replace(yaml.find(from), from.size(),
               absl::StrCat("n_embed: 64, embed_dim: 16, quantizer: gumbel,\n        gumbel: "
                            "{temperature_end: 0.0625, temperature_steps: ",
                            max_steps, ", kl_weight: 6.6, kl_warmup_steps: ", max_steps / 3, "}}"));
  return yaml;
}

TEST(TokenizerRunTest, GumbelTokenizerLowersReconstructionLossAndUsesManyCodes) {
  const std::string dir = TempDir("gumbel-learn");
  const std::string config = WriteConfig(dir, TinyGumbelConfig(dir + "/run", 120));
  RunResult run = RunTrain({"tokenizer", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 120u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += steps[i]["loss_pixel"].as<double>() / 10;
    last += steps[steps.size() - 1 - i]["loss_pixel"].as<double>() / 10;
  }
  EXPECT_LT(last, 0.8 * first) << "first " << first << " last " << last;
  int codes = 0;
  for (size_t i = steps.size() - 10; i < steps.size(); ++i) {
    codes = std::max(codes, steps[i]["codes_used"].as<int>());
  }
  EXPECT_GT(codes, 8) << "the dVAE collapsed to " << codes << " codes";
  // The schedules as the step events report them.
  EXPECT_DOUBLE_EQ(steps[0]["temperature"].as<double>(), 1.0);
  EXPECT_DOUBLE_EQ(steps[0]["kl_weight"].as<double>(), 0.0);
  EXPECT_NEAR(steps.back()["temperature"].as<double>(), 0.0625, 1e-3);
  EXPECT_DOUBLE_EQ(steps.back()["kl_weight"].as<double>(), 6.6);
  // The checkpoint holds taming's GumbelQuantize keys and tokenizes.
  absl::StatusOr<LoadedTokenizer> loaded = LoadTokenizerCheckpoint(dir + "/run");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(loaded->config.model.gumbel_kind());
  NamedTensors state = ModuleState(*loaded->model);
  std::set<std::string> names;
  for (const auto& [name, tensor] : state) names.insert(name);
  EXPECT_EQ(names.count("quantize.proj.weight"), 1u);
  EXPECT_EQ(names.count("quantize.embed.weight"), 1u);
  EXPECT_EQ(names.count("quantize.embedding.weight"), 0u);
  loaded->model->eval();
  torch::Tensor tokens = loaded->model->Tokenize(torch::zeros({2, 3, 16, 16}));
  EXPECT_EQ(tokens.sizes(), (std::vector<int64_t>{2, 8, 8}));
  EXPECT_LT(tokens.max().item<int64_t>(), 64);
}

TEST(TokenizerRunTest, GumbelResumeAfterSigtermIsStepExactWithTheSchedules) {
  const std::string dir = TempDir("gumbel-resume");
  constexpr int kSteps = 12;
  const std::string straight = WriteConfig(dir, TinyGumbelConfig(dir + "/straight", kSteps));
  RunResult a = RunTrain({"tokenizer", "--config", straight}, dir + "/a.log");
  ASSERT_EQ(a.exit_code, 0) << a.ErrorMessage();
  fs::create_directories(dir + "/b");
  const std::string split = WriteConfig(dir + "/b", TinyGumbelConfig(dir + "/split", kSteps));
  RunResult first_half = RunTrain({"tokenizer", "--config", split}, dir + "/b1.log", kSteps / 2);
  ASSERT_EQ(first_half.exit_code, 0);
  ASSERT_EQ(first_half.Of("stopped").size(), 1u) << "the SIGTERM arrived after training finished";
  RunResult second_half =
      RunTrain({"tokenizer", "--config", split, "--resume", dir + "/split"}, dir + "/b2.log");
  ASSERT_EQ(second_half.exit_code, 0) << second_half.ErrorMessage();

  auto a_model = LoadTokenizerCheckpoint(dir + "/straight");
  auto b_model = LoadTokenizerCheckpoint(dir + "/split");
  ASSERT_TRUE(a_model.ok() && b_model.ok());
  NamedTensors a_state = ModuleState(*a_model->model);
  NamedTensors b_state = ModuleState(*b_model->model);
  ASSERT_EQ(a_state.size(), b_state.size());
  for (size_t i = 0; i < a_state.size(); ++i) {
    EXPECT_TRUE(torch::equal(a_state[i].second, b_state[i].second)) << a_state[i].first;
  }
  // Same losses, temperatures and KL weights at every step after the resume point.
  std::map<int, YAML::Node> a_steps;
  for (const auto& e : a.Of("step")) a_steps[e["step"].as<int>()] = e;
  ASSERT_FALSE(second_half.Of("step").empty());
  for (const auto& e : second_half.Of("step")) {
    const YAML::Node& same = a_steps[e["step"].as<int>()];
    EXPECT_EQ(e["loss"].as<double>(), same["loss"].as<double>()) << "step " << e["step"];
    EXPECT_EQ(e["temperature"].as<double>(), same["temperature"].as<double>());
    EXPECT_EQ(e["kl_weight"].as<double>(), same["kl_weight"].as<double>());
  }
}

TEST(TokenizerRunTest, ATokenizerWithAnUnknownQuantizerIsRefusedNamingIt) {
  const std::string dir = TempDir("unknown-quantizer");
  std::string yaml = TinyConfig(dir + "/run", 2, /*gan=*/false);
  RunResult run = RunTrain({"tokenizer", "--config", WriteConfig(dir, yaml)}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  // The same checkpoint as a newer peco might write it, with a quantizer this one does not know.
  absl::StatusOr<CheckpointFiles> files =
      ReadCheckpoint(ListCheckpoints(dir + "/run/checkpoints")[0]);
  ASSERT_TRUE(files.ok()) << files.status();
  const std::string from = "n_embed: 64, embed_dim: 16}";
  yaml.replace(yaml.find(from), from.size(), "n_embed: 64, embed_dim: 16, quantizer: lfq}");
  (*files)["config.yaml"] = yaml;
  absl::StatusOr<std::string> written = WriteCheckpoint(dir + "/newer/checkpoints", 2, *files);
  ASSERT_TRUE(written.ok()) << written.status();
  absl::Status status = LoadTokenizerCheckpoint(dir + "/newer").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("model.quantizer"));
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("lfq"));
}

TEST(TokenizerRunTest, Bf16AutocastTrainsWithTheGanAndPerceptualTerms) {
  const std::string dir = TempDir("bf16");
  std::string yaml = TinyConfig(dir + "/run", 4, /*gan=*/true);
  yaml.replace(yaml.find("log_every"), 0, "precision: bf16, ");
  RunResult run = RunTrain({"tokenizer", "--config", WriteConfig(dir, yaml)}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.Of("start")[0]["precision"].as<std::string>(), "bf16");
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 4u);
  for (const YAML::Node& step : steps) {
    // Non-finite values are written as null, which would not parse as a double.
    EXPECT_GT(step["loss"].as<double>(), 0.0);
    EXPECT_GT(step["loss_perceptual"].as<double>(), 0.0);
  }
  EXPECT_NE(steps.back()["loss_discriminator"].as<double>(), 0.0);
}

TEST(TokenizerRunTest, FreshRunRefusesAnOutputDirWithCheckpoints) {
  const std::string dir = TempDir("refuse");
  const std::string config = WriteConfig(dir, TinyConfig(dir + "/run", 2, false));
  ASSERT_EQ(RunTrain({"tokenizer", "--config", config}, dir + "/1.log").exit_code, 0);
  RunResult again = RunTrain({"tokenizer", "--config", config}, dir + "/2.log");
  EXPECT_NE(again.exit_code, 0);
  ASSERT_EQ(again.Of("error").size(), 1u);
  EXPECT_NE(again.Of("error")[0]["message"].as<std::string>().find("train.output_dir"),
            std::string::npos);
}

TEST(TokenizerRunTest, BadConfigStopsBeforeTrainingNamingTheField) {
  const std::string dir = TempDir("bad");
  std::string yaml = TinyConfig(dir + "/run", 2, false);
  yaml.replace(yaml.find("n_embed"), 7, "n_embedd");
  const std::string config = WriteConfig(dir, yaml);
  RunResult run = RunTrain({"tokenizer", "--config", config}, dir + "/stderr.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.Of("start").empty());
  ASSERT_EQ(run.Of("error").size(), 1u);
  EXPECT_NE(run.Of("error")[0]["message"].as<std::string>().find("model.n_embedd: unknown field"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(dir + "/run/checkpoints"));
}

// Started by a worker with --allowed_roots, a job reads only under them, judged on the resolved
// path: a symlink under a root that leads out of it is refused before training (exit 2, the
// field named), and an allowed job runs on the resolved path (its effective config says so).
TEST(TokenizerRunTest, AllowedRootsConfineTheJobToResolvedPaths) {
  const std::string dir = TempDir("roots");
  fs::create_directories(dir + "/root");
  fs::create_directory_symlink(kFashionMnist, dir + "/root/fmnist");
  std::string yaml = TinyConfig(dir + "/run", 1, false);
  yaml.replace(yaml.find(kFashionMnist), std::strlen(kFashionMnist), dir + "/root/fmnist");
  const std::string config = WriteConfig(dir, yaml);

  RunResult escaped = RunTrain({"tokenizer", "--config", config, "--allowed_roots", dir + "/root"},
                               dir + "/escaped.log");
  EXPECT_EQ(escaped.exit_code, 2);
  EXPECT_TRUE(escaped.Of("start").empty());
  ASSERT_EQ(escaped.Of("error").size(), 1u);
  const std::string message = escaped.Of("error")[0]["message"].as<std::string>();
  EXPECT_NE(message.find("data.path"), std::string::npos) << message;
  EXPECT_NE(message.find("outside the allowed roots"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir + "/run/checkpoints"));

  RunResult allowed = RunTrain({"tokenizer", "--config", config, "--allowed_roots",
                                "/nonexistent," + std::string(kFashionMnist)},
                               dir + "/allowed.log");
  ASSERT_EQ(allowed.exit_code, 0) << allowed.ErrorMessage();
  std::vector<std::string> checkpoints = ListCheckpoints(dir + "/run/checkpoints");
  ASSERT_EQ(checkpoints.size(), 1u);
  std::ifstream in(fs::path(checkpoints[0]) / kConfigFile);
  const std::string effective((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
  EXPECT_NE(effective.find(std::string("path: ") + kFashionMnist), std::string::npos) << effective;
  EXPECT_EQ(effective.find("root/fmnist"), std::string::npos) << effective;
}

TEST(TokenizerRunTest, ExportedCheckpointLoadsInPythonWithTheModelsKeys) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "needs Debian's python3-torch";
  const std::string dir = TempDir("export");
  const std::string config = WriteConfig(dir, TinyConfig(dir + "/run", 2, false));
  ASSERT_EQ(RunTrain({"tokenizer", "--config", config}, dir + "/train.log").exit_code, 0);
  const std::string out = dir + "/tokenizer.pt";
  RunResult exported =
      RunTrain({"export", "--checkpoint", dir + "/run", "--out", out}, dir + "/export.log");
  ASSERT_EQ(exported.exit_code, 0);
  auto loaded = LoadTokenizerCheckpoint(dir + "/run");
  ASSERT_TRUE(loaded.ok());
  // Expected names, shapes and a checksum of every tensor, for Python to compare.
  std::ofstream expected(dir + "/expected.txt");
  for (const auto& item : loaded->model->named_parameters()) {
    expected << item.key() << " " << item.value().sum().item<double>() << " "
             << item.value().numel() << "\n";
  }
  expected.close();
  const std::string script =
      "import sys, torch\n"
      "sd = torch.load(sys.argv[1])['state_dict']\n"
      "want = [l.split() for l in open(sys.argv[2])]\n"
      "assert list(sd.keys()) == [w[0] for w in want], 'key order differs'\n"
      "for name, total, numel in want:\n"
      "    t = sd[name]\n"
      "    assert t.numel() == int(numel), name\n"
      "    assert abs(t.double().sum().item() - float(total)) <= 1e-3 * max(1.0, "
      "abs(float(total))), name\n"
      "print('ok', len(sd))\n";
  std::ofstream(dir + "/check.py") << script;
  const std::string command = "/usr/bin/python3 " + dir + "/check.py " + out + " " + dir +
                              "/expected.txt > " + dir + "/python.log 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "see " << dir << "/python.log";
}

TEST(TokenizerRunTest, PaperPresetExportHasTheOfficialKeysAndShapes) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "needs Debian's python3-torch";
  torch::set_num_threads(2);
  auto config = LoadTokenizerConfig(std::string(PECO_SOURCE_DIR) + "/configs/tokenizer_paper.yaml");
  if (!config.ok()) {
    // The preset names an ImageNet folder that this machine may not have: parse without paths.
    std::ifstream in(std::string(PECO_SOURCE_DIR) + "/configs/tokenizer_paper.yaml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    config = ParseTokenizerConfig(text, "tokenizer_paper.yaml", /*check_paths=*/false);
  }
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string dir = TempDir("paper");
  VqTokenizer model(config->model);
  ASSERT_TRUE(ExportTokenizer(model, dir + "/paper.pt").ok());
  const std::string script =
      "import sys, torch\n"
      "sd = torch.load(sys.argv[1])['state_dict']\n"
      "got = [f'{k} {list(v.shape)}' for k, v in sd.items()]\n"
      "want = [l.strip() for l in open(sys.argv[2]) if l.strip()]\n"
      "assert sorted(got) == sorted(want), set(got) ^ set(want)\n"
      "print('ok', len(got))\n";
  std::ofstream(dir + "/check.py") << script;
  const std::string command = "/usr/bin/python3 " + dir + "/check.py " + dir + "/paper.pt " +
                              PECO_REFERENCE_DIR + "/spec/keys/vqgan_f16_8192_224.txt > " + dir +
                              "/python.log 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "see " << dir << "/python.log";
  fs::remove(dir + "/paper.pt");
}

// Dead-code restarts happen only inside their window: with codes dead after one unused step,
// the count grows during the first steps and stays fixed from model.dead_code_until_step on,
// also across a resume.
TEST(TokenizerRunTest, DeadCodeRestartsStopAtTheEndOfTheirWindow) {
  const std::string dir = TempDir("restart_window");
  std::string yaml = TinyConfig(dir + "/run", 6, /*gan=*/false);
  const std::string from = "n_embed: 64, embed_dim: 16}";
  yaml.replace(yaml.find(from), from.size(),
               "n_embed: 64, embed_dim: 16, dead_code_steps: 1, dead_code_until_step: 3}");
  const std::string config = WriteConfig(dir, yaml + "eval: {enabled: false}\n");
  RunResult run = RunTrain({"tokenizer", "--config", config, "--set", "train.max_steps=4", "--set",
                            "train.checkpoint_every=4"},
                           dir + "/first.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 4u);
  // The initial codebook (uniform in +-1/K) leaves most codes unused in the first step.
  const int64_t after_first = steps[0]["codes_restarted"].as<int64_t>();
  EXPECT_GT(after_first, 0);
  const int64_t at_window_end = steps[2]["codes_restarted"].as<int64_t>();
  EXPECT_GE(at_window_end, after_first);
  EXPECT_EQ(steps[3]["codes_restarted"].as<int64_t>(), at_window_end);
  RunResult resumed =
      RunTrain({"tokenizer", "--config", config, "--resume", dir + "/run"}, dir + "/resumed.log");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.ErrorMessage();
  ASSERT_EQ(resumed.Of("step").size(), 2u);
  for (const YAML::Node& step : resumed.Of("step")) {
    EXPECT_EQ(step["codes_restarted"].as<int64_t>(), at_window_end);
  }
}

// --- Data parallel ------------------------------------------------------------------------------

// A port for the two-rank groups of this test process.
int TestPort(int offset) { return 27000 + (::getpid() % 1000) * 4 + offset; }

// The tiny tokenizer with every term that couples samples or ranks on: the perceptual loss, the
// GAN past disc_start (adaptive weight, discriminator BatchNorm), and for vq dead-code restarts
// after one unused step; `batch` images per rank, one data-loading thread.
std::string DataParallelConfig(const std::string& output_dir, int max_steps, int batch,
                               bool gumbel) {
  std::string yaml = gumbel ? TinyGumbelConfig(output_dir, max_steps)
                            : TinyConfig(output_dir, max_steps, /*gan=*/false);
  if (!gumbel) {
    const std::string from = "n_embed: 64, embed_dim: 16}";
    yaml.replace(yaml.find(from), from.size(), "n_embed: 64, embed_dim: 16, dead_code_steps: 1}");
  }
  const std::string optim = "optim:";
  yaml.replace(yaml.find(optim), optim.size(),
               "  gan: {enabled: true, disc_start: 1, ndf: 8, n_layers: 2}\noptim:");
  const std::string data = "batch_size: 8, num_workers: 2";
  yaml.replace(yaml.find(data), data.size(),
               absl::StrCat("batch_size: ", batch, ", num_workers: 1"));
  // Adam divides each gradient by its own running magnitude, so a parameter whose true gradient
  // is zero (a convolution bias before GroupNorm) moves by +-lr on float rounding noise, which
  // differs between one batch of 2b and two of b. An eps far above that noise (and far below the
  // real gradients) keeps such parameters still in both runs, so the comparison measures the
  // data-parallel arithmetic rather than the noise.
  const std::string adam = "optim: {lr: 1.0e-3,";
  yaml.replace(yaml.find(adam), adam.size(), "optim: {eps: 1.0e-4, lr: 1.0e-3,");
  return yaml + "eval: {max_images: 24, batch_size: 8}\n";
}

// The discriminator of a tokenizer checkpoint directory.
NamedTensors DiscriminatorState(const LoadedTokenizer& loaded) {
  auto files = ReadCheckpoint(loaded.checkpoint_dir);
  EXPECT_TRUE(files.ok()) << files.status();
  PatchDiscriminator disc(loaded.config.loss.gan.discriminator, 0);
  if (files.ok()) EXPECT_TRUE(DeserializeModule(files->at("discriminator.pt"), *disc).ok());
  return ModuleState(*disc);
}

void ExpectClose(const NamedTensors& a, const NamedTensors& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a[i].second.to(torch::kFloat64), b[i].second.to(torch::kFloat64),
                                1e-4, 1e-4))
        << what << " " << a[i].first << ": max difference "
        << (a[i].second.to(torch::kFloat64) - b[i].second.to(torch::kFloat64)).abs().max();
  }
}

class TokenizerDataParallelTest : public ::testing::TestWithParam<bool> {};

// 2 ranks x batch 4 train the same tokenizer as 1 rank x batch 8 (weights, discriminator and
// the logged losses and code usage after 3 steps), rank 0 alone writes the one checkpoint
// series, and the held-out evaluation, split over the ranks, counts every image once.
TEST_P(TokenizerDataParallelTest, TwoRanksTrainOneModelAsOneRankWithTheDoubleBatch) {
  const bool gumbel = GetParam();
  const std::string dir = TempDir(gumbel ? "ddp_gumbel" : "ddp_vq");
  constexpr int kSteps = 3;
  fs::create_directories(dir + "/two");
  const std::string one_config =
      WriteConfig(dir, DataParallelConfig(dir + "/one", kSteps, 8, gumbel));
  RunResult one =
      RunTrain({"tokenizer", "--config", one_config, "--set", "threads=1"}, dir + "/one.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();
  const std::string two_config =
      WriteConfig(dir + "/two", DataParallelConfig(dir + "/two/run", kSteps, 4, gumbel));
  std::vector<RunResult> two = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"tokenizer", "--config", two_config}, dir + "/rank", TestPort(0));
  ASSERT_EQ(two[0].exit_code, 0) << two[0].ErrorMessage();
  ASSERT_EQ(two[1].exit_code, 0) << two[1].ErrorMessage();
  EXPECT_EQ(two[1].Of("start")[0]["world_size"].as<int>(), 2);

  auto a = LoadTokenizerCheckpoint(dir + "/one");
  auto b = LoadTokenizerCheckpoint(dir + "/two/run");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ExpectClose(ModuleState(*a->model), ModuleState(*b->model), "tokenizer");
  ExpectClose(DiscriminatorState(*a), DiscriminatorState(*b), "discriminator");
  // Each rank logs the global batch's statistics.
  ASSERT_EQ(one.Of("step").size(), static_cast<size_t>(kSteps));
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_EQ(two[rank].Of("step").size(), static_cast<size_t>(kSteps));
    for (int i = 0; i < kSteps; ++i) {
      const YAML::Node x = one.Of("step")[i], y = two[rank].Of("step")[i];
      EXPECT_NEAR(x["loss"].as<double>(), y["loss"].as<double>(), 1e-4) << "step " << i + 1;
      EXPECT_EQ(x["codes_used"].as<int>(), y["codes_used"].as<int>()) << "step " << i + 1;
      EXPECT_GT(y["loss_discriminator"].as<double>() + (i == 0 ? 1.0 : 0.0), 0.0);
    }
  }
  // One checkpoint series, written by rank 0; rank 1 names none.
  EXPECT_EQ(ListCheckpoints(dir + "/two/run/checkpoints").size(), 1u);
  EXPECT_EQ(two[0].Of("checkpoint").size(), 1u);
  EXPECT_TRUE(two[1].Of("checkpoint").empty());
  EXPECT_EQ(two[1].Of("completed")[0]["checkpoint"].as<std::string>(), "");
  const YAML::Node eval_one = one.Of("eval")[0], eval_two = two[0].Of("eval")[0];
  EXPECT_EQ(eval_two["eval_images"].as<int>(), 24);
  EXPECT_NEAR(eval_one["eval_l1"].as<double>(), eval_two["eval_l1"].as<double>(), 1e-4);
  EXPECT_EQ(eval_one["eval_codes_used"].as<int>(), eval_two["eval_codes_used"].as<int>());
}

INSTANTIATE_TEST_SUITE_P(Quantizers, TokenizerDataParallelTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Gumbel" : "Vq";
                         });

// A two-rank run stopped by SIGTERM to rank 1 alone stops both ranks after the same step; both
// resumed with --resume end with rank 0's checkpoint bitwise equal to an uninterrupted two-rank
// run's; resuming with another world size is refused naming it.
TEST(TokenizerRunTest, TwoRankResumeAfterSigtermIsStepExact) {
  const std::string dir = TempDir("ddp_resume");
  constexpr int kSteps = 6;
  fs::create_directories(dir + "/split");
  const std::string straight =
      WriteConfig(dir, DataParallelConfig(dir + "/straight", kSteps, 4, /*gumbel=*/false));
  std::vector<RunResult> a = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"tokenizer", "--config", straight}, dir + "/a", TestPort(1));
  ASSERT_EQ(a[0].exit_code, 0) << a[0].ErrorMessage();
  const std::string split =
      WriteConfig(dir + "/split", DataParallelConfig(dir + "/split/run", kSteps, 4, false));
  std::vector<RunResult> first = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"tokenizer", "--config", split}, dir + "/b", TestPort(2),
      /*world_size=*/2, /*stop_rank=*/1, /*stop_at_step=*/2);
  ASSERT_EQ(first[0].exit_code, 0) << first[0].ErrorMessage();
  ASSERT_EQ(first[1].exit_code, 0) << first[1].ErrorMessage();
  ASSERT_EQ(first[0].Of("stopped").size(), 1u) << "rank 0 stopped because rank 1 was asked to";
  const int stopped_at = first[0].Of("stopped")[0]["step"].as<int>();
  EXPECT_EQ(first[1].Of("stopped")[0]["step"].as<int>(), stopped_at);
  ASSERT_LT(stopped_at, kSteps);

  RunResult other_world = RunTrain(
      {"tokenizer", "--config", split, "--resume", dir + "/split/run", "--set", "threads=1"},
      dir + "/one_rank.log");
  EXPECT_EQ(other_world.exit_code, 2);
  EXPECT_THAT(other_world.ErrorMessage(), ::testing::HasSubstr("world size"));

  std::vector<RunResult> second = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"tokenizer", "--config", split, "--resume", dir + "/split/run"},
      dir + "/c", TestPort(3));
  ASSERT_EQ(second[0].exit_code, 0) << second[0].ErrorMessage();
  ASSERT_EQ(second[1].exit_code, 0) << second[1].ErrorMessage();
  EXPECT_EQ(second[1].Of("start")[0]["step"].as<int>(), stopped_at);

  auto x = LoadTokenizerCheckpoint(dir + "/straight");
  auto y = LoadTokenizerCheckpoint(dir + "/split/run");
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->step, kSteps);
  NamedTensors x_state = ModuleState(*x->model), y_state = ModuleState(*y->model);
  ASSERT_EQ(x_state.size(), y_state.size());
  for (size_t i = 0; i < x_state.size(); ++i) {
    EXPECT_TRUE(torch::equal(x_state[i].second, y_state[i].second)) << x_state[i].first;
  }
  NamedTensors x_disc = DiscriminatorState(*x), y_disc = DiscriminatorState(*y);
  for (size_t i = 0; i < x_disc.size(); ++i) {
    EXPECT_TRUE(torch::equal(x_disc[i].second, y_disc[i].second)) << x_disc[i].first;
  }
}

// A checkpoint written before tokenizers trained data-parallel has no world_size in its
// trainer_state.json: it reads as one rank's, resumes with one rank, and is refused with two.
TEST(TokenizerRunTest, CheckpointsWithoutAWorldSizeResumeAsOneRank) {
  const std::string dir = TempDir("old_state");
  const std::string config =
      WriteConfig(dir, TinyConfig(dir + "/run", 2, /*gan=*/false) + "eval: {enabled: false}\n");
  ASSERT_EQ(RunTrain({"tokenizer", "--config", config}, dir + "/a.log").exit_code, 0);
  auto files = ReadCheckpoint(ListCheckpoints(dir + "/run/checkpoints").back());
  ASSERT_TRUE(files.ok()) << files.status();
  std::string& state = files->at("trainer_state.json");
  ASSERT_NE(state.find("\"world_size\":1,"), std::string::npos) << state;
  state = absl::StrReplaceAll(state, {{"\"world_size\":1,", ""}});
  ASSERT_TRUE(WriteCheckpoint(dir + "/old/checkpoints", 2, *files).ok());

  const std::string longer =
      WriteConfig(dir, TinyConfig(dir + "/old", 3, /*gan=*/false) + "eval: {enabled: false}\n");
  std::vector<RunResult> two = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"tokenizer", "--config", longer, "--resume", dir + "/old"}, dir + "/two",
      TestPort(0));
  EXPECT_EQ(two[0].exit_code, 2);
  EXPECT_THAT(two[0].ErrorMessage(), ::testing::HasSubstr("was written by a run of 1 ranks"));
  RunResult one =
      RunTrain({"tokenizer", "--config", longer, "--resume", dir + "/old"}, dir + "/b.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();
  EXPECT_EQ(one.Of("start")[0]["step"].as<int>(), 2);
  EXPECT_EQ(one.Of("completed")[0]["step"].as<int>(), 3);
}

}  // namespace
}  // namespace peco::trainer
