// Parity with the official MoCo v3 code: the perceptual ViT against its base encoder
// (golden/mocov3_vit_tiny.pt, weights from a release-format checkpoint), and one training step of
// the contrastive model (golden/mocov3_step_tiny.pt: loss, every gradient, the momentum encoder,
// BatchNorm statistics and the weights after AdamW).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "trainer/io/torch_file.h"
#include "trainer/losses/timm_vit_extractor.h"
#include "trainer/models/moco_v3.h"
#include "trainer/models/timm_vit.h"

namespace peco::trainer {
namespace {

const std::string kGolden = std::string(PECO_REFERENCE_DIR) + "/golden/";

TimmVitConfig TinyConfig() {
  TimmVitConfig config;
  config.img_size = 32;
  config.patch_size = 8;
  config.embed_dim = 32;
  config.depth = 4;
  config.num_heads = 2;
  return config;
}

TEST(MocoV3ParityTest, BlockOutputsMatchGolden) {
  torch::set_num_threads(2);
  TimmVit vit(TinyConfig());
  ASSERT_TRUE(LoadTimmVitWeights(kGolden + "mocov3_vit_tiny_checkpoint.pth.tar", vit).ok());
  vit->eval();
  auto golden = ReadTorchFile(kGolden + "mocov3_vit_tiny.pt");
  ASSERT_TRUE(golden.ok()) << golden.status();
  torch::Tensor input = DictGet(*golden, "input", "")->toTensor();
  auto outputs_value = DictGet(*golden, "block_outputs", "");
  ASSERT_TRUE(outputs_value.ok());
  c10::List<c10::IValue> expected = outputs_value->toList();
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> outputs = vit->BlockOutputs(input, {2, 4});
  ASSERT_EQ(outputs.size(), expected.size());
  for (size_t i = 0; i < outputs.size(); ++i) {
    torch::Tensor want = expected.get(i).toTensor();
    ASSERT_EQ(outputs[i].sizes(), want.sizes());
    EXPECT_TRUE(torch::allclose(outputs[i], want, 1e-4, 1e-4))
        << "block output " << i << " max diff " << (outputs[i] - want).abs().max().item<double>();
  }
}

TEST(MocoV3ParityTest, FixedSinCosEmbeddingEqualsTheCheckpoints) {
  auto checkpoint = ReadTorchFile(kGolden + "mocov3_vit_tiny_checkpoint.pth.tar");
  ASSERT_TRUE(checkpoint.ok());
  auto state = ToNamedTensors(*DictGet(*checkpoint, "state_dict", ""), "");
  ASSERT_TRUE(state.ok());
  torch::Tensor stored;
  for (const auto& [name, tensor] : *state) {
    if (name == "module.base_encoder.pos_embed") stored = tensor;
  }
  ASSERT_TRUE(stored.defined());
  EXPECT_TRUE(torch::allclose(SinCosPositionEmbedding(4, 32), stored, 1e-5, 1e-5));
}

TEST(MocoV3ParityTest, MisShapedCheckpointIsRefusedNamingTheKey) {
  TimmVitConfig config = TinyConfig();
  config.embed_dim = 64;  // every weight now has the wrong shape
  TimmVit vit(config);
  torch::Tensor before = vit->named_parameters()["blocks.0.attn.qkv.weight"].clone();
  absl::Status status = LoadTimmVitWeights(kGolden + "mocov3_vit_tiny_checkpoint.pth.tar", vit);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("cls_token"), std::string::npos) << status;
  EXPECT_NE(status.message().find("shape"), std::string::npos) << status;
  // Nothing was half-loaded.
  EXPECT_TRUE(torch::equal(before, vit->named_parameters()["blocks.0.attn.qkv.weight"]));
}

TEST(MocoV3ParityTest, CheckpointMissingBlocksIsRefusedNamingTheKey) {
  TimmVitConfig config = TinyConfig();
  config.depth = 6;  // the file has 4 blocks
  TimmVit vit(config);
  absl::Status status = LoadTimmVitWeights(kGolden + "mocov3_vit_tiny_checkpoint.pth.tar", vit);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("missing key 'blocks.4."), std::string::npos) << status;
}

