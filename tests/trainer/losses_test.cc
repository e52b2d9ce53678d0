// Perceptual loss, vector quantizer and GAN loss terms.
#include <ATen/CPUGeneratorImpl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_util/files.h"
#include "trainer/io/torch_file.h"
#include "trainer/losses/gan_loss.h"
#include "trainer/losses/perceptual_loss.h"
#include "trainer/models/vector_quantizer.h"
#include "trainer/models/weights.h"

namespace peco::trainer {
namespace {

using ::peco::testing::ScopedTempDir;
using ::testing::HasSubstr;

PerceptualLossConfig TinyPerceptual() {
  PerceptualLossConfig config;
  config.extractor.img_size = 16;
  config.extractor.patch_size = 4;
  config.extractor.embed_dim = 32;
  config.extractor.depth = 3;
  config.extractor.num_heads = 2;
  config.blocks = {1, 3};
  config.random_seed = 1;
  return config;
}

std::unique_ptr<PerceptualLoss> MustCreate(const PerceptualLossConfig& config) {
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = PerceptualLoss::Create(config);
  EXPECT_TRUE(loss.ok()) << loss.status();
  return loss.ok() ? *std::move(loss) : nullptr;
}

torch::Tensor Images(int64_t seed, int64_t size = 16) {
  torch::manual_seed(seed);
  return torch::rand({2, 3, size, size}) * 2 - 1;
}

TEST(PerceptualLossTest, ZeroForIdenticalInputsPositiveOtherwise) {
  auto loss = MustCreate(TinyPerceptual());
  ASSERT_NE(loss, nullptr);
  EXPECT_EQ(loss->source(), "random (seed 1)");
  const torch::Tensor a = Images(1);
  const torch::Tensor b = Images(2);
  std::vector<torch::Tensor> per_block;
  torch::Tensor same = loss->Compute(a, a.clone(), &per_block);
  EXPECT_EQ(same.dim(), 0);
  EXPECT_EQ(same.item<float>(), 0.0f);
  ASSERT_EQ(per_block.size(), 2u);
  torch::Tensor diff = loss->Compute(a, b, &per_block);
  EXPECT_GT(diff.item<float>(), 0.0f);
  ASSERT_EQ(per_block.size(), 2u);
  EXPECT_NEAR((per_block[0] + per_block[1]).item<float>(), diff.item<float>(), 1e-6);
  // Inputs of another size are resized to the extractor's, not rejected.
  torch::Tensor resized = loss->Compute(Images(3, 24), Images(4, 24));
  EXPECT_GT(resized.item<float>(), 0.0f);
}

TEST(PerceptualLossTest, LayerWeightsScaleBlockTerms) {
  PerceptualLossConfig config = TinyPerceptual();
  auto plain = MustCreate(config);
  config.layer_weights = {2.0, 0.0};
  auto weighted = MustCreate(config);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(weighted, nullptr);
  const torch::Tensor a = Images(5), b = Images(6);
  std::vector<torch::Tensor> plain_terms, weighted_terms;
  plain->Compute(a, b, &plain_terms);
  torch::Tensor total = weighted->Compute(a, b, &weighted_terms);
  EXPECT_NEAR(weighted_terms[0].item<float>(), 2 * plain_terms[0].item<float>(), 1e-6);
  EXPECT_EQ(weighted_terms[1].item<float>(), 0.0f);
  EXPECT_NEAR(total.item<float>(), 2 * plain_terms[0].item<float>(), 1e-6);
}

// normalize: token compares unit-length token features (LPIPS's channel normalisation): the
// term is mean over tokens of the summed squared difference, bounded by 4, and without CLS the
// tokens are the patch tokens only.
TEST(PerceptualLossTest, TokenNormalisedTermMatchesItsDefinition) {
  PerceptualLossConfig config = TinyPerceptual();
  config.normalize = "token";
  config.include_cls_token = false;
  auto loss = MustCreate(config);
  ASSERT_NE(loss, nullptr);
  const torch::Tensor a = Images(7), b = Images(8);
  std::vector<torch::Tensor> terms;
  torch::Tensor total = loss->Compute(a, b, &terms);
  std::vector<torch::Tensor> fa = loss->Features(a), fb = loss->Features(b);
  ASSERT_EQ(fa[0].size(1), 16);  // 4x4 patches, no CLS
  double expected = 0;
  for (size_t l = 0; l < fa.size(); ++l) {
    torch::Tensor ua = fa[l] / fa[l].norm(2, -1, true), ub = fb[l] / fb[l].norm(2, -1, true);
    const double term = (ua - ub).pow(2).sum(-1).mean().item<double>();
    EXPECT_NEAR(terms[l].item<double>(), term, 1e-5) << "block " << config.blocks[l];
    EXPECT_LE(term, 4.0);
    expected += term;
  }
  EXPECT_NEAR(total.item<double>(), expected, 1e-5);
  config.normalize = "cosine";
  EXPECT_THAT(config.Validate("loss.perceptual.").message(),
              HasSubstr("loss.perceptual.normalize"));
}

TEST(PerceptualLossTest, GradientReachesReconstructionOnlyAndExtractorStaysFrozen) {
  auto loss = MustCreate(TinyPerceptual());
  ASSERT_NE(loss, nullptr);
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : loss->extractor().module().named_parameters()) {
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    before[item.key()] = item.value().detach().clone();
  }
  ASSERT_FALSE(before.empty());

