#include "trainer/tasks/tokenizer_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

// A complete, valid config that needs no dataset on disk.
constexpr char kMinimal[] = R"(kind: tokenizer
seed: 3
data:
  source: synthetic
  image_size: 32
  synthetic_size: 64
  batch_size: 8
  num_workers: 1
  prefetch: 2
model:
  ch: 32
  ch_mult: [1, 2, 2]
  num_res_blocks: 1
  attn_resolutions: [8]
  z_channels: 32
  n_embed: 64
  embed_dim: 16
  beta: 0.25
loss:
  pixel: l1
  perceptual_weight: 0.1
  perceptual:
    seed: 0
    blocks: [2, 4]
    extractor: {img_size: 32, patch_size: 4, embed_dim: 64, depth: 4, num_heads: 2}
  gan:
    enabled: false
optim:
  optimizer: adam
  lr: 2.0e-3
  min_lr: 1.0e-4
  warmup_steps: 5
  betas: [0.5, 0.9]
train:
  max_steps: 40
  precision: fp32
  output_dir: runs/test
)";

// kMinimal with the line `from` (which must occur exactly once) replaced by `to`.
std::string With(const std::string& from, const std::string& to) {
  const std::string text = kMinimal;
  const size_t pos = text.find(from + "\n");
  EXPECT_NE(pos, std::string::npos) << from;
  EXPECT_EQ(text.find(from + "\n", pos + 1), std::string::npos) << from << " occurs twice";
  if (pos == std::string::npos) return text;
  return text.substr(0, pos) + to + "\n" + text.substr(pos + from.size() + 1);
}

void ExpectInvalid(const std::string& yaml, const std::string& needle) {
  absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig(yaml, "bad.yaml");
  ASSERT_FALSE(config.ok()) << "accepted, expected an error naming " << needle;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument) << config.status();
  EXPECT_THAT(config.status().message(), HasSubstr(needle));
}

