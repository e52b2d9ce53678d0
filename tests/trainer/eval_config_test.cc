// The finetune and linear_probe job configs: the recipe's defaults per kind, errors that name the
// dotted field, the shipped configs, and the fine-tuning optimiser's layer-decay groups.
#include "trainer/tasks/eval_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/job_kinds.h"
#include "trainer/tasks/pretrain_config.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

// Complete, valid configs that need nothing on disk (parsed without path checks).
constexpr char kFinetune[] = R"(kind: finetune
seed: 3
data: {source: synthetic, image_size: 32, synthetic_size: 64, batch_size: 8, num_workers: 1,
       prefetch: 2}
model: {preset: beit_small_fashion_mnist}
train: {max_steps: 10, output_dir: /tmp/unused}
)";

constexpr char kProbe[] = R"(kind: linear_probe
seed: 3
data: {source: synthetic, image_size: 32, synthetic_size: 64}
model: {preset: beit_small_fashion_mnist}
train: {output_dir: /tmp/unused}
)";

absl::StatusOr<EvalJobConfig> Parse(const std::string& yaml) {
  return ParseEvalConfig(yaml, "test.yaml", /*check_paths=*/false);
}

std::string Error(const std::string& yaml) {
  absl::StatusOr<EvalJobConfig> config = Parse(yaml);
  EXPECT_FALSE(config.ok()) << yaml;
  return config.ok() ? "" : std::string(config.status().message());
}

std::string With(const std::string& yaml, const std::string& extra) { return yaml + extra; }

TEST(EvalConfigTest, FinetuneTakesTheRecipesDefaults) {
  absl::StatusOr<EvalJobConfig> config = Parse(kFinetune);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->linear_probe());
  EXPECT_DOUBLE_EQ(config->optim.schedule.base_lr, 4e-3);
  EXPECT_DOUBLE_EQ(config->optim.schedule.min_lr, 1e-6);
  EXPECT_EQ(config->optim.betas, (std::vector<double>{0.9, 0.999}));
  EXPECT_DOUBLE_EQ(config->optim.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(config->optim.layer_decay, 0.65);
  EXPECT_DOUBLE_EQ(config->optim.label_smoothing, 0.1);
  EXPECT_DOUBLE_EQ(config->optim.grad_clip, 0.0);
  EXPECT_EQ(config->optim.schedule.total_steps, 10);
  EXPECT_TRUE(config->optim.schedule.warmup_from_zero);
  EXPECT_TRUE(config->backbone.checkpoint.empty());
  EXPECT_TRUE(config->backbone.weights.empty());
  // The held-out split: in order, every image, centre crop, no augmentation.
  EXPECT_EQ(config->eval_data.split, "test");
  EXPECT_FALSE(config->eval_data.loader.shuffle);
  EXPECT_FALSE(config->eval_data.loader.drop_last);
  EXPECT_FALSE(config->eval_data.loader.transform.random_crop);
  EXPECT_FALSE(config->eval_data.loader.transform.horizontal_flip);
  EXPECT_EQ(config->eval_data.loader.batch_size, 256);
  EXPECT_EQ(config->data.loader.transform.output_sizes, (std::vector<int>{32}));
  EXPECT_EQ(config->train.output_dir, "/tmp/unused");
}

