// The perceptual loss over the BEiT trunk of a pre-training model (BeitTrunkExtractor): the value
// equals a hand computation from BeitMim's Embed/RunBlocks, gradients reach the reconstruction
// only, and the trunk is frozen.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "trainer/losses/beit_trunk_extractor.h"
#include "trainer/losses/perceptual_loss.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_vit.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

const std::vector<double> kMean = {0.3, 0.4, 0.5};
const std::vector<double> kStd = {0.2, 0.25, 0.3};

BeitVitConfig TinyBeit() {
  BeitVitConfig c;
  c.img_size = 16;
  c.patch_size = 4;
  c.embed_dim = 32;
  c.depth = 3;
  c.num_heads = 2;
  c.vocab_size = 24;
  c.drop_path_rate = 0.5;  // must not act: the extractor runs in eval mode
  return c;
}

BeitMim TrainedLookingBeit() {
  BeitMim model(TinyBeit());
  model->InitializeRandom(3);
  // Non-zero relative position bias, so the shared bias takes part in the comparison.
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    if (item.key().find("relative_position_bias_table") != std::string::npos) {
      item.value().normal_(0, 0.5);
    }
  }
  return model;
}

std::unique_ptr<PerceptualLoss> MakeLoss(BeitMim model, PerceptualLossConfig config) {
  ExtractorSource source{"pretrain checkpoint test", "/test", "abc"};
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = PerceptualLoss::Create(
      config, std::make_unique<BeitTrunkExtractor>(model.ptr(), kMean, kStd, source));
  EXPECT_TRUE(loss.ok()) << loss.status();
  return loss.ok() ? *std::move(loss) : nullptr;
}

PerceptualLossConfig Config(bool include_cls) {
  PerceptualLossConfig config;
  config.checkpoint = "/test";  // the timm extractor fields below are ignored
  config.blocks = {3, 1};
  config.layer_weights = {0.5, 2.0};
  config.include_cls_token = include_cls;
  return config;
}

torch::Tensor Images(int64_t seed, int64_t size) {
  torch::manual_seed(seed);
  return torch::rand({2, 3, size, size}) * 2 - 1;
}

// What the loss must be, from the model's own Embed and RunBlocks.
double HandLoss(BeitMim& model, const PerceptualLossConfig& config, const torch::Tensor& rec,
                const torch::Tensor& target) {
  torch::NoGradGuard no_grad;
  auto prepare = [&](const torch::Tensor& images) {
    torch::Tensor x = (images + 1) / 2;
    x = (x - torch::tensor(kMean).view({1, 3, 1, 1}).to(torch::kFloat32)) /
        torch::tensor(kStd).view({1, 3, 1, 1}).to(torch::kFloat32);
    if (x.size(2) != 16) {
      namespace F = torch::nn::functional;
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{16, 16})
                                .mode(torch::kBilinear)
                                .align_corners(false));
    }
    return model->Embed(x, torch::Tensor());
  };
  double total = 0;
  for (size_t i = 0; i < config.blocks.size(); ++i) {
    torch::Tensor a = model->RunBlocks(prepare(rec), config.blocks[i]);
    torch::Tensor b = model->RunBlocks(prepare(target), config.blocks[i]);
    if (!config.include_cls_token) {
      a = a.slice(1, 1);
      b = b.slice(1, 1);
    }
    total += config.layer_weights[i] * (a - b).pow(2).mean().item<double>();
  }
  return total;
}

TEST(BeitPerceptualTest, LossEqualsTheHandComputationFromRunBlocks) {
  for (bool include_cls : {true, false}) {
    for (int64_t size : {16, 24}) {  // 24 is resized to the BEiT's 16
      BeitMim model = TrainedLookingBeit();
      PerceptualLossConfig config = Config(include_cls);
      auto loss = MakeLoss(model, config);
      ASSERT_NE(loss, nullptr);
      EXPECT_FALSE(model->is_training());
      const torch::Tensor rec = Images(1, size), target = Images(2, size);
      std::vector<torch::Tensor> per_block;
      const double value = loss->Compute(rec, target, &per_block).item<double>();
      EXPECT_GT(value, 0.0);
      EXPECT_NEAR(value, HandLoss(model, config, rec, target), 1e-6 * std::max(1.0, value))
          << "include_cls " << include_cls << " size " << size;
      ASSERT_EQ(per_block.size(), 2u);
      EXPECT_EQ(loss->Features(rec)[0].size(1), include_cls ? 17 : 16);
      EXPECT_EQ(loss->source(), "pretrain checkpoint test");
    }
  }
}

TEST(BeitPerceptualTest, GradientsReachTheReconstructionOnlyAndTheTrunkStaysFrozen) {
  BeitMim model = TrainedLookingBeit();
  model->train();  // the extractor must switch it to eval and freeze it
  auto loss = MakeLoss(model, Config(true));
  ASSERT_NE(loss, nullptr);
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : model->named_parameters()) {
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    before[item.key()] = item.value().detach().clone();
  }
  torch::Tensor rec = Images(3, 16).requires_grad_(true);
  torch::Tensor target = Images(4, 16).requires_grad_(true);
  torch::Tensor value = loss->Compute(rec, target);
  ASSERT_TRUE(value.requires_grad());
  value.backward();
  ASSERT_TRUE(rec.grad().defined());
  EXPECT_GT(rec.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(target.grad().defined()) << "the target branch must not be differentiated";
  for (const auto& item : model->named_parameters()) {
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), before[item.key()])) << item.key();
  }
  // Eval mode: drop path (rate 0.5) does not act, so two passes agree exactly.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(loss->Features(rec)[0], loss->Features(rec)[0]));
}

TEST(BeitPerceptualTest, BlocksBeyondTheTrunkAreRefusedNamingTheField) {
  PerceptualLossConfig config = Config(true);
  config.blocks = {1, 4};
  ExtractorSource source{"pretrain checkpoint test", "/test", "abc"};
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = PerceptualLoss::Create(
      config,
      std::make_unique<BeitTrunkExtractor>(TrainedLookingBeit().ptr(), kMean, kStd, source));
  ASSERT_FALSE(loss.ok());
  EXPECT_THAT(loss.status().message(), HasSubstr("loss.perceptual.blocks"));
  EXPECT_THAT(loss.status().message(), HasSubstr("1..3"));
}

TEST(BeitPerceptualTest, BlockTokensAreTheRunBlocksOutputs) {
  BeitMim model = TrainedLookingBeit();
  model->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = Images(5, 16);
  std::vector<torch::Tensor> tokens = model->BlockTokens(x, {2, 1, 3});
  ASSERT_EQ(tokens.size(), 3u);
  const torch::Tensor embedded = model->Embed(x, torch::Tensor());
  EXPECT_TRUE(torch::allclose(tokens[0], model->RunBlocks(embedded, 2)));
  EXPECT_TRUE(torch::allclose(tokens[1], model->RunBlocks(embedded, 1)));
  EXPECT_TRUE(torch::allclose(tokens[2], model->RunBlocks(embedded, 3)));
  // BlockFeatures stays the mean of the patch tokens.
  EXPECT_TRUE(torch::allclose(model->BlockFeatures(x, {3})[0], tokens[2].slice(1, 1).mean(1)));
}

}  // namespace
}  // namespace peco::trainer
