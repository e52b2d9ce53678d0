// The contrastive (MoCo v3) job: its configuration's refusals (in process), and `peco-train
// contrastive` as processes on Fashion-MNIST: the k-NN monitor rises above the initialisation's,
// two ranks x batch b train exactly as one rank x batch 2b, resume is step-exact, a resumed
// checkpoint of another projector is refused, and the export has MoCo v3's release names (read
// by Python's torch.load); the export and the run both serve as a tokenizer's perceptual network.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "tests/test_util/tiny_jobs.h"
#include "tests/test_util/train_process.h"
#include "trainer/losses/timm_vit_extractor.h"
#include "trainer/tasks/contrastive_config.h"
#include "trainer/tasks/contrastive_task.h"
#include "trainer/tasks/perceptual_network.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::TrainRun;
using ::peco::testing::WriteConfig;

std::string TempDir(const std::string& name) {
  return ::peco::testing::TempDir("peco_contrastive_test", name);
}

TrainRun RunTrain(const std::vector<std::string>& args, const std::string& log,
                  int stop_at_step = 0) {
  return ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log, stop_at_step);
}

// A tiny MoCo v3 on 32x32 Fashion-MNIST crops: patch 8 (4x4 patches), 32 wide, 2 blocks, heads
// 64 -> 16; the k-NN monitor reads `train_images` training images against the first
// `test_images` test images.
std::string TinyConfig(const std::string& output_dir, int max_steps, int batch_size = 32,
                       const std::string& extra = "", int train_images = 1000,
                       int test_images = 500) {
  return R"(kind: contrastive
seed: 3
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 32,
       batch_size: )" +
         std::to_string(batch_size) + R"(, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.3, saturation: 0, hue: 0, grayscale_probability: 0, blur_sigma_max: 0.5}
model: {preset: vit_small_fashion_mnist, img_size: 32, patch_size: 8, embed_dim: 32, depth: 2,
        num_heads: 2, dim: 16, mlp_dim: 64}
optim: {lr: 1.0e-2, warmup_steps: 5}
eval: {max_images: )" +
         std::to_string(test_images) + ", train_images: " + std::to_string(train_images) +
         R"(, batch_size: 250}
train: {max_steps: )" +
         std::to_string(max_steps) +
         ", precision: fp32, log_every: 1, checkpoint_every: 1000, output_dir: " + output_dir +
         "}\n" + extra;
}

absl::StatusOr<ContrastiveJobConfig> Parse(const std::string& yaml) {
  return ParseContrastiveConfig(yaml, "test.yaml", /*check_paths=*/false);
}

void ExpectRefused(const std::string& yaml, const std::string& field) {
  absl::StatusOr<ContrastiveJobConfig> config = Parse(yaml);
  ASSERT_FALSE(config.ok()) << "accepted with " << field;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find(field), std::string::npos) << config.status();
}

