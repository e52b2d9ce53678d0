// End-to-end tests of `peco-train finetune` and `peco-train linear_probe` as processes, with a
// tiny pretrain checkpoint (tiny tokenizer, then tiny pretrain run) as the backbone: the probe
// learns while the backbone stays bytewise the pretrain checkpoint's, fine-tuning loads the
// checkpoint, evaluates periodically and exports official names, the random-backbone baseline
// says so, step-exact resume, and refusals of a wrong backbone naming the field.
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

void ExpectSameTensors(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

double MeanLoss(const std::vector<YAML::Node>& steps, size_t begin, size_t count) {
  double sum = 0;
  for (size_t i = begin; i < begin + count; ++i) sum += steps[i]["loss"].as<double>();
  return sum / count;
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

TEST_F(EvalRunTest, LinearProbeLearnsWhileTheBackboneStaysThePretrainCheckpoints) {
  const std::string dir = TempDir("probe");
  constexpr int kSteps = 100;
  const std::string config = WriteConfig(
      dir, "c.yaml", EvalConfig("linear_probe", dir + "/run", "checkpoint: " + *pretrain_, kSteps));
  TrainRun run = RunTrain({"linear_probe", "--config", config}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();

  ASSERT_EQ(run.Of("start").size(), 1u);
  const YAML::Node start = run.Of("start")[0];
  EXPECT_EQ(start["backbone"].as<std::string>(), "checkpoint");
  EXPECT_FALSE(start["random_backbone"].as<bool>());
  EXPECT_EQ(start["probe_block"].as<int>(), 1);  // 2 blocks * 3 / 4
  EXPECT_EQ(start["num_classes"].as<int>(), 10);
  EXPECT_EQ(start["trainable_parameters"].as<int>(), 32 * 10 + 10);  // the head alone

  std::vector<YAML::Node> steps = run.Of("step");
  ASSERT_EQ(steps.size(), static_cast<size_t>(kSteps));
  EXPECT_LT(MeanLoss(steps, kSteps - 10, 10), MeanLoss(steps, 0, 10) - 0.1);
  std::vector<YAML::Node> evals = run.Of("eval");
  ASSERT_EQ(evals.size(), 1u);  // eval.every 0: only at the end
  EXPECT_EQ(evals[0]["step"].as<int>(), kSteps);
  EXPECT_EQ(evals[0]["eval_images"].as<int>(), 500);
  const double top1 = evals[0]["eval_top1"].as<double>();
  // The tiny backbone's mean-pooled tokens carry little more than patch statistics: ~18-20%.
  EXPECT_GT(top1, 14.0) << "10 classes: chance is 10% (500 images: 1.3% standard deviation)";
  EXPECT_LT(evals[0]["eval_loss"].as<double>(), 2.25) << "ln 10 = 2.303 is chance";
  EXPECT_LE(top1, evals[0]["eval_top5"].as<double>());
  EXPECT_LE(evals[0]["eval_top5"].as<double>(), 100.0);
  ASSERT_EQ(run.Of("completed").size(), 1u);
  EXPECT_DOUBLE_EQ(run.Of("completed")[0]["eval_top1"].as<double>(), top1);

  // The checkpoint records the backbone's provenance, and its backbone is bytewise the
  // pretrain checkpoint's, converted to the classifier's form.
  absl::StatusOr<LoadedEval> probe = LoadEvalCheckpoint(dir + "/run");
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->kind, "linear_probe");
  EXPECT_EQ(probe->step, kSteps);
  absl::StatusOr<LoadedPretrain> pretrain = LoadPretrainCheckpoint(*pretrain_);
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();
  EXPECT_EQ(probe->backbone, "checkpoint");
  EXPECT_EQ(probe->backbone_source, pretrain->checkpoint_dir);
  absl::StatusOr<std::string> manifest =
      Sha256FileHex(pretrain->checkpoint_dir + "/" + kManifestName);
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(probe->backbone_sha256, *manifest);
  EXPECT_DOUBLE_EQ(probe->eval.top1, top1);
  BeitClassifier expected(probe->model_config);
  ASSERT_TRUE(
      LoadPretrainIntoClassifier(expected, StateDictInOfficialOrder(*pretrain->model), "pretrain")
          .ok());
  ExpectSameTensors(StateDictInOfficialOrder(*probe->model), StateDictInOfficialOrder(*expected));
  ASSERT_TRUE(probe->head);
  EXPECT_EQ(probe->head->weight.sizes(), (std::vector<int64_t>{10, 32}));

  // Export does not handle linear-probe checkpoints, and says so.
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

TEST_F(EvalRunTest, RandomBackboneBaselineSaysSoAndLearnsSyntheticLabels) {
  const std::string dir = TempDir("random");
  const std::string yaml = R"(kind: linear_probe
seed: 1
threads: 2
data: {source: synthetic, image_size: 16, synthetic_size: 512, batch_size: 32, num_workers: 2,
       prefetch: 4}
transform: {scale_min: 1.0, horizontal_flip: false}
model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 4, embed_dim: 32, depth: 2,
        num_heads: 2}
probe: {block: 2}
eval: {batch_size: 128}
optim: {lr: 0.3, warmup_steps: 3}
train: {max_steps: 60, log_every: 10, checkpoint_every: 1000, output_dir: )" +
                           dir + "/run}\n";
  TrainRun run =
      RunTrain({"linear_probe", "--config", WriteConfig(dir, "c.yaml", yaml)}, dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  const YAML::Node start = run.Of("start")[0];
  EXPECT_EQ(start["backbone"].as<std::string>(), "random");
  EXPECT_TRUE(start["random_backbone"].as<bool>());
  absl::StatusOr<std::string> log = ReadFileToString(dir + "/stderr.log");
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("random-backbone baseline"), std::string::npos) << *log;
  // The synthetic held-out set is drawn with another seed: same label rule, other images.
  std::vector<YAML::Node> evals = run.Of("eval");
  ASSERT_EQ(evals.size(), 1u);
  EXPECT_EQ(evals[0]["eval_images"].as<int>(), 512);
  EXPECT_GT(evals[0]["eval_top1"].as<double>(), 20.0) << "10 classes: chance is 10%";
}

TEST_F(EvalRunTest, LinearProbeResumeAfterSigtermIsStepExact) {
  const std::string dir = TempDir("resume");
  constexpr int kSteps = 40;
  const std::string backbone = "checkpoint: " + *pretrain_;
  TrainRun a = RunTrain(
      {"linear_probe", "--config",
       WriteConfig(dir, "a.yaml", EvalConfig("linear_probe", dir + "/straight", backbone, kSteps))},
      dir + "/a.log");
  ASSERT_EQ(a.exit_code, 0) << a.ErrorMessage();

  const std::string split =
      WriteConfig(dir, "b.yaml", EvalConfig("linear_probe", dir + "/split", backbone, kSteps));
  TrainRun first = RunTrain({"linear_probe", "--config", split}, dir + "/b1.log", 5);
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();
  ASSERT_EQ(first.Of("stopped").size(), 1u) << "the SIGTERM arrived after training finished";
  const int stopped_at = first.Of("stopped")[0]["step"].as<int>();
  ASSERT_LT(stopped_at, kSteps);
  EXPECT_TRUE(first.Of("eval").empty());  // a stop does not evaluate

  // Another backbone (a tokenizer checkpoint is not even a backbone) is refused.
  TrainRun other = RunTrain({"linear_probe", "--config", split, "--resume", dir + "/split", "--set",
                             "backbone.checkpoint=" + *tokenizer_},
                            dir + "/other.log");
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.ErrorMessage().find("backbone.checkpoint"), std::string::npos);

  TrainRun second =
      RunTrain({"linear_probe", "--config", split, "--resume", dir + "/split"}, dir + "/b2.log");
  ASSERT_EQ(second.exit_code, 0) << second.ErrorMessage();
  ASSERT_EQ(second.Of("start")[0]["step"].as<int>(), stopped_at);

  absl::StatusOr<LoadedEval> x = LoadEvalCheckpoint(dir + "/straight");
  absl::StatusOr<LoadedEval> y = LoadEvalCheckpoint(dir + "/split");
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_TRUE(y.ok()) << y.status();
  EXPECT_EQ(y->step, kSteps);
  ExpectSameTensors(StateDictInOfficialOrder(*x->head), StateDictInOfficialOrder(*y->head));
  ExpectSameTensors(StateDictInOfficialOrder(*x->model), StateDictInOfficialOrder(*y->model));
  std::map<int, double> a_loss;
  for (const auto& e : a.Of("step")) a_loss[e["step"].as<int>()] = e["loss"].as<double>();
  for (const auto& e : second.Of("step")) {
    EXPECT_EQ(e["loss"].as<double>(), a_loss[e["step"].as<int>()]) << "step " << e["step"];
  }
  EXPECT_EQ(second.Of("eval")[0]["eval_top1"].as<double>(),
            a.Of("eval")[0]["eval_top1"].as<double>());
}

TEST_F(EvalRunTest, ProbeFeatureNormKeepsItsStatisticsAcrossAResume) {
  const std::string dir = TempDir("probe_norm");
  constexpr int kSteps = 30;
  const std::string backbone = "checkpoint: " + *pretrain_;
  const std::string norm = "probe: {feature_norm: batchnorm}\n";
  TrainRun a = RunTrain({"linear_probe", "--config",
                         WriteConfig(dir, "a.yaml",
                                     EvalConfig("linear_probe", dir + "/straight", backbone, kSteps,
                                                0, norm, "4.0e-3"))},
                        dir + "/a.log");
  ASSERT_EQ(a.exit_code, 0) << a.ErrorMessage();
  EXPECT_EQ(a.Of("start")[0]["trainable_parameters"].as<int>(), 32 * 10 + 10)
      << "the normalisation has no affine parameters: the probe stays linear";

  const std::string split =
      WriteConfig(dir, "b.yaml",
                  EvalConfig("linear_probe", dir + "/split", backbone, kSteps, 0, norm, "4.0e-3"));
  TrainRun first = RunTrain({"linear_probe", "--config", split}, dir + "/b1.log", 5);
  ASSERT_EQ(first.exit_code, 0) << first.ErrorMessage();
  ASSERT_EQ(first.Of("stopped").size(), 1u);
  // Resuming without the normalisation is refused: the checkpoint's head expects it.
  TrainRun other = RunTrain({"linear_probe", "--config", split, "--resume", dir + "/split", "--set",
                             "probe.feature_norm=none"},
                            dir + "/other.log");
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.ErrorMessage().find("probe.feature_norm"), std::string::npos)
      << other.ErrorMessage();
  TrainRun second =
      RunTrain({"linear_probe", "--config", split, "--resume", dir + "/split"}, dir + "/b2.log");
  ASSERT_EQ(second.exit_code, 0) << second.ErrorMessage();

  absl::StatusOr<LoadedEval> x = LoadEvalCheckpoint(dir + "/straight");
  absl::StatusOr<LoadedEval> y = LoadEvalCheckpoint(dir + "/split");
  ASSERT_TRUE(x.ok()) << x.status();
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_TRUE(x->probe_norm);
  ASSERT_TRUE(y->probe_norm);
  EXPECT_FALSE(x->probe_norm->is_training());
  // The running statistics were learned from the features (not the initial 0 / 1) and resumed.
  EXPECT_GT(x->probe_norm->running_mean.abs().max().item<double>(), 1e-4);
  EXPECT_FALSE(
      torch::allclose(x->probe_norm->running_var, torch::ones_like(x->probe_norm->running_var)));
  EXPECT_TRUE(torch::equal(x->probe_norm->running_mean, y->probe_norm->running_mean));
  EXPECT_TRUE(torch::equal(x->probe_norm->running_var, y->probe_norm->running_var));
  ExpectSameTensors(StateDictInOfficialOrder(*x->head), StateDictInOfficialOrder(*y->head));
  EXPECT_EQ(second.Of("eval")[0]["eval_top1"].as<double>(),
            a.Of("eval")[0]["eval_top1"].as<double>());
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

  // A probed block beyond the backbone's depth, found once the backbone is read.
  const std::string block =
      WriteConfig(dir, "b.yaml",
                  EvalConfig("linear_probe", dir + "/b", "checkpoint: " + *pretrain_, 2, 0,
                             "probe: {block: 3}\n"));
  run = RunTrain({"validate", "--config", block}, dir + "/b.log");
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.ErrorMessage().find("probe.block: expected a value in [1, 2], got 3"),
            std::string::npos)
      << run.ErrorMessage();

  // `validate` of a good config lists what the job reads.
  const std::string good = WriteConfig(
      dir, "g.yaml", EvalConfig("linear_probe", dir + "/g", "checkpoint: " + *pretrain_, 2));
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