  torch::Tensor rec = Images(7).requires_grad_(true);
  torch::Tensor target = Images(8).requires_grad_(true);
  torch::optim::Adam adam({rec}, torch::optim::AdamOptions(0.1));
  for (int step = 0; step < 2; ++step) {
    adam.zero_grad();
    torch::Tensor value = loss->Compute(rec, target);
    ASSERT_TRUE(value.requires_grad());
    value.backward();
    ASSERT_TRUE(rec.grad().defined());
    EXPECT_GT(rec.grad().abs().sum().item<double>(), 0.0);
    EXPECT_FALSE(target.grad().defined()) << "the target branch must not be differentiated";
    adam.step();
  }
  for (const auto& item : loss->extractor().module().named_parameters()) {
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
    EXPECT_FALSE(item.value().grad().defined()) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), before[item.key()])) << item.key() << " changed";
  }
}

TEST(PerceptualLossTest, SameSeedSameFeaturesDifferentSeedDifferent) {
  auto a = MustCreate(TinyPerceptual());
  auto b = MustCreate(TinyPerceptual());
  PerceptualLossConfig other = TinyPerceptual();
  other.random_seed = 2;
  auto c = MustCreate(other);
  const torch::Tensor x = Images(9);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> fa = a->Features(x), fb = b->Features(x), fc = c->Features(x);
  ASSERT_EQ(fa.size(), 2u);
  EXPECT_EQ(fa[0].sizes(), (std::vector<int64_t>{2, 17, 32}));
  EXPECT_TRUE(torch::equal(fa[1], fb[1]));
  EXPECT_FALSE(torch::equal(fa[1], fc[1]));
}