TEST(EvalConfigTest, LinearProbeReadsOutEveryBlockByDefault) {
  absl::StatusOr<EvalJobConfig> config = Parse(kProbe);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->linear_probe());
  EXPECT_EQ(config->train.max_steps, 1);  // the feature pass and the fits
  EXPECT_EQ(config->readout.block, "auto");
  EXPECT_EQ(config->ReadoutBlocks(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(config->readout.pooling, "mean");
  EXPECT_EQ(config->readout.knn.k, 20);
  EXPECT_DOUBLE_EQ(config->readout.knn.temperature, 0.07);
  EXPECT_TRUE(config->readout.linear.standardize);
  config = Parse(With(kProbe, "readout: {block: 6, pooling: cls+mean, feature_norm: none}\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ReadoutBlocks(), (std::vector<int64_t>{6}));
  EXPECT_EQ(config->readout.pooling, "cls+mean");
  EXPECT_FALSE(config->readout.linear.standardize);
  config = Parse(With(kProbe, "backbone: pixels\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backbone.named, "pixels");
  EXPECT_TRUE(config->ReadoutBlocks().empty());
  config = Parse(With(kFinetune, "backbone: random\n"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->backbone.named, "random");
}

TEST(EvalConfigTest, ErrorsNameTheField) {
  EXPECT_THAT(Error(With(kProbe, "readout: {block: 9}\n")),
              HasSubstr("readout.block: expected auto or a value in [1, 6], got 9"));
  EXPECT_THAT(Error(With(kProbe, "readout: {block: first}\n")),
              HasSubstr("readout.block: expected auto or a block counted from 1, got 'first'"));
  EXPECT_THAT(Error(With(kProbe, "backbone: pixels\nreadout: {block: 2}\n")),
              HasSubstr("readout.block: the pixel backbone has no blocks"));
  EXPECT_THAT(Error(With(kProbe, "readout: {knn: {k: 0}}\n")), HasSubstr("readout.knn.k"));
  EXPECT_THAT(Error(With(kProbe, "readout: {knn: {temperature: 0}}\n")),
              HasSubstr("readout.knn.temperature"));
  EXPECT_THAT(Error(With(kProbe, "readout: {pooling: max}\n")), HasSubstr("readout.pooling"));
  EXPECT_THAT(Error(With(kProbe, "readout: {linear: {l2: []}}\n")), HasSubstr("readout.linear.l2"));
  EXPECT_THAT(Error(With(kProbe, "readout: {validation_images: 0}\n")),
              HasSubstr("readout.validation_images"));
  EXPECT_THAT(Error(With(kFinetune, "readout: {block: 2}\n")),
              HasSubstr("readout: only for kind linear_probe"));
  EXPECT_THAT(Error(With(kProbe, "probe: {block: 2}\n")), HasSubstr("probe: the linear probe's "
                                                                    "section is `readout:`"));
  EXPECT_THAT(Error(With(kProbe, "optim: {lr: 0.1}\n")),
              HasSubstr("optim: a linear_probe job fits its linear readout by L-BFGS"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kProbe, {{"train: {", "train: {max_steps: 300, "}})),
              HasSubstr("train.max_steps: a linear_probe job has one step"));
  EXPECT_THAT(Error(With(kProbe, "eval: {every: 100}\n")),
              HasSubstr("eval.every: a linear_probe job evaluates once"));
  EXPECT_THAT(Error(With(kProbe, "transform: {scale_min: 0.5}\n")),
              HasSubstr("transform.scale_min: unknown field"));
  EXPECT_THAT(Error(With(kFinetune, "backbone: pixels\n")),
              HasSubstr("backbone: pixels is a readout floor (kind linear_probe)"));
  EXPECT_THAT(Error(With(kProbe, "backbone: imagenet\n")), HasSubstr("backbone"));
  EXPECT_THAT(Error(With(kFinetune, "optim: {layer_decay: 1.5}\n")),
              HasSubstr("optim.layer_decay: expected a value in (0, 1]"));
  EXPECT_THAT(Error(With(kFinetune, "optim: {label_smoothing: 1.0}\n")),
              HasSubstr("optim.label_smoothing"));
  EXPECT_THAT(Error(With(kFinetune, "backbone: {checkpoint: /a, weights: /b.pth}\n")),
              HasSubstr("backbone: give at most one of checkpoint"));
  EXPECT_THAT(Error(With(kFinetune, "backbone: {checkpoints: /a}\n")),
              HasSubstr("backbone.checkpoints"));
  EXPECT_THAT(Error(With(kFinetune, "eval: {every: -1}\n")), HasSubstr("eval.every"));
  EXPECT_THAT(Error(With(kFinetune, "eval: {split: val}\n")), HasSubstr("eval.split"));
  EXPECT_THAT(Error(With(kFinetune, "eval: {crop_fraction: 0}\n")),
              HasSubstr("eval.crop_fraction"));
  EXPECT_THAT(
      Error(absl::StrReplaceAll(kFinetune, {{"source: synthetic", "source: image_folder"}})),
      HasSubstr("eval.path: expected the held-out image folder"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kFinetune, {{"image_size: 32", "image_size: 64"}})),
              HasSubstr("model.img_size: 32"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kFinetune, {{"kind: finetune", "kind: probe"}})),
              HasSubstr("kind"));
  // With path checks: a missing backbone is named.
  absl::StatusOr<EvalJobConfig> missing = ParseEvalConfig(
      With(kFinetune, "backbone: {checkpoint: /nonexistent/run}\n"), "t.yaml", true);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("backbone.checkpoint"));
}

TEST(EvalConfigTest, ConfigKindDispatchesTheEvaluationKinds) {
  absl::StatusOr<std::string> kind = ConfigKind(kProbe, "t.yaml");
  ASSERT_TRUE(kind.ok()) << kind.status();
  EXPECT_EQ(*kind, "linear_probe");
  kind = ConfigKind(kFinetune, "t.yaml");
  ASSERT_TRUE(kind.ok()) << kind.status();
  EXPECT_EQ(*kind, "finetune");
}

absl::StatusOr<EvalJobConfig> ParseShipped(const std::string& name) {
  absl::StatusOr<std::string> text =
      ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/" + name);
  if (!text.ok()) return text.status();
  return ParseEvalConfig(*text, name, /*check_paths=*/false);
}

TEST(EvalConfigTest, ShippedConfigsParseAndThePaperOnesFollowTheRecipe) {
  for (const char* name :
       {"finetune_small.yaml", "finetune_scratch_small.yaml", "finetune_100_labels_small.yaml",
        "finetune_scratch_100_labels_small.yaml", "linear_probe_small.yaml",
        "linear_probe_pixels_small.yaml", "linear_probe_random_small.yaml"}) {
    absl::StatusOr<EvalJobConfig> config = ParseShipped(name);
    ASSERT_TRUE(config.ok()) << name << ": " << config.status();
    EXPECT_EQ(config->model.embed_dim, 192) << name;
    EXPECT_EQ(config->data.source, "fashion_mnist") << name;
    EXPECT_EQ(config->eval.split, "test") << name;
  }
  absl::StatusOr<EvalJobConfig> finetune = ParseShipped("finetune_paper.yaml");
  ASSERT_TRUE(finetune.ok()) << finetune.status();
  EXPECT_EQ(finetune->model.embed_dim, 768);
  EXPECT_EQ(finetune->model.img_size, 224);
  EXPECT_DOUBLE_EQ(finetune->optim.schedule.base_lr, 4e-3);
  EXPECT_DOUBLE_EQ(finetune->optim.schedule.min_lr, 1e-6);
  EXPECT_DOUBLE_EQ(finetune->optim.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(finetune->optim.layer_decay, 0.65);
  EXPECT_DOUBLE_EQ(finetune->optim.label_smoothing, 0.1);
  EXPECT_DOUBLE_EQ(finetune->optim.grad_clip, 0.0);
  EXPECT_DOUBLE_EQ(finetune->model.drop_path_rate, 0.1);
  EXPECT_DOUBLE_EQ(finetune->eval.crop_fraction, 0.875);
  absl::StatusOr<EvalJobConfig> probe = ParseShipped("linear_probe_paper.yaml");
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(probe->ReadoutBlocks(), (std::vector<int64_t>{9}));
  EXPECT_EQ(probe->readout.pooling, "mean");
  EXPECT_EQ(probe->eval_data.path, "/data/imagenet/val");
  // The from-scratch presets train every layer at the same rate.
  for (const char* name :
       {"finetune_scratch_small.yaml", "finetune_scratch_100_labels_small.yaml"}) {
    absl::StatusOr<EvalJobConfig> scratch = ParseShipped(name);
    ASSERT_TRUE(scratch.ok()) << name << ": " << scratch.status();
    EXPECT_DOUBLE_EQ(scratch->optim.layer_decay, 1.0) << name;
    EXPECT_EQ(scratch->backbone.named, "random") << name;
  }
}

TEST(EvalConfigTest, FromScratchPresetIsDeitsViTWithoutLayerScale) {
  absl::StatusOr<EvalJobConfig> scratch = ParseShipped("finetune_scratch_small.yaml");
  ASSERT_TRUE(scratch.ok()) << scratch.status();
  EXPECT_EQ(scratch->model.layer_scale_init_value, 0.0);
  EXPECT_EQ(scratch->eval.max_images, 0) << "the whole test split";
}

TEST(EvalConfigTest, FinetuneGroupsScaleTheLearningRateByLayer) {
  absl::StatusOr<EvalJobConfig> config =
      Parse(absl::StrReplaceAll(kFinetune, {{"{preset: beit_small_fashion_mnist}",
                                             "{preset: beit_small_fashion_mnist, embed_dim: 32, "
                                             "depth: 2, num_heads: 2}"}}));
  ASSERT_TRUE(config.ok()) << config.status();
  BeitClassifier model(FinetuneConfigFrom(config->model, 10));
  std::vector<BeitParamGroup> groups = FinetuneParamGroups(model, *config);
  std::map<std::string, double> scale;
  std::map<std::string, double> decay;
  for (const BeitParamGroup& group : groups) {
    for (const std::string& name : group.param_names) {
      scale[name] = group.lr_scale;
      decay[name] = group.weight_decay;
    }
  }
  // depth 2: layer ids 0 (embeddings), 1-2 (blocks), 3 (head, fc_norm); scale 0.65^(3 - id).
  EXPECT_DOUBLE_EQ(scale.at("patch_embed.proj.weight"), std::pow(0.65, 3));
  EXPECT_DOUBLE_EQ(scale.at("cls_token"), std::pow(0.65, 3));
  EXPECT_DOUBLE_EQ(scale.at("blocks.0.attn.qkv.weight"), std::pow(0.65, 2));
  EXPECT_DOUBLE_EQ(scale.at("blocks.1.mlp.fc1.weight"), 0.65);
  EXPECT_DOUBLE_EQ(scale.at("head.weight"), 1.0);
  EXPECT_DOUBLE_EQ(scale.at("fc_norm.weight"), 1.0);
  EXPECT_DOUBLE_EQ(decay.at("head.weight"), 0.05);
  EXPECT_DOUBLE_EQ(decay.at("head.bias"), 0.0);
  EXPECT_DOUBLE_EQ(decay.at("cls_token"), 0.0);
  EXPECT_EQ(scale.size(), model->parameters().size());  // every parameter is trained
}

}  // namespace
}  // namespace peco::trainer
