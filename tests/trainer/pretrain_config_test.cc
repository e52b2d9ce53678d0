// The pretrain job's configuration: defaults from the recipe, presets, errors that name the
// dotted field, the shipped configs, and the tokenizer/ViT compatibility check.
#include "trainer/tasks/pretrain_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "trainer/tasks/eval_config.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/tokenizer_config.h"

namespace peco::trainer {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// A complete, valid config that needs nothing on disk (parsed without path checks).
constexpr char kMinimal[] = R"(kind: pretrain
seed: 3
data: {source: synthetic, image_size: 32, synthetic_size: 64, batch_size: 8, num_workers: 1,
       prefetch: 2}
model: {preset: beit_small_fashion_mnist}
tokenizer: {checkpoint: /nonexistent/tokenizer}
masking: {num_masking_patches: 26, min_num_patches: 4}
train: {max_steps: 10, output_dir: /tmp/unused}
)";

absl::StatusOr<PretrainJobConfig> Parse(const std::string& yaml) {
  return ParsePretrainConfig(yaml, "test.yaml", /*check_paths=*/false);
}

std::string Error(const std::string& yaml) {
  absl::StatusOr<PretrainJobConfig> config = Parse(yaml);
  EXPECT_FALSE(config.ok()) << yaml;
  return config.ok() ? "" : std::string(config.status().message());
}

TEST(PretrainConfigTest, MinimalConfigTakesTheRecipesDefaults) {
  absl::StatusOr<PretrainJobConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model.grid(), 8);
  EXPECT_EQ(config->model.vocab_size, 512);
  EXPECT_EQ(config->masking.height, 8);
  EXPECT_EQ(config->masking.width, 8);
  EXPECT_EQ(config->optim.betas, (std::vector<double>{0.9, 0.999}));
  EXPECT_DOUBLE_EQ(config->optim.weight_decay, 0.05);
  EXPECT_DOUBLE_EQ(config->optim.grad_clip, 3.0);
  EXPECT_EQ(config->optim.schedule.total_steps, 10);
  EXPECT_TRUE(config->optim.schedule.warmup_from_zero);
  EXPECT_EQ(config->data.loader.seed, 3u);
  EXPECT_EQ(config->data.loader.transform.output_sizes, (std::vector<int>{32}));
}

TEST(PretrainConfigTest, ExplicitModelFieldsOverrideThePreset) {
  std::string yaml = absl::StrReplaceAll(
      kMinimal, {{"{preset: beit_small_fashion_mnist}",
                  "{preset: beit_small_fashion_mnist, depth: 2, drop_path_rate: 0.0}"}});
  absl::StatusOr<PretrainJobConfig> config = Parse(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model.depth, 2);
  EXPECT_EQ(config->model.embed_dim, 192);
  EXPECT_EQ(config->model.drop_path_rate, 0.0);
}

TEST(PretrainConfigTest, ErrorsNameTheDottedField) {
  EXPECT_THAT(Error(absl::StrReplaceAll(kMinimal, {{"preset:", "presett:"}})),
              HasSubstr("model.presett: unknown field"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kMinimal, {{"beit_small_fashion_mnist", "vit_huge"}})),
              HasSubstr("model.preset"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kMinimal,
                                        {{"num_masking_patches: 26", "num_masking_patches: 65"}})),
              HasSubstr("masking.num_masking_patches"));
  EXPECT_THAT(Error(absl::StrReplaceAll(
                  kMinimal, {{"checkpoint: /nonexistent/tokenizer", "checkpoint: ''"}})),
              HasSubstr("tokenizer.checkpoint"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kMinimal, {{"image_size: 32", "image_size: 48"}})),
              AllOf(HasSubstr("model.img_size"), HasSubstr("data.image_size 48")));
  EXPECT_THAT(Error(std::string(kMinimal) + "optim: {betas: [0.9]}\n"), HasSubstr("optim.betas"));
  EXPECT_THAT(Error(absl::StrReplaceAll(
                  kMinimal, {{"max_steps: 10", "max_steps: 10, collective_timeout: 0"}})),
              HasSubstr("train.collective_timeout"));
  EXPECT_THAT(Error(std::string(kMinimal) + "transform: {vit_std: [0.5, 0.5]}\n"),
              HasSubstr("transform.vit_std"));
  EXPECT_THAT(Error(absl::StrReplaceAll(kMinimal, {{"kind: pretrain", "kind: tokenizer"}})),
              HasSubstr("kind"));
}