TEST(TokenizerConfigTest, SmallPresetParses) {
  const std::string path = absl::StrCat(PECO_SOURCE_DIR, "/configs/tokenizer_small.yaml");
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  // Parse without path checks so the test does not depend on the dataset package; a
  // dataset-dependent parse is below.
  absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig(*text, path, false);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->data.source, "fashion_mnist");
  EXPECT_EQ(config->data.image_size, 32);
  EXPECT_EQ(config->data.loader.batch_size, 32);
  EXPECT_EQ(config->model.vqgan.ch_mult, (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(config->model.vqgan.resolution, 32);
  EXPECT_EQ(config->model.quantizer.num_codes, 512);
  EXPECT_EQ(config->loss.perceptual.blocks, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(config->loss.perceptual.extractor.depth, 4);
  EXPECT_DOUBLE_EQ(config->optim.schedule.base_lr, 2.0e-3);
  EXPECT_EQ(config->optim.schedule.total_steps, config->train.max_steps);
  EXPECT_EQ(config->train.precision, "fp32");
  EXPECT_EQ(config->source_text, *text);
  if (std::filesystem::is_directory(config->data.path)) {
    absl::StatusOr<TokenizerJobConfig> loaded = LoadTokenizerConfig(path);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
  }
}

TEST(TokenizerConfigTest, DvaePresetsDifferFromTheirVqPresetsOnlyInTheQuantizer) {
  auto load = [](const std::string& name) {
    const std::string path = absl::StrCat(PECO_SOURCE_DIR, "/configs/", name);
    absl::StatusOr<std::string> text = ReadFileToString(path);
    EXPECT_TRUE(text.ok()) << path;
    absl::StatusOr<TokenizerJobConfig> config =
        ParseTokenizerConfig(text.ok() ? *text : "", path, /*check_paths=*/false);
    EXPECT_TRUE(config.ok()) << config.status();
    return config.ok() ? *config : TokenizerJobConfig();
  };
  for (const std::string size : {"small", "paper"}) {
    const TokenizerJobConfig vq = load(absl::StrCat("tokenizer_", size, ".yaml"));
    for (const bool pixel_only : {false, true}) {
      const std::string name =
          absl::StrCat("tokenizer_dvae_", pixel_only ? "pixel_" : "", size, ".yaml");
      const TokenizerJobConfig dvae = load(name);
      EXPECT_EQ(vq.model.quantizer_kind, "vq") << size;
      EXPECT_EQ(dvae.model.quantizer_kind, "gumbel") << name;
      EXPECT_EQ(dvae.model.vqgan.ch_mult, vq.model.vqgan.ch_mult) << name;
      EXPECT_EQ(dvae.model.vqgan.ch, vq.model.vqgan.ch) << name;
      EXPECT_EQ(dvae.model.quantizer.num_codes, vq.model.quantizer.num_codes) << name;
      EXPECT_EQ(dvae.data.image_size, vq.data.image_size) << name;
      EXPECT_EQ(dvae.train.max_steps, vq.train.max_steps) << name;
      EXPECT_NE(dvae.train.output_dir, vq.train.output_dir) << name;
      EXPECT_DOUBLE_EQ(dvae.model.gumbel.schedule.temperature_end, 1.0 / 16) << name;
      EXPECT_DOUBLE_EQ(dvae.model.gumbel.schedule.kl_weight, 6.6) << name;
      if (pixel_only) {
        EXPECT_EQ(dvae.loss.perceptual_weight, 0.0) << name;
      } else {
        EXPECT_EQ(dvae.loss.perceptual_weight, vq.loss.perceptual_weight) << name;
      }
    }
  }
}

TEST(TokenizerConfigTest, MinimalParsesWithDerivedFields) {
  absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig(kMinimal, "min.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->seed, 3u);
  EXPECT_EQ(config->data.loader.seed, 3u);
  EXPECT_EQ(config->data.loader.batch_size, 8);
  EXPECT_EQ(config->data.loader.num_threads, 1);
  EXPECT_EQ(config->data.loader.prefetch_batches, 2);
  EXPECT_EQ(config->model.quantizer.dim, 16);
  EXPECT_EQ(config->model.vqgan.resolution, 32);
  EXPECT_EQ(config->data.loader.transform.output_sizes, std::vector<int>{32});
  EXPECT_EQ(config->optim.schedule.total_steps, 40);
  EXPECT_EQ(config->optim.schedule.warmup_steps, 5);
  EXPECT_EQ(config->train.output_dir, "runs/test");
}

TEST(TokenizerConfigTest, UnknownTopLevelField) {
  ExpectInvalid(absl::StrCat(kMinimal, "extra_field: 1\n"), "extra_field");
  ExpectInvalid(absl::StrCat(kMinimal, "extra_field: 1\n"), "unknown field");
}

TEST(TokenizerConfigTest, ServiceJobSectionIsIgnoredButMustBeAMapping) {
  absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig(
      absl::StrCat(kMinimal, "job:\n  name: small\n  world_size: 2\n"), "job.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->train.max_steps, 40);
  ExpectInvalid(absl::StrCat(kMinimal, "job: 3\n"), "job");
}

TEST(TokenizerConfigTest, MisspelledNestedField) {
  ExpectInvalid(With("  ch_mult: [1, 2, 2]", "  ch_mlt: [1, 2, 2]"), "model.ch_mlt");
  ExpectInvalid(With("    seed: 0", "    sed: 0"), "loss.perceptual.sed");
  ExpectInvalid(With("    enabled: false", "    enabled: false\n    disc_wieght: 1"),
                "loss.gan.disc_wieght");
  ExpectInvalid(With("    extractor: {img_size: 32, patch_size: 4, embed_dim: 64, depth: 4, "
                     "num_heads: 2}",
                     "    extractor: {img_size: 32, patch_size: 4, embed_dim: 64, depth: 4, "
                     "heads: 2}"),
                "loss.perceptual.extractor.heads");
}

TEST(TokenizerConfigTest, WrongTypes) {
  ExpectInvalid(With("  batch_size: 8", "  batch_size: \"eight\""),
                "data.batch_size: expected an integer");
  ExpectInvalid(With("  ch_mult: [1, 2, 2]", "  ch_mult: 2"), "model.ch_mult: expected a list");
  ExpectInvalid(With("  lr: 2.0e-3", "  lr: fast"), "optim.lr: expected a number");
  ExpectInvalid(With("model:", "model: 3\nunused:"), "model: expected a mapping");
}

TEST(TokenizerConfigTest, OutOfRangeValues) {
  ExpectInvalid(With("  lr: 2.0e-3", "  lr: -1"), "optim.lr");
  ExpectInvalid(With("  batch_size: 8", "  batch_size: 0"), "data.batch_size");
  ExpectInvalid(With("  max_steps: 40", "  max_steps: 0"), "train.max_steps");
  ExpectInvalid(With("  betas: [0.5, 0.9]", "  betas: [0.5]"), "optim.betas");
  ExpectInvalid(With("  betas: [0.5, 0.9]", "  betas: [0.5, 1.0]"), "optim.betas");
  ExpectInvalid(With("  min_lr: 1.0e-4", "  min_lr: 1.0"), "optim.min_lr");
  ExpectInvalid(With("  image_size: 32", "  image_size: 4"), "data.image_size");
  ExpectInvalid(With("  n_embed: 64", "  n_embed: 1"), "model.n_embed");
  ExpectInvalid(With("  ch: 32", "  ch: 48"), "model.ch");
  ExpectInvalid(With("  precision: fp32", "  precision: fp16"), "train.precision");
  ExpectInvalid(With("  pixel: l1", "  pixel: l3"), "loss.pixel");
  ExpectInvalid(With("kind: tokenizer", "kind: pretrain"), "kind");
}

TEST(TokenizerConfigTest, QuantizerIsVqOrGumbelWithCheckedSchedules) {
  absl::StatusOr<TokenizerJobConfig> vq = ParseTokenizerConfig(kMinimal, "min.yaml");
  ASSERT_TRUE(vq.ok()) << vq.status();
  EXPECT_EQ(vq->model.quantizer_kind, "vq");
  absl::StatusOr<TokenizerJobConfig> gumbel = ParseTokenizerConfig(
      With("  beta: 0.25",
           "  quantizer: gumbel\n  gumbel: {temperature_end: 0.1, temperature_steps: 30, "
           "kl_weight: 2.0, kl_warmup_steps: 10, straight_through: true}"),
      "gumbel.yaml");
  ASSERT_TRUE(gumbel.ok()) << gumbel.status();
  EXPECT_TRUE(gumbel->model.gumbel_kind());
  EXPECT_EQ(gumbel->model.gumbel.num_codes, 64);  // n_embed and embed_dim apply to both
  EXPECT_EQ(gumbel->model.gumbel.dim, 16);
  EXPECT_TRUE(gumbel->model.gumbel.straight_through);
  EXPECT_DOUBLE_EQ(gumbel->model.gumbel.schedule.temperature_end, 0.1);
  EXPECT_DOUBLE_EQ(gumbel->model.gumbel.schedule.KlWeight(5), 1.0);

  ExpectInvalid(With("  beta: 0.25", "  quantizer: dvae"), "model.quantizer");
  ExpectInvalid(With("  beta: 0.25", "  quantizer: gumbel\n  gumbel: {temperature_start: 0}"),
                "model.gumbel.temperature_start: expected a temperature > 0");
  ExpectInvalid(With("  beta: 0.25", "  quantizer: gumbel\n  gumbel: {temperature_end: -0.5}"),
                "model.gumbel.temperature_end");
  ExpectInvalid(With("  beta: 0.25", "  quantizer: gumbel\n  gumbel: {kl_weight: -1}"),
                "model.gumbel.kl_weight: expected a value >= 0");
  ExpectInvalid(With("  beta: 0.25", "  quantizer: gumbel\n  gumbel: {temperture_end: 0.1}"),
                "temperture_end");
  ExpectInvalid(With("  beta: 0.25", "  quantizer: gumbel\n  dead_code_steps: 10"),
                "model.dead_code_steps");
}

TEST(TokenizerConfigTest, LoaderErrorsNameTheYamlKeys) {
  ExpectInvalid(With("  num_workers: 1", "  num_workers: 0"), "data.num_workers");
  ExpectInvalid(With("  prefetch: 2", "  prefetch: 0"), "data.prefetch:");
}

TEST(TokenizerConfigTest, ChMultMustDivideImageSize) {
  std::string yaml = With("  image_size: 32", "  image_size: 36");
  yaml = absl::StrReplaceAll(yaml, {{"ch_mult: [1, 2, 2]", "ch_mult: [1, 2, 2, 2]"}});
  ExpectInvalid(yaml, "model.ch_mult");
  ExpectInvalid(yaml, "36");
}

TEST(TokenizerConfigTest, PerceptualBlockBeyondExtractorDepth) {
  ExpectInvalid(With("    blocks: [2, 4]", "    blocks: [2, 5]"), "loss.perceptual.blocks");
  ExpectInvalid(With("    blocks: [2, 4]", "    blocks: [0]"), "loss.perceptual.blocks");
  ExpectInvalid(With("    blocks: [2, 4]", "    blocks: [2, 4]\n    layer_weights: [1.0]"),
                "loss.perceptual.layer_weights");
  // With the perceptual loss off, its network is not validated.
  absl::StatusOr<TokenizerJobConfig> off = ParseTokenizerConfig(
      absl::StrReplaceAll(With("    blocks: [2, 4]", "    blocks: [2, 5]"),
                          {{"perceptual_weight: 0.1", "perceptual_weight: 0"}}),
      "off.yaml");
  EXPECT_TRUE(off.ok()) << off.status();
}

TEST(TokenizerConfigTest, MissingPerceptualWeightsFile) {
  const std::string yaml =
      With("    seed: 0", "    seed: 0\n    weights: /nonexistent/peco/moco.pth");
  ExpectInvalid(yaml, "loss.perceptual.weights");
  EXPECT_TRUE(ParseTokenizerConfig(yaml, "x.yaml", /*check_paths=*/false).ok());
}

TEST(TokenizerConfigTest, MissingDatasetPath) {
  const std::string yaml =
      With("  source: synthetic", "  source: fashion_mnist\n  path: /nonexistent/peco/dataset");
  ExpectInvalid(yaml, "data.path");
  ExpectInvalid(yaml, "/nonexistent/peco/dataset");
  absl::StatusOr<TokenizerJobConfig> unchecked =
      ParseTokenizerConfig(yaml, "unchecked.yaml", /*check_paths=*/false);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status();
  EXPECT_EQ(unchecked->data.path, "/nonexistent/peco/dataset");
}

TEST(TokenizerConfigTest, InvalidYamlNamesSource) {
  absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig("data: [1, 2\n", "broken.yaml");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("broken.yaml"));
}

TEST(TokenizerConfigTest, AnImageFolderRunNeedsAHeldOutFolderButAnOldCheckpointConfigLoads) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / "peco_tokenizer_config_eval").string();
  std::filesystem::create_directories(dir + "/images");
  // As a checkpoint written before `eval:` existed stores it: image_folder, no eval section.
  const std::string yaml = absl::StrReplaceAll(
      kMinimal, {{"  source: synthetic\n",
                  absl::StrCat("  source: image_folder\n  path: ", dir, "/images\n")}});
  EXPECT_TRUE(ParseTokenizerConfig(yaml, "old.yaml", /*check_paths=*/false).ok());
  absl::StatusOr<TokenizerJobConfig> run = ParseTokenizerConfig(yaml, "run.yaml");
  ASSERT_FALSE(run.ok());
  EXPECT_THAT(run.status().message(), HasSubstr("eval.path"));
  EXPECT_TRUE(ParseTokenizerConfig(yaml + "eval: {enabled: false}\n", "off.yaml").ok());
  EXPECT_TRUE(
      ParseTokenizerConfig(yaml + absl::StrCat("eval: {path: ", dir, "/images}\n"), "val.yaml")
          .ok());
  absl::StatusOr<TokenizerJobConfig> missing =
      ParseTokenizerConfig(yaml + absl::StrCat("eval: {path: ", dir, "/nowhere}\n"), "m.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("eval.path"));
  EXPECT_THAT(missing.status().message(), HasSubstr("nowhere"));
}

}  // namespace
}  // namespace peco::trainer
