// End-to-end tests of `peco-train finetune` and `peco-train linear_probe` as processes, with a
// tiny pretrain checkpoint (tiny tokenizer, then tiny pretrain run) as the backbone: the readouts
// (k-NN and linear, one eval event, every block, the feature cache reused by a restarted attempt,
// the same over two ranks as over one), the floors (pixels, random backbone), fine-tuning that
// loads the checkpoint, evaluates periodically and exports official names, step-exact resume, and
// refusals of a wrong backbone naming the field.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <memory>

#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/test_util/subprocess.h"
#include "tests/test_util/tiny_jobs.h"
#include "tests/test_util/train_process.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/models/beit_weights.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/readout_task.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::TrainRun;
using ::peco::testing::WriteConfig;

std::string TempDir(const std::string& name) {
  return ::peco::testing::TempDir("peco_eval_test", name);
}

TrainRun RunTrain(const std::vector<std::string>& args, const std::string& log,
                  int stop_at_step = 0) {
  return ::peco::testing::RunTrainProcess(PECO_TRAIN_BINARY, args, log, stop_at_step);
}

// A finetune or linear_probe job on 16x16 Fashion-MNIST crops, evaluated on the first 500 test
// images; `backbone` is a YAML mapping body ("checkpoint: DIR" or ""). The probe's default lr is
// high because the tiny backbone's pooled features are small (no normalisation before the head,
// as BEiT's probe).
std::string EvalConfig(const std::string& kind, const std::string& output_dir,
                       const std::string& backbone, int max_steps, int eval_every = 0,
                       const std::string& extra = "", const std::string& lr = "0.3") {
  return "kind: " + kind + R"(
seed: 3
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 32, num_workers: 2, prefetch: 4}
transform: {scale_min: 0.7}
backbone: {)" +
         backbone + R"(}
eval: {split: test, batch_size: 100, max_images: 500, every: )" +
         std::to_string(eval_every) + R"(}
optim: {lr: )" +
         lr + R"(, warmup_steps: 3}
train: {max_steps: )" +
         std::to_string(max_steps) +
         ", log_every: 1, checkpoint_every: 1000, output_dir: " + output_dir + "}\n" + extra;
}

// A linear_probe job on 16x16 Fashion-MNIST: 50 training images per class (500), the first 300
// test images, 100 validation images; `backbone` is a YAML value ("{checkpoint: DIR}", "pixels").
std::string ReadoutConfig(const std::string& output_dir, const std::string& backbone,
                          const std::string& extra = "") {
  return R"(kind: linear_probe
seed: 3
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       labels_per_class: 50}
backbone: )" +
         backbone + R"(
readout: {validation_images: 100, knn: {k: 10}}
eval: {split: test, batch_size: 64, max_images: 300}
train: {output_dir: )" +
         output_dir + "}\n" + extra;
}