TEST(ContrastiveConfigTest, DefaultsAreMocoV3sRecipe) {
  absl::StatusOr<ContrastiveJobConfig> config = Parse("kind: contrastive\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->moco.temperature, 0.2);
  EXPECT_EQ(config->moco.momentum, 0.99);
  EXPECT_EQ(config->moco.batch_norm, "sync");
  EXPECT_EQ(config->optim.weight_decay, 0.1);
  EXPECT_TRUE(config->optim.scale_lr_by_batch);
  EXPECT_TRUE(config->model.stop_grad_conv1);
  // BYOL's asymmetric views.
  EXPECT_EQ(config->view1().blur_probability, 1.0);
  EXPECT_EQ(config->view1().solarize_probability, 0.0);
  EXPECT_EQ(config->view2().blur_probability, 0.1);
  EXPECT_EQ(config->view2().solarize_probability, 0.2);
  EXPECT_EQ(config->view1().scale_min, 0.08);
  EXPECT_EQ(config->view2().jitter_probability, 0.8);
  EXPECT_EQ(config->view2().grayscale_probability, 0.2);
  // The monitor reads the whole image, no augmentation.
  const TransformOptions& eval = config->eval_data.loader.transform;
  EXPECT_FALSE(eval.random_crop);
  EXPECT_EQ(eval.blur_probability, 0);
  EXPECT_EQ(eval.brightness, 0);
  // The momentum rises from m to 1 on a half cosine.
  EXPECT_DOUBLE_EQ(config->moco.MomentumAt(0, 100), 0.99);
  EXPECT_NEAR(config->moco.MomentumAt(50, 100), 0.995, 1e-12);
  EXPECT_DOUBLE_EQ(config->moco.MomentumAt(100, 100), 1.0);
}

TEST(ContrastiveConfigTest, ViewOverridesApplyToTheirViewOnly) {
  absl::StatusOr<ContrastiveJobConfig> config =
      Parse("kind: contrastive\ntransform: {scale_min: 0.5, view2: {solarize_probability: 0.7}}\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->view1().scale_min, 0.5);
  EXPECT_EQ(config->view2().scale_min, 0.5);
  EXPECT_EQ(config->view1().solarize_probability, 0.0);
  EXPECT_EQ(config->view2().solarize_probability, 0.7);
}

TEST(ContrastiveConfigTest, PresetsParseToTheirRecipes) {
  for (const char* name : {"contrastive_small.yaml", "contrastive_paper.yaml"}) {
    absl::StatusOr<std::string> text =
        ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/" + name);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_TRUE(Parse(*text).ok()) << name << ": " << Parse(*text).status();
  }
  absl::StatusOr<ContrastiveJobConfig> paper =
      Parse(*ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/contrastive_paper.yaml"));
  ASSERT_TRUE(paper.ok());
  // ViT-B/16 at 224 with MoCo v3's heads, 300 epochs of ImageNet at a global batch of 4096.
  EXPECT_EQ(paper->model.vit.embed_dim, 768);
  EXPECT_EQ(paper->model.vit.depth, 12);
  EXPECT_EQ(paper->model.vit.patch_size, 16);
  EXPECT_EQ(paper->model.vit.img_size, 224);
  EXPECT_EQ(paper->model.mlp_dim, 4096);
  EXPECT_EQ(paper->model.dim, 256);
  EXPECT_EQ(paper->view1().blur_sigma_max, 2.0);
  EXPECT_EQ(paper->view2().grayscale_probability, 0.2);
  EXPECT_NEAR(paper->train.max_steps * 4096.0 / 1281167, 300, 0.5);
  EXPECT_NEAR(paper->optim.schedule.warmup_steps * 4096.0 / 1281167, 40, 0.5);
  EXPECT_EQ(paper->eval.crop_fraction, 0.875);
}

TEST(ContrastiveConfigTest, BadInputIsRefusedNamingTheField) {
  ExpectRefused("kind: contrastive\nmoco: {temperature: 0}\n", "moco.temperature");
  ExpectRefused("kind: contrastive\nmoco: {temperature: -0.1}\n", "moco.temperature");
  ExpectRefused("kind: contrastive\nmoco: {momentum: 1.5}\n", "moco.momentum");
  ExpectRefused("kind: contrastive\nmoco: {momentum: -0.1}\n", "moco.momentum");
  ExpectRefused("kind: contrastive\nmoco: {batch_norm: global}\n", "moco.batch_norm");
  ExpectRefused("kind: contrastive\ndata: {batch_size: 1}\n", "data.batch_size");
  // Views the ViT cannot take.
  ExpectRefused("kind: contrastive\ndata: {image_size: 48}\n", "model.img_size");
  ExpectRefused("kind: contrastive\nmodel: {patch_size: 5}\n", "model.patch_size");
  ExpectRefused("kind: contrastive\ntransform: {view2: {solarize_probability: 2}}\n",
                "transform.view2.solarize_probability");
  ExpectRefused("kind: contrastive\ntransform: {hue: 0.7}\n", "transform.view1.hue");
  ExpectRefused("kind: contrastive\ntransform: {view1: {nonsense: 1}}\n",
                "transform.view1.nonsense");
  ExpectRefused("kind: contrastive\nmodel: {dim: 0}\n", "model.dim");
  ExpectRefused("kind: contrastive\neval: {train_images: 10, knn: {k: 20}}\n", "eval.knn.k");
  ExpectRefused("kind: contrastive\neval: {crop_fraction: 1.5}\n", "eval.crop_fraction");
  ExpectRefused("kind: contrastive\noptim: {lr: 0}\n", "optim.lr");
}

TEST(ContrastiveRunTest, ShortRunRaisesTheKnnReadoutAboveTheInitialisation) {
  const std::string dir = TempDir("knn");
  TrainRun run =
      RunTrain({"contrastive", "--config",
                WriteConfig(dir, "c.yaml", TinyConfig(dir + "/run", 150, 64, "", 3000, 1000))},
               dir + "/run.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  std::vector<YAML::Node> evals = run.Of("eval");
  ASSERT_EQ(evals.size(), 2u);  // at the start and at the end
  EXPECT_EQ(evals[0]["step"].as<int>(), 0);
  EXPECT_EQ(evals[1]["step"].as<int>(), 150);
  EXPECT_EQ(evals[1]["eval_images"].as<int>(), 1000);
  EXPECT_EQ(evals[1]["eval_train_images"].as<int>(), 3000);
  const double before = evals[0]["eval_knn_top1"].as<double>();
  const double after = evals[1]["eval_knn_top1"].as<double>();
  EXPECT_GT(after, before + 2.0) << "k-NN top-1 " << before << "% at initialisation";
  EXPECT_EQ(evals[1]["eval_top1"].as<double>(), after);
  // The loss of the first steps is above the loss of the last.
  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 150u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) first += steps[i]["loss"].as<double>();
  for (int i = 140; i < 150; ++i) last += steps[i]["loss"].as<double>();
  EXPECT_LT(last, first);
  EXPECT_GT(steps[149]["momentum"].as<double>(), steps[0]["momentum"].as<double>());
  EXPECT_GT(steps[0]["grad_norm"].as<double>(), 0.0) << "measured even without clipping";
  EXPECT_EQ(run.Of("completed")[0]["eval_knn_top1"].as<double>(), after);
}

// The elements of `name` whose gradient is zero in exact arithmetic: the key third of every qkv
// bias (the softmax ignores a shift of all keys) and the final norm's bias (the projector's first
// BatchNorm removes any constant). AdamW's first steps move a weight by about lr whatever the
// gradient's size, so there two computations that round differently part by up to lr a step.
torch::Tensor NoiseGradientElements(const std::string& name, const torch::Tensor& value) {
  torch::Tensor mask = torch::zeros_like(value, torch::kBool);
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (ends_with("attn.qkv.bias")) {
    const int64_t width = value.size(0) / 3;
    mask.slice(0, width, 2 * width).fill_(true);
  }
  if (ends_with("encoder.norm.bias")) mask.fill_(true);
  return mask;
}

// Every parameter and buffer of two checkpoints' models agree within `tolerance`, except where
// the gradient is rounding noise: there within `noise_bound`.
void ExpectSameModel(const std::string& a_dir, const std::string& b_dir, double tolerance,
                     double noise_bound = 0) {
  absl::StatusOr<LoadedContrastive> a = LoadContrastiveCheckpoint(a_dir);
  absl::StatusOr<LoadedContrastive> b = LoadContrastiveCheckpoint(b_dir);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->step, b->step);
  auto b_params = b->model->named_parameters();
  for (const auto& item : a->model->named_parameters()) {
    const torch::Tensor& other = b_params[item.key()];
    const torch::Tensor diff = (item.value() - other).abs();
    const torch::Tensor noise = NoiseGradientElements(item.key(), item.value());
    const torch::Tensor bound = torch::where(noise, torch::full_like(diff, noise_bound),
                                             tolerance + tolerance * other.abs());
    EXPECT_TRUE((diff <= bound).all().item<bool>())
        << item.key() << " max diff " << diff.max().item<double>();
  }
  auto b_buffers = b->model->named_buffers();
  for (const auto& item : a->model->named_buffers()) {
    const torch::Tensor& other = b_buffers[item.key()];
    EXPECT_TRUE(torch::allclose(item.value().to(torch::kFloat64), other.to(torch::kFloat64),
                                tolerance, tolerance))
        << item.key();
  }
}

TEST(ContrastiveRunTest, TwoRanksOfBatchBTrainAsOneRankOfBatch2B) {
  const std::string dir = TempDir("ddp");
  TrainRun one = RunTrain(
      {"contrastive", "--config", WriteConfig(dir, "one.yaml", TinyConfig(dir + "/one", 3, 16)),
       "--set", "eval.enabled=false", "--set", "threads=1"},
      dir + "/one.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();
  const std::string two = WriteConfig(dir, "two.yaml", TinyConfig(dir + "/two", 3, 8));
  std::vector<TrainRun> ranks = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"contrastive", "--config", two, "--set", "eval.enabled=false"},
      dir + "/rank", 29000 + (::getpid() + 311) % 2000);
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].exit_code, 0) << "rank " << r << ": " << ranks[r].ErrorMessage();
  }
  // Same losses (every rank logs the global mean) and the same model after 3 steps: the gathered
  // keys and the synchronised BatchNorm make it one computation.
  for (int s = 0; s < 3; ++s) {
    EXPECT_NEAR(ranks[0].Of("step")[s]["loss"].as<double>(), one.Of("step")[s]["loss"].as<double>(),
                1e-4)
        << "step " << s + 1;
  }
  // Peak lr 1e-2 x 16 / 256 reached after 5 warm-up steps: 3 steps move a weight < 3 x 6.25e-4.
  ExpectSameModel(dir + "/one", dir + "/two", 1e-4, /*noise_bound=*/2e-3);

  // Per-rank BatchNorm statistics are another computation: the same data gives another model.
  const std::string per_rank = WriteConfig(
      dir, "per_rank.yaml", TinyConfig(dir + "/per_rank", 3, 8, "moco: {batch_norm: per_rank}\n"));
  ranks = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"contrastive", "--config", per_rank, "--set", "eval.enabled=false"},
      dir + "/per_rank", 29000 + (::getpid() + 1311) % 2000);
  ASSERT_EQ(ranks[0].exit_code, 0) << ranks[0].ErrorMessage();
  EXPECT_GT(std::abs(ranks[0].Of("step")[0]["loss"].as<double>() -
                     one.Of("step")[0]["loss"].as<double>()),
            1e-4);
}