TEST(PerceptualLossTest, LoadsMocoStyleWeightsFile) {
  // Weights from an extractor with seed 5, saved MoCo v3 style; loading them into a config
  // with another seed must reproduce the seed-5 features.
  PerceptualLossConfig source_config = TinyPerceptual();
  source_config.random_seed = 5;
  auto source = MustCreate(source_config);
  ASSERT_NE(source, nullptr);
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& [name, tensor] : ModuleState(source->extractor().module())) {
    state.insert(absl::StrCat("module.base_encoder.", name), tensor);
  }
  state.insert("module.predictor.0.weight", torch::zeros({2, 2}));
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert("state_dict", c10::impl::toGenericDict(state));
  root.insert("epoch", int64_t{300});
  ScopedTempDir temp("losses_test");
  const std::string path = temp.Join("moco.pth");
  ASSERT_TRUE(WriteTorchFile(path, root).ok());

  PerceptualLossConfig config = TinyPerceptual();
  config.weights_path = path;
  auto loaded = MustCreate(config);
  ASSERT_NE(loaded, nullptr);
  EXPECT_EQ(loaded->source(), absl::StrCat("file ", path));
  torch::NoGradGuard no_grad;
  const torch::Tensor x = Images(10);
  EXPECT_TRUE(torch::allclose(loaded->Features(x)[1], source->Features(x)[1]));
  for (const auto& p : loaded->extractor().module().parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST(PerceptualLossTest, WeightsFileMissingAKeyIsRefusedNamingIt) {
  PerceptualLossConfig config = TinyPerceptual();
  auto source = MustCreate(config);
  ASSERT_NE(source, nullptr);
  c10::Dict<std::string, torch::Tensor> state;
  bool dropped = false;
  for (const auto& [name, tensor] : ModuleState(source->extractor().module())) {
    if (name == "norm.weight") {
      dropped = true;
      continue;
    }
    state.insert(name, tensor);
  }
  ASSERT_TRUE(dropped) << "the extractor has no norm.weight";
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert("state_dict", c10::impl::toGenericDict(state));
  ScopedTempDir temp("losses_test");
  const std::string path = temp.Join("missing_key.pth");
  ASSERT_TRUE(WriteTorchFile(path, root).ok());

  config.weights_path = path;
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = PerceptualLoss::Create(config);
  ASSERT_FALSE(loss.ok());
  EXPECT_THAT(loss.status().message(), HasSubstr("norm.weight"));
  EXPECT_THAT(loss.status().message(), HasSubstr(path));
}

TEST(PerceptualLossTest, WeightsFileWithWrongShapeOrMissingFileIsRefused) {
  ScopedTempDir temp("losses_test");
  PerceptualLossConfig config = TinyPerceptual();
  config.weights_path = temp.Join("absent.pth");
  absl::StatusOr<std::unique_ptr<PerceptualLoss>> loss = PerceptualLoss::Create(config);
  ASSERT_FALSE(loss.ok());
  EXPECT_THAT(loss.status().message(), HasSubstr(config.weights_path));

  auto source = MustCreate(TinyPerceptual());
  c10::Dict<std::string, torch::Tensor> state;
  for (const auto& [name, tensor] : ModuleState(source->extractor().module())) {
    state.insert(name, name == "norm.bias" ? torch::zeros({7}) : tensor);
  }
  const std::string path = temp.Join("bad_shape.pth");
  ASSERT_TRUE(WriteTorchFile(path, c10::impl::toGenericDict(state)).ok());
  config.weights_path = path;
  loss = PerceptualLoss::Create(config);
  ASSERT_FALSE(loss.ok());
  EXPECT_THAT(loss.status().message(), HasSubstr("norm.bias"));
}

TEST(PerceptualLossTest, ValidateRefusesBadConfigs) {
  PerceptualLossConfig config = TinyPerceptual();
  config.layer_weights = {1.0};
  absl::Status status = config.Validate("loss.perceptual.");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("loss.perceptual.layer_weights"));
  EXPECT_FALSE(PerceptualLoss::Create(config).ok());

  config = TinyPerceptual();
  config.layer_weights = {1.0, -1.0};
  EXPECT_THAT(config.Validate("p.").message(), HasSubstr("p.layer_weights"));

  config = TinyPerceptual();
  config.blocks = {4};
  status = config.Validate("loss.perceptual.");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("loss.perceptual.blocks"));

  config.blocks = {};
  EXPECT_THAT(config.Validate("x.").message(), HasSubstr("x.blocks"));

  config = TinyPerceptual();
  config.extractor.patch_size = 5;
  EXPECT_THAT(config.Validate("loss.perceptual.").message(),
              HasSubstr("loss.perceptual.extractor.patch_size"));
  EXPECT_TRUE(TinyPerceptual().Validate("x.").ok());
}

// ---------------------------------------------------------------------------------------------
// Vector quantizer.

VectorQuantizer MakeQuantizer(bool legacy, int64_t codes = 8, int64_t dim = 4,
                              int64_t dead_code_steps = 0) {
  VectorQuantizerConfig config;
  config.num_codes = codes;
  config.dim = dim;
  config.beta = 0.25;
  config.legacy_loss = legacy;
  config.dead_code_steps = dead_code_steps;
  torch::manual_seed(11);
  VectorQuantizer vq(config);
  torch::NoGradGuard no_grad;
  vq->codebook().copy_(torch::randn({codes, dim}));  // spread out, unlike the tiny default
  return vq;
}