// The golden step's tensors by name, `module.` prefix dropped.
std::map<std::string, torch::Tensor> GoldenTensors(const c10::IValue& golden, const char* key) {
  auto value = DictGet(golden, key, "");
  EXPECT_TRUE(value.ok()) << key;
  auto named = ToNamedTensors(*value, key);
  EXPECT_TRUE(named.ok()) << named.status();
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : *named) {
    out[name.rfind("module.", 0) == 0 ? name.substr(7) : name] = tensor;
  }
  return out;
}

MocoV3Config GoldenStepConfig() {
  MocoV3Config config;
  config.vit.img_size = 32;
  config.vit.patch_size = 8;
  config.vit.embed_dim = 32;
  config.vit.depth = 2;
  config.vit.num_heads = 2;
  config.dim = 16;
  config.mlp_dim = 64;
  return config;
}

TEST(MocoV3ParityTest, OneTrainingStepMatchesGolden) {
  torch::set_num_threads(2);
  auto golden = ReadTorchFile(kGolden + "mocov3_step_tiny.pt");
  ASSERT_TRUE(golden.ok()) << golden.status();
  MocoV3 model(GoldenStepConfig());
  std::map<std::string, torch::Tensor> before = GoldenTensors(*golden, "state_dict_before");
  {
    torch::NoGradGuard no_grad;
    size_t loaded = 0;
    for (auto& item : model->named_parameters()) {
      ASSERT_TRUE(before.count(item.key())) << item.key();
      item.value().copy_(before[item.key()]);
      ++loaded;
    }
    for (auto& item : model->named_buffers()) {
      ASSERT_TRUE(before.count(item.key())) << item.key();
      item.value().copy_(before[item.key()]);
      ++loaded;
    }
    EXPECT_EQ(loaded, before.size()) << "every tensor of the official state dict has a home";
  }
  model->train();
  const torch::Tensor x1 = DictGet(*golden, "x1", "")->toTensor();
  const torch::Tensor x2 = DictGet(*golden, "x2", "")->toTensor();
  ContrastiveLossOptions options;
  options.temperature = 0.2;
  torch::Tensor loss = model->Loss(x1, x2, /*m=*/0.99, options);
  const double want_loss = DictGet(*golden, "loss", "")->toTensor().item<double>();
  EXPECT_NEAR(loss.item<double>(), want_loss, 1e-4 * std::max(1.0, std::abs(want_loss)));
  loss.backward();

  std::map<std::string, torch::Tensor> grads = GoldenTensors(*golden, "grads");
  std::vector<torch::Tensor> trainable = model->TrainableParameters();
  size_t with_grad = 0;
  for (auto& item : model->named_parameters()) {
    const torch::Tensor& p = item.value();
    if (!grads.count(item.key())) {
      EXPECT_FALSE(p.grad().defined() && p.grad().abs().sum().item<double>() > 0)
          << item.key() << " gets a gradient the official step does not";
      continue;
    }
    ++with_grad;
    ASSERT_TRUE(p.grad().defined()) << item.key();
    // Tolerance 1e-4 relative to the tensor's scale: the CLS token's gradients reach 10^2, and
    // its elements that cancel to near zero carry the rounding of the large terms.
    const torch::Tensor& want = grads[item.key()];
    const double scale = std::max(1.0, want.abs().max().item<double>());
    EXPECT_TRUE(torch::allclose(p.grad(), want, 1e-4, 1e-4 * scale))
        << item.key() << " max diff " << (p.grad() - want).abs().max().item<double>() << " (scale "
        << scale << ")";
  }
  EXPECT_EQ(with_grad, grads.size());
  EXPECT_EQ(trainable.size(), grads.size())
      << "trainable = the parameters the official step trains";

  torch::optim::AdamW optimizer(
      trainable,
      torch::optim::AdamWOptions(1e-3).betas(std::make_tuple(0.9, 0.999)).weight_decay(0.1));
  optimizer.step();
  std::map<std::string, torch::Tensor> after = GoldenTensors(*golden, "state_dict_after");
  // AdamW's first step moves each weight by about lr * g / (|g| + eps): where the gradient is
  // rounding noise (zero in exact arithmetic: the key bias, which the softmax ignores, and the
  // final norm's bias, which the projector's BatchNorm removes; |g| < 1e-6 here, against
  // 1e-3 and more elsewhere) the step's sign is noise in both implementations, so there the
  // weights are checked to have moved at most one step.
  constexpr double kLr = 1e-3;
  auto expect_after = [&](const std::string& name, const torch::Tensor& got) {
    ASSERT_TRUE(after.count(name)) << name;
    const torch::Tensor want = after[name].to(got.scalar_type());
    torch::Tensor decided = torch::ones_like(got, torch::kBool);
    if (grads.count(name)) decided = grads[name].abs() > 1e-6;
    const torch::Tensor diff = (got - want).abs();
    const torch::Tensor tolerance = 1e-4 + 1e-4 * want.abs();
    EXPECT_TRUE((diff <= tolerance).logical_or(decided.logical_not()).all().item<bool>())
        << name << " max diff " << diff.masked_select(decided).max().item<double>();
    EXPECT_TRUE((diff <= 2 * kLr + 1e-6).all().item<bool>())
        << name << " max diff where the gradient is noise " << diff.max().item<double>();
  };
  for (auto& item : model->named_parameters()) expect_after(item.key(), item.value());
  for (auto& item : model->named_buffers()) expect_after(item.key(), item.value());
}

