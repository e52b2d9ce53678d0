// GumbelQuantizer: gradients reach the logits through the relaxation, a very low temperature
// gives the one-hot of the noisy argmax, the KL to the uniform prior, evaluation by argmax, the
// schedules, usage statistics and refused settings.
#include "trainer/models/gumbel_quantizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

GumbelQuantizerConfig SmallConfig(bool straight_through = false) {
  GumbelQuantizerConfig config;
  config.num_codes = 16;
  config.dim = 4;
  config.straight_through = straight_through;
  return config;
}

at::Generator Seeded(uint64_t seed) {
  at::Generator generator = at::detail::createCPUGenerator(seed);
  return generator;
}

TEST(GumbelQuantizerTest, GradientsReachTheLogitsThroughTheRelaxation) {
  for (bool straight_through : {false, true}) {
    torch::manual_seed(1);
    GumbelQuantizer quantizer(SmallConfig(straight_through));
    quantizer->train();
    torch::Tensor z = torch::randn({2, 4, 3, 3}, torch::requires_grad());
    GumbelOutput out = quantizer->forward(z, /*temperature=*/1.0, Seeded(7));
    ASSERT_EQ(out.z_q.sizes(), z.sizes());
    torch::Tensor target = torch::randn_like(out.z_q);
    ((out.z_q - target).pow(2).mean() + out.kl).backward();
    const torch::Tensor& grad = quantizer->named_parameters()["proj.weight"].grad();
    ASSERT_TRUE(grad.defined()) << "straight_through " << straight_through;
    EXPECT_GT(grad.abs().sum().item<double>(), 0) << "straight_through " << straight_through;
    EXPECT_TRUE(torch::isfinite(grad).all().item<bool>());
    EXPECT_GT(z.grad().abs().sum().item<double>(), 0) << "the encoder gets a gradient too";
  }
}

TEST(GumbelQuantizerTest, VeryLowTemperatureGivesTheOneHotOfTheNoisyArgmax) {
  torch::manual_seed(2);
  GumbelQuantizer quantizer(SmallConfig());
  quantizer->train();
  torch::Tensor z = torch::randn({2, 4, 3, 3});
  GumbelOutput out = quantizer->forward(z, /*temperature=*/1e-4, Seeded(11));
  // The same noise, drawn as documented: g = -log(-log(u)).
  torch::Tensor u = torch::empty_like(out.logits);
  at::Generator generator = Seeded(11);
  u.uniform_(std::numeric_limits<float>::min(), 1.0, generator);
  torch::Tensor sampled = (out.logits + -torch::log(-torch::log(u))).argmax(1);
  torch::Tensor expected = quantizer->Lookup(sampled);
  EXPECT_TRUE(torch::allclose(out.z_q, expected, 1e-5, 1e-5));
  // The noise matters: somewhere the sample is not the plain argmax.
  EXPECT_FALSE(torch::equal(sampled, out.indices));
}

TEST(GumbelQuantizerTest, KlToTheUniformPriorIsZeroOnlyForUniformLogits) {
  EXPECT_NEAR(KlToUniform(torch::zeros({1, 16, 2, 2})).abs().max().item<double>(), 0, 1e-6);
  EXPECT_NEAR(KlToUniform(torch::full({1, 16, 2, 2}, 3.0)).abs().max().item<double>(), 0, 1e-6);
  torch::manual_seed(3);
  torch::Tensor kl = KlToUniform(torch::randn({1, 16, 2, 2}));
  EXPECT_GT(kl.min().item<double>(), 0);
  // A certain choice costs log K.
  torch::Tensor certain = torch::zeros({1, 16, 1, 1});
  certain[0][5][0][0] = 1e4;
  EXPECT_NEAR(KlToUniform(certain).item<double>(), std::log(16.0), 1e-4);
}

TEST(GumbelQuantizerTest, EvaluationTakesTheArgmaxWithoutNoise) {
  torch::manual_seed(4);
  GumbelQuantizer quantizer(SmallConfig());
  quantizer->eval();
  torch::Tensor z = torch::randn({2, 4, 3, 3});
  GumbelOutput a = quantizer->forward(z, 1.0);
  GumbelOutput b = quantizer->forward(z, 1.0);
  EXPECT_TRUE(torch::equal(a.z_q, b.z_q));
  EXPECT_TRUE(torch::equal(a.indices, quantizer->Encode(z)));
  EXPECT_TRUE(torch::allclose(a.z_q, quantizer->Lookup(a.indices)));
  EXPECT_EQ(quantizer->TakeUsage().codes_used, 0) << "evaluation counts nothing";
}