TEST(PretrainConfigTest, PathsAreCheckedWhenAsked) {
  absl::StatusOr<PretrainJobConfig> config =
      ParsePretrainConfig(kMinimal, "test.yaml", /*check_paths=*/true);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("tokenizer.checkpoint"), HasSubstr("/nonexistent/tokenizer")));
}

TEST(PretrainConfigTest, TheServiceJobSectionIsIgnored) {
  EXPECT_TRUE(Parse(std::string(kMinimal) + "job: {name: mim, world_size: 2}\n").ok());
}

TEST(PretrainConfigTest, ShippedConfigsParse) {
  for (const char* name : {"pretrain_small.yaml", "pretrain_paper.yaml"}) {
    const std::string path = std::string(PECO_SOURCE_DIR) + "/configs/" + name;
    absl::StatusOr<std::string> text = ReadFileToString(path);
    ASSERT_TRUE(text.ok()) << text.status();
    absl::StatusOr<PretrainJobConfig> config = ParsePretrainConfig(*text, path, false);
    ASSERT_TRUE(config.ok()) << name << ": " << config.status();
  }
  absl::StatusOr<std::string> paper =
      ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/pretrain_paper.yaml");
  absl::StatusOr<PretrainJobConfig> config = ParsePretrainConfig(*paper, "paper", false);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->model.grid(), 14);
  EXPECT_EQ(config->model.vocab_size, 8192);
  EXPECT_EQ(config->masking.num_masking_patches, 75);
  EXPECT_EQ(config->masking.min_num_patches, 16);
  EXPECT_DOUBLE_EQ(config->optim.schedule.base_lr, 1.5e-3);
  EXPECT_DOUBLE_EQ(config->optim.schedule.min_lr, 1e-5);
  EXPECT_DOUBLE_EQ(config->optim.betas[1], 0.999);
  EXPECT_DOUBLE_EQ(config->model.drop_path_rate, 0.1);
  EXPECT_DOUBLE_EQ(config->model.layer_scale_init_value, 0.1);
}

TEST(PretrainConfigTest, TokenizerMustMatchTheGridAndVocabulary) {
  absl::StatusOr<PretrainJobConfig> config = Parse(kMinimal);
  ASSERT_TRUE(config.ok());
  TokenizerJobConfig tokenizer;
  tokenizer.model.vqgan.resolution = 32;
  tokenizer.model.vqgan.ch_mult = {1, 2, 2};  // f4: 8x8 tokens
  tokenizer.model.quantizer.num_codes = 512;
  PretrainJobConfig ok = *config;
  ASSERT_TRUE(ResolveTokenizerView(tokenizer, &ok).ok());
  EXPECT_EQ(ok.data.loader.transform.output_sizes, (std::vector<int>{32, 32}));

  tokenizer.model.vqgan.ch_mult = {1, 2};  // f2: 16x16 tokens
  PretrainJobConfig grid = *config;
  absl::Status status = ResolveTokenizerView(tokenizer, &grid);
  EXPECT_THAT(status.message(), AllOf(HasSubstr("token grid 16x16"), HasSubstr("patch grid 8x8"),
                                      HasSubstr("model.patch_size 4")));

  tokenizer.model.vqgan.ch_mult = {1, 2, 2};
  tokenizer.model.quantizer.num_codes = 1024;
  PretrainJobConfig vocab = *config;
  status = ResolveTokenizerView(tokenizer, &vocab);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr("model.vocab_size: 512"), HasSubstr("codebook size 1024")));

  // An explicit tokenizer view size changes the grid.
  tokenizer.model.quantizer.num_codes = 512;
  PretrainJobConfig sized = *config;
  sized.tokenizer.image_size = 64;
  EXPECT_THAT(ResolveTokenizerView(tokenizer, &sized).message(), HasSubstr("token grid 16x16"));
}