void ExpectSameTensors(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

class EvalRunTest : public ::testing::Test {
 protected:
  // A tiny tokenizer and a tiny pretrain run on it, once for the whole suite.
  static void SetUpTestSuite() {
    const std::string dir = TempDir("backbone");
    *tokenizer_ = dir + "/tokenizer";
    TrainRun tok = RunTrain(
        {"tokenizer", "--config",
         WriteConfig(dir, "tok.yaml", ::peco::testing::TinyTokenizerConfig(*tokenizer_, 7))},
        dir + "/tok.log");
    ASSERT_EQ(tok.exit_code, 0) << tok.ErrorMessage();
    *pretrain_ = dir + "/pretrain";
    TrainRun pre =
        RunTrain({"pretrain", "--config",
                  WriteConfig(dir, "pre.yaml",
                              ::peco::testing::TinyPretrainConfig(*pretrain_, *tokenizer_, 10))},
                 dir + "/pre.log");
    ASSERT_EQ(pre.exit_code, 0) << pre.ErrorMessage();
  }
  static std::string* tokenizer_;
  static std::string* pretrain_;
};
std::string* EvalRunTest::tokenizer_ = new std::string;
std::string* EvalRunTest::pretrain_ = new std::string;

TEST_F(EvalRunTest, LinearProbeReadsOutEveryBlockOfThePretrainBackboneInOneEvalEvent) {
  const std::string dir = TempDir("probe");
  const std::string config =
      WriteConfig(dir, "c.yaml", ReadoutConfig(dir + "/run", "{checkpoint: " + *pretrain_ + "}"));
  TrainRun run = RunTrain({"linear_probe", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();

  ASSERT_EQ(run.Of("start").size(), 1u);
  const YAML::Node start = run.Of("start")[0];
  EXPECT_EQ(start["backbone"].as<std::string>(), "checkpoint");
  EXPECT_FALSE(start["random_backbone"].as<bool>());
  EXPECT_EQ(start["dataset_size"].as<int>(), 500);  // 50 labels per class
  EXPECT_EQ(start["readout_blocks"].as<std::vector<int>>(), (std::vector<int>{1, 2}));
  ASSERT_EQ(run.Of("step").size(), 1u);
  const YAML::Node step = run.Of("step")[0];
  EXPECT_EQ(step["features_cached"].as<int>(), 0);
  EXPECT_GT(step["loss"].as<double>(), 0.0);

  // One eval event with every readout, each above chance (10 classes; 300 images: 1.7% std).
  std::vector<YAML::Node> evals = run.Of("eval");
  ASSERT_EQ(evals.size(), 1u);
  const YAML::Node& e = evals[0];
  EXPECT_EQ(e["eval_images"].as<int>(), 300);
  EXPECT_GT(e["eval_linear_top1"].as<double>(), 25.0);
  EXPECT_GT(e["eval_knn_top1"].as<double>(), 25.0);
  EXPECT_DOUBLE_EQ(e["eval_top1"].as<double>(), e["eval_linear_top1"].as<double>());
  EXPECT_LE(e["eval_knn_top1"].as<double>(), e["eval_knn_top5"].as<double>());
  EXPECT_LE(e["eval_linear_top1"].as<double>(), e["eval_linear_top5"].as<double>());
  const int block = e["eval_block"].as<int>();
  ASSERT_TRUE(block == 1 || block == 2) << block;
  // The block read out is the one with the best k-NN validation top-1 (ties: the earlier).
  const double v1 = e["validation_knn_top1_block_1"].as<double>();
  const double v2 = e["validation_knn_top1_block_2"].as<double>();
  EXPECT_EQ(block, v2 > v1 ? 2 : 1);
  ASSERT_EQ(run.Of("completed").size(), 1u);
  EXPECT_DOUBLE_EQ(run.Of("completed")[0]["eval_knn_top1"].as<double>(),
                   e["eval_knn_top1"].as<double>());

  // The checkpoint: provenance, the results, and the fitted readout, which scores what it
  // reported on the cached test features.
  absl::StatusOr<LoadedReadout> probe = LoadReadoutCheckpoint(dir + "/run");
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->state.step, 1);
  absl::StatusOr<LoadedPretrain> pretrain = LoadPretrainCheckpoint(*pretrain_);
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();
  EXPECT_EQ(probe->state.backbone.kind, "checkpoint");
  EXPECT_EQ(probe->state.backbone.path, pretrain->checkpoint_dir);
  absl::StatusOr<std::string> manifest =
      Sha256FileHex(pretrain->checkpoint_dir + "/" + kManifestFileName);
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(probe->state.backbone.sha256, *manifest);
  EXPECT_EQ(probe->state.readout.block, block);
  EXPECT_DOUBLE_EQ(probe->state.readout.knn_top1, e["eval_knn_top1"].as<double>());
  EXPECT_EQ(probe->readout.weight.sizes(), (std::vector<int64_t>{10, 32}));  // mean pooling
  ASSERT_TRUE(fs::exists(dir + "/run/features/test.pt"));
  ASSERT_TRUE(fs::exists(dir + "/run/features/train.pt"));

  // Export does not handle readout checkpoints, and says so.
  TrainRun exported = RunTrain({"export", "--checkpoint", dir + "/run", "--out", dir + "/p.pt"},
                               dir + "/export.log");
  EXPECT_EQ(exported.exit_code, 2);
  EXPECT_NE(exported.ErrorMessage().find("linear_probe checkpoint"), std::string::npos)
      << exported.ErrorMessage();
}

TEST_F(EvalRunTest, FinetuneLoadsThePretrainCheckpointEvaluatesAndExports) {
  const std::string dir = TempDir("finetune");
  const std::string config =
      WriteConfig(dir, "c.yaml",
                  EvalConfig("finetune", dir + "/run", "checkpoint: " + *pretrain_, 8,
                             /*eval_every=*/4, "model: {drop_path_rate: 0.0}\n", "1.0e-3"));
  TrainRun run = RunTrain({"finetune", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  const YAML::Node start = run.Of("start")[0];
  EXPECT_EQ(start["backbone"].as<std::string>(), "checkpoint");
  EXPECT_EQ(start["trainable_parameters"].as<int64_t>(), start["parameters"].as<int64_t>());
  std::vector<YAML::Node> evals = run.Of("eval");
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_EQ(evals[0]["step"].as<int>(), 4);
  EXPECT_EQ(evals[1]["step"].as<int>(), 8);
  for (const YAML::Node& e : evals) {
    EXPECT_GE(e["eval_top1"].as<double>(), 0.0);
    EXPECT_GT(e["eval_loss"].as<double>(), 0.0);
    EXPECT_EQ(e["eval_images"].as<int>(), 500);
  }
  for (const YAML::Node& s : run.Of("step")) EXPECT_GT(s["grad_norm"].as<double>(), 0.0);
  EXPECT_DOUBLE_EQ(run.Of("completed")[0]["eval_top1"].as<double>(),
                   evals[1]["eval_top1"].as<double>());

  absl::StatusOr<LoadedEval> loaded = LoadEvalCheckpoint(dir + "/run");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->kind, "finetune");
  EXPECT_EQ(loaded->num_classes, 10);
  EXPECT_TRUE(loaded->model_config.use_rel_pos_bias);
  EXPECT_FALSE(loaded->model_config.use_shared_rel_pos_bias);
  // Trained from the checkpoint: the weights moved away from it, but not far in 8 steps.
  absl::StatusOr<LoadedPretrain> pretrain = LoadPretrainCheckpoint(*pretrain_);
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();
  torch::Tensor before = pretrain->model->named_parameters()["patch_embed.proj.weight"];
  torch::Tensor after = loaded->model->named_parameters()["patch_embed.proj.weight"];
  EXPECT_FALSE(torch::equal(before, after));
  EXPECT_LT((after - before).abs().max().item<double>(), 0.05);

  // Export: BEiT's fine-tuning {'model': state_dict}, read back with equal tensors.
  TrainRun exported = RunTrain({"export", "--checkpoint", dir + "/run", "--out", dir + "/f.pt"},
                               dir + "/export.log");
  ASSERT_EQ(exported.exit_code, 0) << exported.ErrorMessage();
  EXPECT_EQ(exported.Of("exported")[0]["kind"].as<std::string>(), "finetune");
  absl::StatusOr<NamedTensors> file = ReadBeitStateFile(dir + "/f.pt");
  ASSERT_TRUE(file.ok()) << file.status();
  ExpectSameTensors(*file, StateDictInOfficialOrder(*loaded->model));
}

// The from-scratch preset, shortened (100 steps of 32, 500 test images, fp32 on every machine: in
// so short a run bf16 autocast measurably lags): its loss falls and its top-1 is well above
// chance. At 80 steps the top-1 sat at the threshold and depended on the CPU's kernels (19.2% on
// an AMX machine, above 20% on others); at 100 it is 28.8% on the AMX machine. The full recipe's
// figure is in docs/TRAINER.md (a measurement, not a timed test).
TEST_F(EvalRunTest, FinetuneFromScratchWithThePresetLearns) {
  const std::string dir = TempDir("scratch");
  TrainRun run = RunTrain({"finetune", "--config",
                           std::string(PECO_SOURCE_DIR) + "/configs/finetune_scratch_small.yaml",
                           "--output_dir", dir + "/run", "--set", "data.batch_size=32", "--set",
                           "train.max_steps=100", "--set", "optim.warmup_steps=10",
                           // The preset's lr at a quarter of its batch (linear scaling): the full
                           // lr on batches of 32 after 10 warm-up steps diverges on some CPUs.
                           "--set", "optim.lr=2.5e-4", "--set", "train.precision=fp32", "--set",
                           "train.log_every=10", "--set", "train.checkpoint_every=100", "--set",
                           "eval.every=0", "--set", "eval.max_images=500", "--set", "threads=2"},
                          dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  EXPECT_EQ(run.Of("start")[0]["backbone"].as<std::string>(), "random");
  absl::StatusOr<std::string> log = ReadFileToString(dir + "/stderr.log");
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->find("layer_decay"), std::string::npos) << "layer decay 1.0: no warning";
  const std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), 10u);
  // Logged losses are single batches of 32: the second half's mean against the first.
  double late = 0;
  for (size_t i = steps.size() / 2; i < steps.size(); ++i) late += steps[i]["loss"].as<double>();
  late /= static_cast<double>(steps.size() - steps.size() / 2);
  EXPECT_LT(late, steps.front()["loss"].as<double>() - 0.15);
  ASSERT_EQ(run.Of("eval").size(), 1u);
  // 10 classes: chance is 10% (500 images: 1.3% standard deviation).
  EXPECT_GT(run.Of("eval")[0]["eval_top1"].as<double>(), 20.0);
}

TEST_F(EvalRunTest, FloorsSayWhatTheyAreAndPixelsReadOutFarAboveChance) {
  const std::string dir = TempDir("floors");
  TrainRun random =
      RunTrain({"linear_probe", "--config",
                WriteConfig(dir, "r.yaml",
                            ReadoutConfig(dir + "/random", "random",
                                          "model: {preset: beit_small_fashion_mnist, img_size: 16, "
                                          "embed_dim: 32, depth: 2, num_heads: 2}\n"))},
               dir + "/random.log");
  ASSERT_EQ(random.exit_code, 0) << random.ErrorMessage();
  EXPECT_EQ(random.Of("start")[0]["backbone"].as<std::string>(), "random");
  EXPECT_TRUE(random.Of("start")[0]["random_backbone"].as<bool>());
  absl::StatusOr<std::string> log = ReadFileToString(dir + "/random.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("random-backbone floor"), std::string::npos) << *log;
  ASSERT_EQ(random.Of("eval").size(), 1u);
  EXPECT_GT(random.Of("eval")[0]["eval_knn_top1"].as<double>(), 20.0);

  TrainRun pixels = RunTrain({"linear_probe", "--config",
                              WriteConfig(dir, "p.yaml", ReadoutConfig(dir + "/pixels", "pixels"))},
                             dir + "/pixels.log");
  ASSERT_EQ(pixels.exit_code, 0) << pixels.ErrorMessage();
  EXPECT_EQ(pixels.Of("start")[0]["backbone"].as<std::string>(), "pixels");
  ASSERT_EQ(pixels.Of("eval").size(), 1u);
  const YAML::Node e = pixels.Of("eval")[0];
  EXPECT_EQ(e["eval_block"].as<int>(), 0);
  // 500 training images of 16x16 pixels already separate Fashion-MNIST's classes well (about
  // 70%; 300 test images: 2.6% std).
  EXPECT_GT(e["eval_linear_top1"].as<double>(), 55.0);
  EXPECT_GT(e["eval_knn_top1"].as<double>(), 55.0);
  absl::StatusOr<LoadedReadout> loaded = LoadReadoutCheckpoint(dir + "/pixels");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->readout.weight.size(1), 16 * 16);  // the greyscale view's values
}

TEST_F(EvalRunTest, ARestartedReadoutReusesItsFeatureCacheAndAResumeComputesNothing) {
  const std::string dir = TempDir("resume");
  const std::string backbone = "{checkpoint: " + *pretrain_ + "}";
  TrainRun straight =
      RunTrain({"linear_probe", "--config",
                WriteConfig(dir, "a.yaml", ReadoutConfig(dir + "/straight", backbone))},
               dir + "/a.log");
  ASSERT_EQ(straight.exit_code, 0) << straight.ErrorMessage();

  // An attempt that loses its checkpoint (the disk fills) after the feature pass...
  const std::string split = WriteConfig(
      dir, "b.yaml",
      ReadoutConfig(dir + "/split", backbone, "faults: {fail_checkpoint_at_step: 1}\n"));
  TrainRun failed = RunTrain({"linear_probe", "--config", split}, dir + "/b1.log");
  ASSERT_NE(failed.exit_code, 0);
  ASSERT_EQ(failed.Of("step").size(), 1u);
  EXPECT_EQ(failed.Of("step")[0]["features_cached"].as<int>(), 0);
  ASSERT_TRUE(fs::exists(dir + "/split/features/train.pt"));
  // ... and the next attempt, in the same directory, reads the features from the cache and
  // reports exactly the straight run's readouts.
  const std::string again = WriteConfig(dir, "c.yaml", ReadoutConfig(dir + "/split", backbone));
  TrainRun second = RunTrain({"linear_probe", "--config", again}, dir + "/b2.log");
  ASSERT_EQ(second.exit_code, 0) << second.ErrorMessage();
  ASSERT_EQ(second.Of("step").size(), 1u);
  EXPECT_EQ(second.Of("step")[0]["features_cached"].as<int>(), 1);
  ASSERT_EQ(second.Of("eval").size(), 1u);
  for (const char* field : {"eval_linear_top1", "eval_linear_top5", "eval_knn_top1",
                            "eval_knn_top5", "eval_loss", "eval_block"}) {
    EXPECT_EQ(second.Of("eval")[0][field].as<double>(), straight.Of("eval")[0][field].as<double>())
        << field;
  }
  absl::StatusOr<LoadedReadout> x = LoadReadoutCheckpoint(dir + "/straight");
  absl::StatusOr<LoadedReadout> y = LoadReadoutCheckpoint(dir + "/split");
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_TRUE(torch::equal(x->readout.weight, y->readout.weight));

  // Features of another view are not taken from the cache.
  TrainRun other_view = RunTrain(
      {"linear_probe", "--config",
       WriteConfig(
           dir, "d.yaml",
           ReadoutConfig(dir + "/split2", backbone, "faults: {fail_checkpoint_at_step: 1}\n"))},
      dir + "/d1.log");
  ASSERT_NE(other_view.exit_code, 0);
  TrainRun cropped = RunTrain({"linear_probe", "--config",
                               WriteConfig(dir, "e.yaml", ReadoutConfig(dir + "/split2", backbone)),
                               "--set", "eval.crop_fraction=0.8"},
                              dir + "/d2.log");
  ASSERT_EQ(cropped.exit_code, 0) << cropped.ErrorMessage();
  EXPECT_EQ(cropped.Of("step")[0]["features_cached"].as<int>(), 0);

  // Resuming the finished run computes nothing and reports its readouts again; another pooling
  // is refused naming the difference.
  TrainRun resumed =
      RunTrain({"linear_probe", "--config", again, "--resume", dir + "/split"}, dir + "/b3.log");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.ErrorMessage();
  EXPECT_TRUE(resumed.Of("step").empty());
  EXPECT_TRUE(resumed.Of("eval").empty());
  ASSERT_EQ(resumed.Of("completed").size(), 1u);
  EXPECT_EQ(resumed.Of("completed")[0]["eval_knn_top1"].as<double>(),
            straight.Of("eval")[0]["eval_knn_top1"].as<double>());
  TrainRun refused = RunTrain({"linear_probe", "--config", again, "--resume", dir + "/split",
                               "--set", "readout.pooling=cls"},
                              dir + "/b4.log");
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.ErrorMessage().find("pooling"), std::string::npos) << refused.ErrorMessage();
}