TEST(ContrastiveRunTest, ResumeIsStepExactAndRefusesAnotherProjector) {
  const std::string dir = TempDir("resume");
  const std::string config =
      WriteConfig(dir, "c.yaml", TinyConfig(dir + "/straight", 6, 16, "", 200));
  TrainRun straight = RunTrain({"contrastive", "--config", config, "--set",
                                "train.checkpoint_every=3", "--set", "eval.every=3"},
                               dir + "/straight.log");
  ASSERT_EQ(straight.exit_code, 0) << straight.ErrorMessage();

  const std::string split = WriteConfig(dir, "s.yaml", TinyConfig(dir + "/split", 6, 16, "", 200));
  TrainRun first = RunTrain({"contrastive", "--config", split, "--set", "train.checkpoint_every=3",
                             "--set", "eval.every=3"},
                            dir + "/first.log", /*stop_at_step=*/3);
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();
  ASSERT_EQ(first.Of("stopped").size(), 1u);
  TrainRun second = RunTrain({"contrastive", "--config", split, "--resume", dir + "/split", "--set",
                              "train.checkpoint_every=3", "--set", "eval.every=3"},
                             dir + "/second.log");
  ASSERT_EQ(second.exit_code, 0) << second.ErrorMessage();
  ASSERT_EQ(second.Of("step").front()["step"].as<int>(),
            first.Of("step").back()["step"].as<int>() + 1);
  ExpectSameModel(dir + "/straight", dir + "/split", 0);
  EXPECT_EQ(second.Of("eval").back()["eval_knn_top1"].as<double>(),
            straight.Of("eval").back()["eval_knn_top1"].as<double>());

  // A projector of another width cannot take the checkpoint's weights.
  TrainRun wrong = RunTrain({"contrastive", "--config", split, "--resume", dir + "/split", "--set",
                             "model.dim=24", "--set", "train.max_steps=9"},
                            dir + "/wrong.log");
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.ErrorMessage().find("model.dim"), std::string::npos) << wrong.ErrorMessage();
}