TEST(PretrainConfigTest, ForwardFlopsOfViTBase) {
  // ViT-B/16 MIM forward: ~17.6 GFLOPs for the trunk plus the lm_head on 75 tokens.
  const double flops = BeitMimForwardFlops(BeitBasePatch16Config(), 75);
  EXPECT_GT(flops, 30e9);
  EXPECT_LT(flops, 40e9);
}

// The reproduction study (scripts/reproduce, docs/RESULTS.md) compares MIM targets: its configs
// must line tokens up with patches, and its two tokenizers must differ only in the perceptual term.
TEST(PretrainConfigTest, ReproductionConfigsLineUpAndDifferOnlyInTheTarget) {
  auto text = [](const std::string& name) {
    absl::StatusOr<std::string> t =
        ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/reproduce/" + name);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : std::string();
  };
  absl::StatusOr<TokenizerJobConfig> pixel =
      ParseTokenizerConfig(text("tokenizer_pixel.yaml"), "tokenizer_pixel.yaml", false);
  absl::StatusOr<TokenizerJobConfig> perceptual =
      ParseTokenizerConfig(text("tokenizer_perceptual.yaml"), "tokenizer_perceptual.yaml", false);
  absl::StatusOr<PretrainJobConfig> pretrain =
      ParsePretrainConfig(text("pretrain.yaml"), "pretrain.yaml", false);
  ASSERT_TRUE(pixel.ok()) << pixel.status();
  ASSERT_TRUE(perceptual.ok()) << perceptual.status();
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();

  EXPECT_EQ(pixel->loss.perceptual_weight, 0.0);
  EXPECT_GT(perceptual->loss.perceptual_weight, 0.0);
  // Everything but `loss:`, the output directory and the file's comments is the same text.
  auto without_loss = [&](const std::string& name) {
    std::string kept;
    bool in_loss = false;
    for (absl::string_view line : absl::StrSplit(text(name), '\n')) {
      if (line.empty() || line[0] == '#') continue;
      if (line[0] != ' ') in_loss = absl::StartsWith(line, "loss:");
      if (in_loss || absl::StrContains(line, "output_dir:")) continue;
      absl::StrAppend(&kept, line, "\n");
    }
    return kept;
  };
  EXPECT_EQ(without_loss("tokenizer_pixel.yaml"), without_loss("tokenizer_perceptual.yaml"));

  // Token (i, j) is the code of patch (i, j): same image size, same grid, vocabulary = codebook.
  const int64_t downsample = int64_t{1} << (pixel->model.vqgan.ch_mult.size() - 1);
  EXPECT_EQ(pixel->data.image_size, pretrain->data.image_size);
  EXPECT_EQ(pixel->data.image_size / downsample, pretrain->model.grid());
  EXPECT_EQ(pixel->data.image_size % downsample, 0);
  EXPECT_EQ(pixel->model.quantizer.num_codes, pretrain->model.vocab_size);
  // The study's perceptual loss (docs/RESULTS.md): patch tokens, unit-length token features, the
  // weight balanced on the first batch.
  EXPECT_FALSE(perceptual->loss.perceptual.include_cls_token);
  EXPECT_EQ(perceptual->loss.perceptual.normalize, "token");
  EXPECT_EQ(perceptual->loss.perceptual_balance, "initial");
  EXPECT_GT(pixel->model.quantizer.dead_code_until_step, 0);
  EXPECT_LT(pixel->model.quantizer.dead_code_until_step, pixel->train.max_steps);
  for (const char* name : {"linear_probe.yaml", "finetune_100_labels.yaml", "supervised.yaml"}) {
    absl::StatusOr<EvalJobConfig> eval = ParseEvalConfig(text(name), name, false);
    ASSERT_TRUE(eval.ok()) << name << ": " << eval.status();
    EXPECT_EQ(eval->data.image_size, pretrain->data.image_size) << name;
    EXPECT_EQ(eval->model.img_size, pretrain->model.img_size) << name;
    EXPECT_EQ(eval->model.embed_dim, pretrain->model.embed_dim) << name;
    EXPECT_EQ(eval->model.depth, pretrain->model.depth) << name;
    EXPECT_EQ(eval->eval.split, "test") << name;
    EXPECT_EQ(eval->eval.max_images, 0) << name << ": the whole test split";
  }
}

}  // namespace
}  // namespace peco::trainer