TEST_F(EvalRunTest, AWrongBackboneIsRefusedNamingTheField) {
  const std::string dir = TempDir("refuse");
  // A tokenizer checkpoint.
  TrainRun run =
      RunTrain({"finetune", "--config",
                WriteConfig(dir, "t.yaml",
                            EvalConfig("finetune", dir + "/t", "checkpoint: " + *tokenizer_, 2))},
               dir + "/t.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.Of("start").empty());
  EXPECT_NE(run.ErrorMessage().find("is a tokenizer checkpoint, expected a pretrain checkpoint"),
            std::string::npos)
      << run.ErrorMessage();

  // An architecture that differs from the checkpoint's, named with both values.
  const std::string conflict = WriteConfig(
      dir, "d.yaml",
      EvalConfig("finetune", dir + "/d", "checkpoint: " + *pretrain_, 2, 0, "model: {depth: 3}\n"));
  run = RunTrain({"finetune", "--config", conflict}, dir + "/d.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("model.depth: 3 differs from the backbone's 2"),
            std::string::npos)
      << run.ErrorMessage();

  // A block beyond the backbone's depth, found once the backbone is read.
  const std::string block =
      WriteConfig(dir, "b.yaml", ReadoutConfig(dir + "/b", "{checkpoint: " + *pretrain_ + "}"));
  run = RunTrain({"validate", "--config", block, "--set", "readout.block=3"}, dir + "/b.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("readout.block: expected auto or a value in [1, 2], got 3"),
            std::string::npos)
      << run.ErrorMessage();

  // k larger than the training images a readout can vote with; a label subset larger than a
  // class; `backbone: pixels` for a fine-tune. Nothing starts.
  const std::string pixels = "pixels";
  run = RunTrain(
      {"linear_probe", "--config", WriteConfig(dir, "k.yaml", ReadoutConfig(dir + "/k", pixels)),
       "--set", "readout.knn.k=401"},
      dir + "/k.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_TRUE(run.Of("start").empty());
  EXPECT_NE(run.ErrorMessage().find("readout.knn.k: expected at most 400"), std::string::npos)
      << run.ErrorMessage();
  run = RunTrain(
      {"linear_probe", "--config", WriteConfig(dir, "l.yaml", ReadoutConfig(dir + "/l", pixels)),
       "--set", "data.labels_per_class=7000"},
      dir + "/l.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("data.labels_per_class"), std::string::npos)
      << run.ErrorMessage();
  run = RunTrain({"finetune", "--config",
                  WriteConfig(dir, "f.yaml", EvalConfig("finetune", dir + "/f", "", 2)), "--set",
                  "backbone=pixels"},
                 dir + "/f.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("backbone: pixels is a readout floor"), std::string::npos)
      << run.ErrorMessage();

  // `validate` of a good config lists what the job reads.
  const std::string good =
      WriteConfig(dir, "g.yaml", ReadoutConfig(dir + "/g", "{checkpoint: " + *pretrain_ + "}"));
  run = RunTrain({"validate", "--config", good}, dir + "/g.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  std::map<std::string, std::string> inputs;
  for (const YAML::Node& e : run.Of("input")) {
    inputs[e["field"].as<std::string>()] = e["path"].as<std::string>();
  }
  EXPECT_EQ(inputs["data.path"], "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(inputs["eval.path"], "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(inputs["backbone.checkpoint"], *pretrain_);
  EXPECT_EQ(run.Of("valid")[0]["kind"].as<std::string>(), "linear_probe");
}

TEST_F(EvalRunTest, OfficialWeightsFileReadsOutLikeTheCheckpoint) {
  const std::string dir = TempDir("weights");
  // The pretrain checkpoint in BEiT's release format.
  TrainRun exported = RunTrain({"export", "--checkpoint", *pretrain_, "--out", dir + "/beit.pth"},
                               dir + "/export.log");
  ASSERT_EQ(exported.exit_code, 0) << exported.ErrorMessage();
  // The architecture comes from `model:` (a weights file has no config).
  const std::string model =
      "model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 2, embed_dim: 32, "
      "depth: 2, num_heads: 2}\n";
  TrainRun run =
      RunTrain({"linear_probe", "--config",
                WriteConfig(dir, "c.yaml",
                            ReadoutConfig(dir + "/run", "{weights: " + dir + "/beit.pth}", model))},
               dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  EXPECT_EQ(run.Of("start")[0]["backbone"].as<std::string>(), "weights");
  TrainRun checkpoint =
      RunTrain({"linear_probe", "--config",
                WriteConfig(dir, "k.yaml",
                            ReadoutConfig(dir + "/ckpt", "{checkpoint: " + *pretrain_ + "}"))},
               dir + "/ckpt.log");
  ASSERT_EQ(checkpoint.exit_code, 0) << checkpoint.ErrorMessage();
  // The same weights give the same features, hence the same readouts.
  for (const char* field : {"eval_linear_top1", "eval_knn_top1", "eval_block"}) {
    EXPECT_EQ(run.Of("eval")[0][field].as<double>(), checkpoint.Of("eval")[0][field].as<double>())
        << field;
  }
  absl::StatusOr<LoadedReadout> probe = LoadReadoutCheckpoint(dir + "/run");
  ASSERT_TRUE(probe.ok()) << probe.status();
  absl::StatusOr<std::string> digest = Sha256FileHex(dir + "/beit.pth");
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(probe->state.backbone.sha256, *digest);

  // A weights file for another architecture is refused naming the field.
  TrainRun wrong = RunTrain(
      {"linear_probe", "--config",
       WriteConfig(
           dir, "w.yaml",
           ReadoutConfig(dir + "/w", "{weights: " + dir + "/beit.pth}",
                         absl::StrReplaceAll(model, {{"embed_dim: 32", "embed_dim: 64"}})))},
      dir + "/w.log");
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.ErrorMessage().find("backbone.weights"), std::string::npos)
      << wrong.ErrorMessage();
}

TEST_F(EvalRunTest, TwoRanksReadOutExactlyWhatOneRankDoes) {
  const std::string dir = TempDir("ddp");
  // 301 held-out images: the ranks' shards differ in size.
  const std::string backbone = "{checkpoint: " + *pretrain_ + "}";
  // One thread, as each of the two ranks runs (RunRanksProcesses): a CPU's BLAS may round
  // differently when it splits a product over another number of threads.
  TrainRun one = RunTrain({"linear_probe", "--config",
                           WriteConfig(dir, "one.yaml", ReadoutConfig(dir + "/one", backbone)),
                           "--set", "eval.max_images=301", "--set", "threads=1"},
                          dir + "/one.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();
  ASSERT_EQ(one.Of("eval").size(), 1u);
  EXPECT_EQ(one.Of("eval")[0]["eval_images"].as<int>(), 301);

  const std::string two = WriteConfig(dir, "two.yaml", ReadoutConfig(dir + "/two", backbone));
  std::vector<TrainRun> ranks = ::peco::testing::RunRanksProcesses(
      PECO_TRAIN_BINARY, {"linear_probe", "--config", two, "--set", "eval.max_images=301"},
      dir + "/rank", 29000 + (::getpid() + 977) % 2000);
  for (size_t r = 0; r < ranks.size(); ++r) {
    ASSERT_EQ(ranks[r].exit_code, 0) << "rank " << r << ": " << ranks[r].ErrorMessage();
  }
  // Every rank gathered every image's features, in order: the readouts are one rank's, exactly.
  for (const TrainRun& rank : ranks) {
    ASSERT_EQ(rank.Of("eval").size(), 1u);
    for (const char* field : {"eval_images", "eval_linear_top1", "eval_linear_top5",
                              "eval_knn_top1", "eval_knn_top5", "eval_block", "eval_loss"}) {
      EXPECT_EQ(rank.Of("eval")[0][field].as<double>(), one.Of("eval")[0][field].as<double>())
          << field;
    }
  }
  absl::StatusOr<LoadedReadout> a = LoadReadoutCheckpoint(dir + "/one");
  absl::StatusOr<LoadedReadout> b = LoadReadoutCheckpoint(dir + "/two");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->state.world_size, 2);
  EXPECT_TRUE(torch::equal(a->readout.weight, b->readout.weight));
  EXPECT_TRUE(torch::equal(a->readout.bias, b->readout.bias));
}

}  // namespace
}  // namespace peco::trainer