TEST_F(EvalRunTest, OfficialWeightsFileLoadsLikeTheCheckpoint) {
  const std::string dir = TempDir("weights");
  // The pretrain checkpoint in BEiT's release format.
  TrainRun exported = RunTrain({"export", "--checkpoint", *pretrain_, "--out", dir + "/beit.pth"},
                               dir + "/export.log");
  ASSERT_EQ(exported.exit_code, 0) << exported.ErrorMessage();
  // The architecture comes from `model:` (a weights file has no config).
  const std::string model =
      "model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 2, embed_dim: 32, "
      "depth: 2, num_heads: 2}\n";
  TrainRun run = RunTrain({"linear_probe", "--config",
                           WriteConfig(dir, "c.yaml",
                                       EvalConfig("linear_probe", dir + "/run",
                                                  "weights: " + dir + "/beit.pth", 3, 0, model))},
                          dir + "/stderr.log");
  ASSERT_EQ(run.exit_code, 0) << run.ErrorMessage();
  EXPECT_EQ(run.Of("start")[0]["backbone"].as<std::string>(), "weights");
  absl::StatusOr<LoadedEval> probe = LoadEvalCheckpoint(dir + "/run");
  ASSERT_TRUE(probe.ok()) << probe.status();
  absl::StatusOr<std::string> digest = Sha256FileHex(dir + "/beit.pth");
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(probe->backbone_sha256, *digest);
  absl::StatusOr<LoadedPretrain> pretrain = LoadPretrainCheckpoint(*pretrain_);
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();
  BeitClassifier expected(probe->model_config);
  ASSERT_TRUE(
      LoadPretrainIntoClassifier(expected, StateDictInOfficialOrder(*pretrain->model), "pretrain")
          .ok());
  ExpectSameTensors(StateDictInOfficialOrder(*probe->model), StateDictInOfficialOrder(*expected));

  // A weights file for another architecture is refused naming the field.
  TrainRun wrong = RunTrain(
      {"linear_probe", "--config",
       WriteConfig(dir, "w.yaml",
                   EvalConfig("linear_probe", dir + "/w", "weights: " + dir + "/beit.pth", 3, 0,
                              absl::StrReplaceAll(model, {{"embed_dim: 32", "embed_dim: 64"}})))},
      dir + "/w.log");
  EXPECT_EQ(wrong.exit_code, 2);
  EXPECT_NE(wrong.ErrorMessage().find("backbone.weights"), std::string::npos)
      << wrong.ErrorMessage();
}