TEST(MocoV3ParityTest, ContrastiveLossAgainstADirectComputation) {
  torch::manual_seed(3);
  const torch::Tensor q = torch::randn({3, 5});
  const torch::Tensor k = torch::randn({6, 5});  // two ranks' keys; this is rank 1
  ContrastiveLossOptions options;
  options.temperature = 0.5;
  options.rank = 1;
  double sum = 0;
  for (int i = 0; i < 3; ++i) {
    std::vector<double> logits;
    for (int j = 0; j < 6; ++j) {
      logits.push_back((q[i] / q[i].norm()).dot(k[j] / k[j].norm()).item<double>() / 0.5);
    }
    double denominator = 0;
    for (double l : logits) denominator += std::exp(l);
    sum += -(logits[3 + i] - std::log(denominator));
  }
  EXPECT_NEAR(ContrastiveLoss(q, k, options).item<double>(), sum / 3 * 2 * 0.5, 1e-5);
}

TEST(MocoV3ParityTest, InitialisationFollowsMocoV3) {
  MocoV3Config config = GoldenStepConfig();
  torch::manual_seed(0);
  MocoV3 model(config);
  model->InitializeMocoV3(7);
  auto params = model->named_parameters();
  // qkv: uniform with bound sqrt(6 / (96 / 3 + 32)); fc1: xavier sqrt(6 / (128 + 32)).
  const double qkv_bound = std::sqrt(6.0 / 64), fc1_bound = std::sqrt(6.0 / 160);
  const torch::Tensor qkv = params["base_encoder.blocks.0.attn.qkv.weight"];
  EXPECT_LE(qkv.abs().max().item<double>(), qkv_bound);
  EXPECT_GT(qkv.abs().max().item<double>(), 0.9 * qkv_bound);
  const torch::Tensor fc1 = params["base_encoder.blocks.1.mlp.fc1.weight"];
  EXPECT_LE(fc1.abs().max().item<double>(), fc1_bound);
  EXPECT_GT(fc1.abs().max().item<double>(), 0.9 * fc1_bound);
  EXPECT_EQ(params["base_encoder.blocks.0.attn.qkv.bias"].abs().sum().item<double>(), 0);
  EXPECT_LT(params["base_encoder.cls_token"].abs().max().item<double>(), 1e-5);
  // The momentum encoder starts as the base encoder; the frozen projection has no gradient.
  for (auto& item : params) {
    if (item.key().rfind("momentum_encoder.", 0) != 0) continue;
    const std::string base = "base_encoder." + item.key().substr(17);
    EXPECT_TRUE(torch::equal(item.value(), params[base])) << item.key();
    EXPECT_FALSE(item.value().requires_grad()) << item.key();
  }
  EXPECT_FALSE(params["base_encoder.patch_embed.proj.weight"].requires_grad());
  EXPECT_FALSE(params["base_encoder.pos_embed"].requires_grad());
  config.stop_grad_conv1 = false;
  MocoV3 trained_conv(config);
  EXPECT_TRUE(
      trained_conv->named_parameters()["base_encoder.patch_embed.proj.weight"].requires_grad());
}

}  // namespace
}  // namespace peco::trainer