TEST(ContrastiveRunTest, ExportHasMocoV3ReleaseNamesAndServesAsPerceptualWeights) {
  const std::string dir = TempDir("export");
  TrainRun run = RunTrain(
      {"contrastive", "--config", WriteConfig(dir, "c.yaml", TinyConfig(dir + "/run", 2, 16)),
       "--set", "eval.enabled=false"},
      dir + "/run.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  const std::string out = dir + "/moco.pth.tar";
  ::peco::testing::Subprocess exporter(
      {PECO_TRAIN_BINARY, "export", "--checkpoint", dir + "/run", "--out", out},
      dir + "/export.log");
  ASSERT_TRUE(exporter.started());
  std::string line;
  while (exporter.ReadLine(&line)) {
  }
  ASSERT_EQ(exporter.Wait(), 0);

  // peco reads the base encoder as a perceptual network's weights, equal to the checkpoint's.
  TimmVitConfig vit;
  vit.img_size = 32;
  vit.patch_size = 8;
  vit.embed_dim = 32;
  vit.depth = 2;
  vit.num_heads = 2;
  TimmVit loaded(vit);
  ASSERT_TRUE(LoadTimmVitWeights(out, loaded).ok());
  absl::StatusOr<LoadedContrastive> checkpoint = LoadContrastiveCheckpoint(dir + "/run");
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto trained = checkpoint->model->base_encoder()->named_parameters();
  for (const auto& item : loaded->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), trained[item.key()])) << item.key();
  }

  // A tokenizer's perceptual network: the exported file as loss.perceptual.weights and the run
  // as loss.perceptual.checkpoint both give the trained base encoder's block outputs, the latter
  // with the job's own input size and normalisation.
  torch::manual_seed(0);
  const torch::Tensor images = torch::rand({2, 3, 32, 32});
  const std::vector<torch::Tensor> want =
      checkpoint->model->base_encoder()->BlockOutputs(images, std::vector<int64_t>{1, 2});
  PerceptualLossConfig from_file;
  from_file.extractor = vit;
  from_file.weights_path = out;
  from_file.blocks = {1, 2};
  PerceptualLossConfig from_run;
  from_run.checkpoint = dir + "/run";
  from_run.blocks = {1, 2};
  ASSERT_TRUE(CheckPerceptualCheckpoint(from_run).ok());
  for (const PerceptualLossConfig& config : {from_file, from_run}) {
    absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = CreatePerceptualLoss(config);
    ASSERT_TRUE(loss.ok()) << loss.status();
    PerceptualFeatureExtractor& extractor = (*loss)->extractor();
    EXPECT_EQ(extractor.input().img_size, 32);
    EXPECT_EQ(extractor.input().mean, (std::vector<double>{0.485, 0.456, 0.406}));
    std::vector<torch::Tensor> got = extractor.BlockOutputs(images, {1, 2});
    ASSERT_EQ(got.size(), 2u);
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(torch::allclose(got[i], want[i]));
  }
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> from_checkpoint = CreatePerceptualLoss(from_run);
  ASSERT_TRUE(from_checkpoint.ok());
  EXPECT_NE((*from_checkpoint)->extractor().source().description.find("contrastive checkpoint"),
            std::string::npos);
  from_run.blocks = {1, 3};
  absl::Status deeper = CheckPerceptualCheckpoint(from_run);
  EXPECT_NE(deeper.message().find("loss.perceptual.blocks"), std::string::npos) << deeper;

  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "needs Debian's python3-torch for the Python half";
  }
  std::ofstream(dir + "/check.py")
      << "import sys, torch\n"
         "d = torch.load(sys.argv[1])\n"
         "assert d['epoch'] == 2 and d['arch'] == 'vit_small_fashion_mnist', (d['epoch'], "
         "d['arch'])\n"
         "sd = d['state_dict']\n"
         "prefixes = sorted({k.split('.')[1] for k in sd})\n"
         "assert prefixes == ['base_encoder', 'momentum_encoder', 'predictor'], prefixes\n"
         "assert all(k.startswith('module.') for k in sd)\n"
         "for k in ['module.base_encoder.cls_token', 'module.base_encoder.pos_embed',\n"
         "          'module.base_encoder.patch_embed.proj.weight',\n"
         "          'module.base_encoder.blocks.1.attn.qkv.weight', "
         "'module.base_encoder.norm.bias',\n"
         "          'module.base_encoder.head.7.running_var', "
         "'module.momentum_encoder.head.0.weight',\n"
         "          'module.predictor.4.num_batches_tracked']:\n"
         "    assert k in sd, k\n"
         "assert list(sd['module.base_encoder.head.6.weight'].shape) == [16, 64]\n"
         "assert list(sd['module.predictor.0.weight'].shape) == [64, 16]\n"
         "assert 'module.base_encoder.head.7.weight' not in sd  # BatchNorm without affine\n"
         "print('ok', len(sd))\n";
  const std::string command =
      "/usr/bin/python3 " + dir + "/check.py " + out + " > " + dir + "/python.log 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "see " << dir << "/python.log";
}

}  // namespace
}  // namespace peco::trainer