TEST_F(EvalRunTest, TwoRanksEqualOneRankWithTheDoubleBatchAndCountEveryEvalImageOnce) {
  const std::string dir = TempDir("ddp");
  constexpr int kSteps = 4;
  // 501 held-out images: two shards of 250 and a remainder of 1 that rank 0 evaluates.
  const std::string eval = "eval: {split: test, batch_size: 64, max_images: 501}\n";
  auto config = [&](const std::string& name, int batch) {
    std::string yaml =
        EvalConfig("linear_probe", dir + "/" + name, "checkpoint: " + *pretrain_, kSteps);
    yaml = absl::StrReplaceAll(yaml, {{"batch_size: 32", "batch_size: " + std::to_string(batch)}});
    yaml.replace(yaml.find("eval: {"),
                 yaml.find("\n", yaml.find("eval: {")) - yaml.find("eval: {") + 1, eval);
    return WriteConfig(dir, name + ".yaml", yaml);
  };
  TrainRun one = RunTrain({"linear_probe", "--config", config("one", 32)}, dir + "/one.log");
  ASSERT_EQ(one.exit_code, 0) << one.ErrorMessage();
  ASSERT_EQ(one.Of("eval").size(), 1u);
  EXPECT_EQ(one.Of("eval")[0]["eval_images"].as<int>(), 501);

  const std::string two = config("two", 16);
  std::vector<TrainRun> ranks =
      ::peco::testing::RunRanksProcesses(PECO_TRAIN_BINARY, {"linear_probe", "--config", two},
                                         dir + "/rank", 29000 + (::getpid() + 977) % 2000);
  for (size_t r = 0; r < ranks.size(); ++r) EXPECT_EQ(ranks[r].exit_code, 0) << "rank " << r;
  const std::vector<YAML::Node> rank0_evals = ranks[0].Of("eval");
  ASSERT_EQ(rank0_evals.size(), 1u);
  EXPECT_EQ(rank0_evals[0]["eval_images"].as<int>(), 501);
  EXPECT_NEAR(rank0_evals[0]["eval_top1"].as<double>(), one.Of("eval")[0]["eval_top1"].as<double>(),
              0.5);
  absl::StatusOr<LoadedEval> a = LoadEvalCheckpoint(dir + "/one");
  absl::StatusOr<LoadedEval> b = LoadEvalCheckpoint(dir + "/two");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  NamedTensors a_head = StateDictInOfficialOrder(*a->head);
  NamedTensors b_head = StateDictInOfficialOrder(*b->head);
  ASSERT_EQ(a_head.size(), b_head.size());
  for (size_t i = 0; i < a_head.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a_head[i].second, b_head[i].second, 1e-4, 1e-5)) << a_head[i].first;
  }
}

}  // namespace
}  // namespace peco::trainer