TEST(GumbelQuantizerTest, UsageCountsTheArgmaxCodesOfTrainingCalls) {
  torch::manual_seed(5);
  GumbelQuantizer quantizer(SmallConfig());
  quantizer->train();
  torch::Tensor z = torch::randn({4, 4, 4, 4});
  GumbelOutput out = quantizer->forward(z, 1.0, Seeded(1));
  const int64_t distinct = std::get<0>(at::_unique(out.indices)).numel();
  CodeUsage usage = quantizer->TakeUsage();
  EXPECT_EQ(usage.codes_used, distinct);
  EXPECT_GT(usage.perplexity, 1.0);
  EXPECT_LE(usage.perplexity, static_cast<double>(distinct) + 1e-9);
  EXPECT_EQ(quantizer->TakeUsage().codes_used, 0) << "the window was reset";
}

TEST(GumbelQuantizerTest, KeyNamesAreTamingsGumbelQuantize) {
  GumbelQuantizer quantizer(SmallConfig());
  std::vector<std::string> names;
  for (const auto& item : quantizer->named_parameters()) names.push_back(item.key());
  EXPECT_EQ(names, (std::vector<std::string>{"proj.weight", "proj.bias", "embed.weight"}));
}

TEST(GumbelScheduleTest, TemperatureAnnealsByCosineAndKlWeightRampsLinearly) {
  GumbelSchedule schedule;
  schedule.temperature_start = 1.0;
  schedule.temperature_end = 1.0 / 16;
  schedule.temperature_steps = 1000;
  schedule.kl_weight = 6.6;
  schedule.kl_warmup_steps = 100;
  EXPECT_DOUBLE_EQ(schedule.Temperature(0), 1.0);
  EXPECT_NEAR(schedule.Temperature(500), (1.0 + 1.0 / 16) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(schedule.Temperature(1000), 1.0 / 16);
  EXPECT_DOUBLE_EQ(schedule.Temperature(5000), 1.0 / 16);
  for (int64_t step = 1; step <= 1000; ++step) {
    ASSERT_LE(schedule.Temperature(step), schedule.Temperature(step - 1)) << step;
  }
  EXPECT_DOUBLE_EQ(schedule.KlWeight(0), 0.0);
  EXPECT_DOUBLE_EQ(schedule.KlWeight(50), 3.3);
  EXPECT_DOUBLE_EQ(schedule.KlWeight(100), 6.6);
  EXPECT_DOUBLE_EQ(schedule.KlWeight(100000), 6.6);
  schedule.kl_warmup_steps = 0;
  schedule.temperature_steps = 0;
  EXPECT_DOUBLE_EQ(schedule.KlWeight(0), 6.6);
  EXPECT_DOUBLE_EQ(schedule.Temperature(0), 1.0 / 16);
}

TEST(GumbelScheduleTest, BadSettingsAreRefusedNamingTheField) {
  struct Case {
    std::function<void(GumbelQuantizerConfig&)> edit;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {[](GumbelQuantizerConfig& g) { g.schedule.temperature_start = 0; },
            "model.gumbel.temperature_start"},
           {[](GumbelQuantizerConfig& g) { g.schedule.temperature_end = -1; },
            "model.gumbel.temperature_end"},
           {[](GumbelQuantizerConfig& g) { g.schedule.temperature_steps = -5; },
            "model.gumbel.temperature_steps"},
           {[](GumbelQuantizerConfig& g) { g.schedule.kl_weight = -0.1; },
            "model.gumbel.kl_weight"},
           {[](GumbelQuantizerConfig& g) { g.schedule.kl_warmup_steps = -1; },
            "model.gumbel.kl_warmup_steps"},
           {[](GumbelQuantizerConfig& g) { g.num_codes = 1; }, "model.n_embed"},
       }) {
    GumbelQuantizerConfig config = SmallConfig();
    EXPECT_TRUE(config.Validate("model.").ok());
    c.edit(config);
    absl::Status status = config.Validate("model.");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.field + ":"));
  }
}

}  // namespace
}  // namespace peco::trainer