// Brute-force nearest code for every [B, D, H, W] position, as [B, H, W].
torch::Tensor BruteForceIndices(const torch::Tensor& z, const torch::Tensor& codebook) {
  const int64_t b = z.size(0), h = z.size(2), w = z.size(3);
  torch::Tensor out = torch::empty({b, h, w}, torch::kInt64);
  for (int64_t i = 0; i < b; ++i) {
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        torch::Tensor v = z.index({i, torch::indexing::Slice(), y, x});
        double best = INFINITY;
        int64_t best_k = -1;
        for (int64_t k = 0; k < codebook.size(0); ++k) {
          const double d = (v - codebook[k]).pow(2).sum().item<double>();
          if (d < best) {
            best = d;
            best_k = k;
          }
        }
        out.index_put_({i, y, x}, best_k);
      }
    }
  }
  return out;
}

TEST(VectorQuantizerTest, IndicesAreBruteForceArgmin) {
  VectorQuantizer vq = MakeQuantizer(true);
  torch::manual_seed(12);
  torch::Tensor z = torch::randn({2, 4, 3, 5});
  QuantizerOutput out = vq->forward(z);
  torch::Tensor expected = BruteForceIndices(z, vq->codebook().detach());
  EXPECT_TRUE(torch::equal(out.indices, expected));
  EXPECT_TRUE(torch::equal(vq->Encode(z), expected));
  // z_q holds the chosen codes, laid out [B, D, H, W].
  torch::Tensor codes = vq->codebook().detach().index_select(0, expected.flatten());
  EXPECT_TRUE(torch::allclose(out.z_q, codes.view({2, 3, 5, 4}).permute({0, 3, 1, 2}), 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(vq->Lookup(expected), out.z_q, 1e-6, 1e-6));
}

// Loss value and gradients against the formulas. Both terms share the value mean((z_q - z)^2);
// they differ in where the gradient goes.
void CheckLossForm(bool legacy) {
  SCOPED_TRACE(legacy ? "legacy" : "standard");
  VectorQuantizer vq = MakeQuantizer(legacy);
  torch::manual_seed(13);
  torch::Tensor z = torch::randn({2, 4, 3, 3}).requires_grad_(true);
  QuantizerOutput out = vq->forward(z);
  torch::Tensor z_last = z.detach().permute({0, 2, 3, 1}).reshape({-1, 4});
  torch::Tensor z_q = vq->codebook().detach().index_select(0, out.indices.flatten());
  const double n = static_cast<double>(z_last.numel());
  const double mse = (z_q - z_last).pow(2).mean().item<double>();
  EXPECT_NEAR(out.loss.item<double>(), 1.25 * mse, 1e-6);

  out.loss.backward();
  const double z_weight = legacy ? 1.0 : 0.25;     // commitment term weight
  const double code_weight = legacy ? 0.25 : 1.0;  // codebook term weight
  torch::Tensor expected_z_grad =
      (z_weight * 2.0 / n * (z_last - z_q)).view({2, 3, 3, 4}).permute({0, 3, 1, 2});
  EXPECT_TRUE(torch::allclose(z.grad(), expected_z_grad, 1e-5, 1e-7));
  torch::Tensor expected_code_grad = torch::zeros({8, 4});
  expected_code_grad.index_add_(0, out.indices.flatten(), code_weight * 2.0 / n * (z_q - z_last));
  EXPECT_TRUE(torch::allclose(vq->codebook().grad(), expected_code_grad, 1e-5, 1e-7));
}

TEST(VectorQuantizerTest, LegacyLossForm) { CheckLossForm(true); }
TEST(VectorQuantizerTest, StandardLossForm) { CheckLossForm(false); }

TEST(VectorQuantizerTest, StraightThroughGradientIsIdentity) {
  VectorQuantizer vq = MakeQuantizer(true);
  torch::manual_seed(14);
  torch::Tensor z = torch::randn({1, 4, 2, 2}).requires_grad_(true);
  QuantizerOutput out = vq->forward(z);
  torch::Tensor upstream = torch::randn(out.z_q.sizes());
  (out.z_q * upstream).sum().backward();
  EXPECT_TRUE(torch::allclose(z.grad(), upstream));
}

TEST(VectorQuantizerTest, UsageCountsDistinctCodesAndPerplexityThenResets) {
  VectorQuantizer vq = MakeQuantizer(true);
  torch::manual_seed(15);
  std::vector<int64_t> histogram(8, 0);
  std::set<int64_t> used;
  for (int call = 0; call < 3; ++call) {
    torch::Tensor z = torch::randn({2, 4, 2, 3});
    QuantizerOutput out = vq->forward(z);
    for (int64_t i : std::vector<int64_t>(out.indices.flatten().data_ptr<int64_t>(),
                                          out.indices.flatten().data_ptr<int64_t>() + 12)) {
      ++histogram[i];
      used.insert(i);
    }
  }
  double entropy = 0;
  for (int64_t count : histogram) {
    if (count == 0) continue;
    const double p = count / 36.0;
    entropy -= p * std::log(p);
  }
  CodeUsage usage = vq->TakeUsage();
  EXPECT_EQ(usage.codes_used, static_cast<int64_t>(used.size()));
  EXPECT_GT(usage.codes_used, 1);
  EXPECT_NEAR(usage.perplexity, std::exp(entropy), 1e-9);
  CodeUsage empty = vq->TakeUsage();
  EXPECT_EQ(empty.codes_used, 0);
  EXPECT_EQ(empty.perplexity, 0.0);
  // Evaluation-mode calls do not count.
  vq->eval();
  vq->forward(torch::randn({2, 4, 2, 3}));
  EXPECT_EQ(vq->TakeUsage().codes_used, 0);
}

TEST(VectorQuantizerTest, SingleCodePerplexityIsOne) {
  VectorQuantizer vq = MakeQuantizer(true);
  torch::Tensor code = vq->codebook().detach()[3].clone();
  torch::Tensor z = code.view({1, 4, 1, 1}).expand({2, 4, 3, 3}).contiguous();
  vq->forward(z);
  CodeUsage usage = vq->TakeUsage();
  EXPECT_EQ(usage.codes_used, 1);
  EXPECT_NEAR(usage.perplexity, 1.0, 1e-12);
}

// Trains the quantizer on `device` for two steps on z near codes 0 and 2, then restarts the
// other six from rows of z; usage counting follows the codes to the device.
void ExpectRestartReplacesUnusedCodes(const torch::Device& device) {
  VectorQuantizer vq = MakeQuantizer(true, /*codes=*/8, /*dim=*/4, /*dead_code_steps=*/1);
  const torch::Tensor original = vq->codebook().detach().clone();
  vq->to(device);
  // z made of small perturbations of codes 0 and 2 only.
  torch::manual_seed(16);
  torch::Tensor centres = torch::stack({original[0], original[2]});  // [2, D]
  torch::Tensor pick = torch::randint(0, 2, {18}, torch::kInt64);
  torch::Tensor flat = centres.index_select(0, pick) + 1e-3 * torch::randn({18, 4});
  torch::Tensor z = flat.view({2, 3, 3, 4}).permute({0, 3, 1, 2}).contiguous().to(device);
  vq->forward(z);
  QuantizerOutput out = vq->forward(z);
  out.indices = out.indices.cpu();
  EXPECT_EQ(vq->TakeUsage().codes_used, 2);
  std::set<int64_t> used;
  for (int64_t i = 0; i < out.indices.numel(); ++i)
    used.insert(out.indices.flatten()[i].item<int64_t>());
  ASSERT_EQ(used, (std::set<int64_t>{0, 2}));
  at::Generator generator = at::detail::createCPUGenerator(17);
  const int64_t restarted = vq->RestartDeadCodes(z, generator);
  EXPECT_EQ(restarted, 8 - static_cast<int64_t>(used.size()));
  const torch::Tensor after = vq->codebook().detach().cpu();
  for (int64_t k = 0; k < 8; ++k) {
    if (used.count(k)) {
      EXPECT_TRUE(torch::equal(after[k], original[k])) << "used code " << k << " changed";
      continue;
    }
    const torch::Tensor distances = (flat - after[k]).abs().amax(1);  // [N]
    EXPECT_EQ(distances.min().item<float>(), 0.0f) << "code " << k << " is not a row of z";
  }
  // Counters were reset: nothing is dead right after a restart.
  EXPECT_EQ(vq->RestartDeadCodes(z, generator), 0);
}

TEST(VectorQuantizerTest, RestartDeadCodesReplacesUnusedCodesWithEncoderOutputs) {
  ExpectRestartReplacesUnusedCodes(torch::kCPU);
}

// bench/gpu/run runs this on a GPU machine; elsewhere it is skipped.
TEST(VectorQuantizerTest, TrainsAndRestartsCodesOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ExpectRestartReplacesUnusedCodes(torch::Device(torch::kCUDA, 0));
}

TEST(VectorQuantizerTest, RestartDisabledByDefault) {
  VectorQuantizer vq = MakeQuantizer(true);
  const torch::Tensor original = vq->codebook().detach().clone();
  torch::Tensor z = torch::zeros({1, 4, 2, 2});
  vq->forward(z);
  vq->forward(z);
  EXPECT_EQ(vq->RestartDeadCodes(z, at::detail::createCPUGenerator(1)), 0);
  EXPECT_TRUE(torch::equal(vq->codebook(), original));
}

TEST(VectorQuantizerTest, ValidateNamesFields) {
  VectorQuantizerConfig config;
  config.num_codes = 1;
  EXPECT_THAT(config.Validate("model.").message(), HasSubstr("model.n_embed"));
  config = VectorQuantizerConfig();
  config.dim = 0;
  EXPECT_THAT(config.Validate("model.").message(), HasSubstr("model.embed_dim"));
  config = VectorQuantizerConfig();
  config.beta = -0.1;
  EXPECT_THAT(config.Validate("model.").message(), HasSubstr("model.beta"));
  config = VectorQuantizerConfig();
  config.dead_code_steps = -1;
  EXPECT_THAT(config.Validate("model.").message(), HasSubstr("model.dead_code_steps"));
  config = VectorQuantizerConfig();
  config.dead_code_until_step = -5;
  EXPECT_THAT(config.Validate("model.").message(), HasSubstr("model.dead_code_until_step"));
  EXPECT_TRUE(VectorQuantizerConfig().Validate("model.").ok());
}

// ---------------------------------------------------------------------------------------------
// GAN terms.

TEST(GanLossTest, HingeDiscriminatorLossOnKnownLogits) {
  torch::Tensor real = torch::tensor({2.0, 0.5, -1.0});
  torch::Tensor fake = torch::tensor({-2.0, 0.0, 0.5});
  // relu(1 - real) = {0, 0.5, 2}; relu(1 + fake) = {0, 1, 1.5}.
  EXPECT_NEAR(HingeDiscriminatorLoss(real, fake).item<double>(), 0.5 * (2.5 / 3 + 2.5 / 3), 1e-6);
  // Confident and correct: zero loss.
  EXPECT_EQ(HingeDiscriminatorLoss(torch::full({4}, 3.0), torch::full({4}, -3.0)).item<double>(),
            0.0);
  EXPECT_NEAR(GeneratorLoss(fake).item<double>(), 0.5, 1e-6);
}

TEST(GanLossTest, AdaptiveWeightIsGradientNormRatio) {
  torch::manual_seed(18);
  torch::Tensor w = torch::randn({3, 4}).requires_grad_(true);
  torch::Tensor x = torch::randn({4});
  torch::Tensor y = torch::matmul(w, x);  // [3]
  torch::Tensor nll = y.pow(2).sum();
  torch::Tensor g = -3.0 * y.sum();
  // d nll / dW = 2 y x^T; d g / dW = -3 * 1 x^T.
  const torch::Tensor yd = y.detach();
  const double nll_norm = (2 * torch::outer(yd, x)).norm().item<double>();
  const double g_norm = (-3.0 * torch::outer(torch::ones({3}), x)).norm().item<double>();
  torch::Tensor weight = AdaptiveGanWeight(nll, g, w, 0.8);
  EXPECT_FALSE(weight.requires_grad());
  EXPECT_NEAR(weight.item<double>(), nll_norm / (g_norm + 1e-4) * 0.8, 1e-5);
  // The graphs are kept: both losses can still be differentiated.
  (nll + g).backward();
  EXPECT_TRUE(w.grad().defined());
}

TEST(GanLossTest, AdaptiveWeightIsClamped) {
  torch::Tensor w = torch::ones({2, 2}).requires_grad_(true);
  torch::Tensor nll = (w * 1000.0).pow(2).sum();
  torch::Tensor g = (w * 1e-9).sum();
  EXPECT_NEAR(AdaptiveGanWeight(nll, g, w, 0.5).item<double>(), 0.5 * 1e4, 1e-3);
}

}  // namespace
}  // namespace peco::trainer
