// The BEiT ViT: parity with the official MIM model (shared/golden/beit_mim_tiny.pt), official
// key lists of the ViT-B/16 presets, initialisation, masking semantics, the fine-tuning
// classifier and its conversion from a pre-training state, and the AdamW parameter groups.
#include "trainer/models/beit_vit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "trainer/engine/runtime.h"
#include "trainer/io/torch_file.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_optim.h"
#include "trainer/models/beit_weights.h"
#include "trainer/models/weights.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

const std::string kReference = PECO_REFERENCE_DIR;
// Std of a normal cut at +-1 std, relative to the std: sqrt(1 - 2 phi(1) / (Phi(1) - Phi(-1))).
constexpr double kTruncatedAtOneStd = 0.539559;

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

// Reads a field of the golden file's config dict.
c10::IValue ConfigField(const c10::IValue& config, const std::string& key) {
  auto value = DictGet(config, key, "config");
  EXPECT_TRUE(value.ok()) << value.status();
  return value.ok() ? *value : c10::IValue();
}

BeitVitConfig GoldenConfig(const c10::IValue& config) {
  BeitVitConfig c;
  c.img_size = ConfigField(config, "img_size").toInt();
  c.patch_size = ConfigField(config, "patch_size").toInt();
  c.in_chans = ConfigField(config, "in_chans").toInt();
  c.vocab_size = ConfigField(config, "vocab_size").toInt();
  c.embed_dim = ConfigField(config, "embed_dim").toInt();
  c.depth = ConfigField(config, "depth").toInt();
  c.num_heads = ConfigField(config, "num_heads").toInt();
  c.mlp_ratio = ConfigField(config, "mlp_ratio").toDouble();
  c.qkv_bias = ConfigField(config, "qkv_bias").toBool();
  c.layer_scale_init_value = ConfigField(config, "init_values").toDouble();
  c.use_abs_pos_emb = ConfigField(config, "use_abs_pos_emb").toBool();
  c.use_rel_pos_bias = ConfigField(config, "use_rel_pos_bias").toBool();
  c.use_shared_rel_pos_bias = ConfigField(config, "use_shared_rel_pos_bias").toBool();
  c.drop_path_rate = ConfigField(config, "drop_path_rate").toDouble();
  return c;
}

BeitVitConfig TinyConfig() {
  BeitVitConfig c;
  c.img_size = 16;
  c.patch_size = 4;  // 4x4 grid
  c.vocab_size = 24;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  c.num_classes = 5;
  return c;
}

std::vector<std::string> KeyLines(const NamedTensors& state) {
  std::vector<std::string> lines;
  for (const auto& [name, tensor] : state) {
    lines.push_back(absl::StrCat(name, " [", absl::StrJoin(tensor.sizes().vec(), ", "), "]"));
  }
  return lines;
}

std::vector<std::string> SpecLines(const std::string& file) {
  std::ifstream in(kReference + "/spec/keys/" + file);
  EXPECT_TRUE(in.good()) << file;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

int64_t CountParameters(const torch::nn::Module& module) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

torch::Tensor Param(const torch::nn::Module& module, const std::string& name) {
  return module.named_parameters()[name];
}

// ---------------------------------------------------------------------------------------------
// Parity with the official model.

// Loads the golden model onto `device`, checks key order and layout, and compares both kinds of
// logits with the official ones within `tolerance`.
void ExpectGoldenParity(const torch::Device& device, double tolerance) {
  auto golden = ReadTorchFile(kReference + "/golden/beit_mim_tiny.pt");
  ASSERT_TRUE(golden.ok()) << golden.status();
  const BeitVitConfig config = GoldenConfig(*DictGet(*golden, "config", "golden"));
  ASSERT_TRUE(config.Validate().ok()) << config.Validate();
  auto state = ToNamedTensors(*DictGet(*golden, "state_dict", "golden"), "golden state_dict");
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->size(), 40u);

  BeitMim model(config);
  // Same names in the same order as the official state_dict.
  EXPECT_EQ(KeyLines(StateDictInOfficialOrder(*model)), KeyLines(*state));
  // peco's relative_position_index has the official layout before anything is loaded.
  for (const auto& [name, tensor] : *state) {
    if (name == "rel_pos_bias.relative_position_index") {
      EXPECT_TRUE(torch::equal(model->named_buffers()[name], tensor));
    }
  }
  ASSERT_TRUE(LoadNamedTensors(*model, *state, "golden", /*strict=*/true).ok());
  // The golden table is non-zero, so the indexing is exercised.
  EXPECT_GT(Param(*model, "rel_pos_bias.relative_position_bias_table").abs().max().item<double>(),
            0.0);
  model->to(device);
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor input = DictGet(*golden, "input", "")->toTensor().to(device);
  torch::Tensor mask = DictGet(*golden, "bool_masked_pos", "")->toTensor().to(device);
  torch::Tensor want_all = DictGet(*golden, "logits_all_tokens", "")->toTensor();
  torch::Tensor want_masked = DictGet(*golden, "logits_masked", "")->toTensor();

  torch::Tensor all = model->AllTokenLogits(input, mask).cpu();
  ASSERT_EQ(all.sizes(), want_all.sizes());
  const double all_diff = MaxAbsDiff(all, want_all);
  std::printf("parity on %s: logits_all_tokens max abs diff %.3g\n", device.str().c_str(),
              all_diff);
  EXPECT_LT(all_diff, tolerance);

  torch::Tensor masked = model->forward(input, mask).cpu();
  ASSERT_EQ(masked.sizes(), want_masked.sizes());
  const double masked_diff = MaxAbsDiff(masked, want_masked);
  std::printf("parity on %s: logits_masked max abs diff %.3g\n", device.str().c_str(), masked_diff);
  EXPECT_LT(masked_diff, tolerance);
}

TEST(BeitVitTest, MimLogitsMatchTheOfficialModel) {
  torch::set_num_threads(2);
  ExpectGoldenParity(torch::kCPU, 1e-4);
}

// bench/gpu/run runs this on a GPU machine; elsewhere it is skipped.
TEST(BeitVitTest, MimLogitsMatchTheOfficialModelOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  // Full fp32 on the GPU (no TF32 in convolutions or matmuls), as the golden file was made.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  ExpectGoldenParity(torch::Device(torch::kCUDA, 0), 1e-4);
}

// bf16 autocast on the GPU: the step runs, gradients stay fp32 and the logits stay close to the
// fp32 ones (bf16 keeps ~3 significant digits).
TEST(BeitVitTest, Bf16AutocastStepOnCudaTracksFp32) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device cuda(torch::kCUDA, 0);
  BeitVitConfig config = BeitSmallFashionMnistConfig();
  torch::manual_seed(0);
  BeitMim model(config);
  model->to(cuda);
  model->train();
  torch::Tensor images = torch::randn({4, 3, config.img_size, config.img_size}, cuda);
  torch::Tensor masks = torch::rand({4, config.num_patches()}, cuda) < 0.4;
  torch::Tensor fp32;
  {
    torch::NoGradGuard no_grad;
    model->eval();
    fp32 = model->forward(images, masks).to(torch::kFloat32);
    model->train();
  }
  torch::Tensor bf16;
  {
    AutocastGuard autocast(/*enabled=*/true, cuda);
    bf16 = model->forward(images, masks);
  }
  EXPECT_EQ(bf16.scalar_type(), torch::kBFloat16);
  torch::Tensor targets = torch::randint(config.vocab_size, {bf16.size(0)},
                                         torch::TensorOptions(cuda).dtype(torch::kLong));
  torch::Tensor loss = torch::nn::functional::cross_entropy(bf16.to(torch::kFloat32), targets);
  loss.backward();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  for (const auto& p : model->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
    EXPECT_EQ(p.value().grad().scalar_type(), torch::kFloat32) << p.key();
  }
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor eval_bf16;
  {
    AutocastGuard autocast(/*enabled=*/true, cuda);
    eval_bf16 = model->forward(images, masks).to(torch::kFloat32);
  }
  const double scale = fp32.abs().max().item<double>();
  EXPECT_LT(MaxAbsDiff(eval_bf16, fp32) / scale, 0.05);
}

TEST(BeitVitTest, MisShapedStateIsRefusedNamingTheKeyAndNothingLoads) {
  auto golden = ReadTorchFile(kReference + "/golden/beit_mim_tiny.pt");
  ASSERT_TRUE(golden.ok());
  BeitVitConfig config = GoldenConfig(*DictGet(*golden, "config", "golden"));
  config.vocab_size = 65;  // only lm_head differs
  BeitMim model(config);
  const torch::Tensor before = Param(*model, "blocks.0.attn.qkv.weight").clone();
  auto state = ToNamedTensors(*DictGet(*golden, "state_dict", "golden"), "golden");
  absl::Status status = LoadNamedTensors(*model, *state, "golden", /*strict=*/true);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("lm_head.weight"));
  EXPECT_TRUE(torch::equal(before, Param(*model, "blocks.0.attn.qkv.weight")));
}

// ---------------------------------------------------------------------------------------------
// Official names and shapes.

TEST(BeitVitTest, BasePresetHasTheOfficialPretrainKeysInOrder) {
  BeitMim model(BeitBasePatch16Config());
  EXPECT_EQ(KeyLines(StateDictInOfficialOrder(*model)),
            SpecLines("beit_base_patch16_224_8k_vocab_pretrain.txt"));
  const int64_t params = CountParameters(*model);
  const int64_t head = 8192 * 768 + 8192;
  std::printf("BEiT ViT-B/16 MIM: %lld parameters (%lld without lm_head)\n",
              static_cast<long long>(params), static_cast<long long>(params - head));
  // BEiT-base is 86M parameters without the MIM head.
  EXPECT_NEAR(static_cast<double>(params - head) / 1e6, 86.0, 1.0);
}

TEST(BeitVitTest, FinetunePresetHasTheOfficialFinetuneKeysInOrder) {
  BeitClassifier model(FinetuneConfigFrom(BeitBasePatch16Config(), 1000));
  EXPECT_EQ(KeyLines(StateDictInOfficialOrder(*model)),
            SpecLines("beit_base_patch16_224_finetune.txt"));
  std::printf("BEiT ViT-B/16 classifier: %lld parameters\n",
              static_cast<long long>(CountParameters(*model)));
}

TEST(BeitVitTest, PresetsValidateAndBadFieldsAreNamed) {
  EXPECT_TRUE(BeitBasePatch16Config().Validate().ok());
  EXPECT_TRUE(BeitLargePatch16Config().Validate().ok());
  EXPECT_EQ(BeitLargePatch16Config().layer_scale_init_value, 1e-5);
  const BeitVitConfig small = BeitSmallFashionMnistConfig();
  EXPECT_TRUE(small.Validate().ok());
  EXPECT_EQ(small.grid(), 8);  // the 8x8 token grid of configs/tokenizer_small.yaml
  EXPECT_EQ(small.vocab_size, 512);

  BeitVitConfig bad = TinyConfig();
  bad.patch_size = 5;
  EXPECT_THAT(std::string(bad.Validate("model.").message()), HasSubstr("model.patch_size"));
  bad = TinyConfig();
  bad.num_heads = 3;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("num_heads"));
  bad = TinyConfig();
  bad.drop_path_rate = 1.0;
  EXPECT_THAT(std::string(bad.Validate().message()), HasSubstr("drop_path_rate"));
  bad = TinyConfig();
  bad.layer_scale_init_value = -1;
  auto created = CreateBeitMim(bad);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(created.status().message()), HasSubstr("layer_scale_init_value"));
  EXPECT_TRUE(CreateBeitClassifier(TinyConfig()).ok());
}

TEST(BeitVitTest, RelativePositionIndexHasTheOfficialLayout) {
  const torch::Tensor index = BeitRelativePositionIndex(14);
  ASSERT_EQ(index.sizes(), (std::vector<int64_t>{197, 197}));
  EXPECT_EQ(BeitNumRelativeDistance(14), 732);
  EXPECT_EQ(index[0][0].item<int64_t>(), 731);    // CLS -> CLS
  EXPECT_EQ(index[0][5].item<int64_t>(), 729);    // CLS -> token
  EXPECT_EQ(index[5][0].item<int64_t>(), 730);    // token -> CLS
  EXPECT_EQ(index[1][1].item<int64_t>(), 364);    // same patch: (13 * 27) + 13
  EXPECT_EQ(index[1][196].item<int64_t>(), 0);    // (0,0) to (13,13)
  EXPECT_EQ(index[196][1].item<int64_t>(), 728);  // (13,13) to (0,0)
  // (0,1) to (1,0): dh = -1, dw = +1.
  EXPECT_EQ(index[2][15].item<int64_t>(), (-1 + 13) * 27 + (1 + 13));
  // Patch-to-patch entries cover exactly the (2*14-1)^2 distances.
  EXPECT_EQ(std::get<0>(torch::_unique(index.slice(0, 1).slice(1, 1))).numel(), 729);
}

// ---------------------------------------------------------------------------------------------
// Initialisation.

BeitVitConfig InitConfig() {
  BeitVitConfig c;
  c.img_size = 32;
  c.patch_size = 4;
  c.vocab_size = 512;
  c.embed_dim = 256;
  c.depth = 4;
  c.num_heads = 4;
  c.num_classes = 300;
  return c;
}

TEST(BeitVitTest, MimInitialisationIsTheOfficialOne) {
  torch::manual_seed(3);
  BeitMim model(InitConfig());
  const double std = 0.02 * kTruncatedAtOneStd;
  for (const std::string name : {"blocks.0.attn.qkv.weight", "blocks.3.mlp.fc1.weight",
                                 "lm_head.weight", "patch_embed.proj.weight"}) {
    torch::Tensor w = Param(*model, name);
    EXPECT_NEAR(w.std().item<double>(), std, 0.04 * std) << name;
    EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.05 * std) << name;
    EXPECT_LE(w.abs().max().item<double>(), 0.02 + 1e-7) << name << ": cut at +-std";
    EXPECT_GT(w.abs().max().item<double>(), 0.019) << name;
  }
  for (int i = 0; i < 4; ++i) {
    const double scale = std::sqrt(2.0 * (i + 1));
    for (const std::string leaf : {"attn.proj.weight", "mlp.fc2.weight"}) {
      torch::Tensor w = Param(*model, absl::StrCat("blocks.", i, ".", leaf));
      EXPECT_NEAR(w.std().item<double>(), std / scale, 0.05 * std / scale) << i << leaf;
      EXPECT_LE(w.abs().max().item<double>(), 0.02 / scale + 1e-7) << i << leaf;
      EXPECT_GT(w.abs().max().item<double>(), 0.019 / scale) << i << leaf;
    }
  }
  for (const std::string name : {"cls_token", "mask_token"}) {
    torch::Tensor t = Param(*model, name);
    EXPECT_GT(t.abs().max().item<double>(), 0.0) << name;
    EXPECT_LE(t.abs().max().item<double>(), 0.02 + 1e-7) << name;
  }
  for (const auto& item : model->named_parameters()) {
    const std::string& name = item.key();
    const torch::Tensor& p = item.value();
    if (name.find("bias") != std::string::npos) {
      // Linear/conv/LN biases, q_bias, v_bias and the relative position table.
      EXPECT_EQ(p.abs().max().item<double>(), 0.0) << name;
    } else if (name.find("gamma_") != std::string::npos) {
      EXPECT_TRUE(torch::equal(p, torch::full_like(p, 0.1))) << name;
    } else if (name.find("norm") != std::string::npos) {
      EXPECT_TRUE(torch::equal(p, torch::ones_like(p))) << name;
    }
  }
}

TEST(BeitVitTest, ClassifierInitialisationIsTheOfficialOne) {
  torch::manual_seed(4);
  BeitClassifier model(FinetuneConfigFrom(InitConfig(), 300));
  // timm's default bounds (+-2) leave N(0, 0.02) effectively untruncated.
  torch::Tensor qkv = Param(*model, "blocks.0.attn.qkv.weight");
  EXPECT_NEAR(qkv.std().item<double>(), 0.02, 0.0008);
  EXPECT_GT(qkv.abs().max().item<double>(), 0.06);
  torch::Tensor fc2 = Param(*model, "blocks.3.mlp.fc2.weight");
  EXPECT_NEAR(fc2.std().item<double>(), 0.02 / std::sqrt(8.0), 0.04 * 0.02 / std::sqrt(8.0));
  // The head is scaled by init_scale 0.001.
  torch::Tensor head = Param(*model, "head.weight");
  EXPECT_NEAR(head.std().item<double>(), 0.02 * 0.001, 0.02 * 0.001 * 0.06);
  EXPECT_EQ(Param(*model, "head.bias").abs().max().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(Param(*model, "fc_norm.weight"), torch::ones({256})));
  // Per-block relative position tables start at zero.
  EXPECT_EQ(Param(*model, "blocks.2.attn.relative_position_bias_table").abs().max().item<double>(),
            0.0);
  // The patch projection keeps PyTorch's conv default: uniform in +-1/sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(3.0 * 4 * 4);
  torch::Tensor proj = Param(*model, "patch_embed.proj.weight");
  EXPECT_LE(proj.abs().max().item<double>(), bound);
  EXPECT_GT(proj.abs().max().item<double>(), 0.95 * bound);
}

TEST(BeitVitTest, InitializeRandomIsSeededAndLeavesTheGlobalGeneratorAlone) {
  BeitMim a(TinyConfig()), b(TinyConfig());
  torch::manual_seed(11);
  const torch::Tensor expected = torch::rand({4});
  torch::manual_seed(11);
  a->InitializeRandom(7);
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected));
  b->InitializeRandom(7);
  for (const auto& item : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), Param(*b, item.key()))) << item.key();
  }
  b->InitializeRandom(8);
  EXPECT_FALSE(torch::equal(Param(*a, "cls_token"), Param(*b, "cls_token")));
}

// ---------------------------------------------------------------------------------------------
// Masked image modeling semantics.

struct MaskFixture {
  BeitMim model{nullptr};
  torch::Tensor images, mask;
};

MaskFixture MakeMaskFixture() {
  torch::manual_seed(5);
  MaskFixture f;
  f.model = BeitMim(TinyConfig());
  {
    torch::NoGradGuard no_grad;  // a non-zero table so positions matter
    Param(*f.model, "rel_pos_bias.relative_position_bias_table").normal_(0, 0.5);
  }
  f.model->eval();
  f.images = torch::randn({2, 3, 16, 16});
  f.mask = torch::zeros({2, 16}, torch::kBool);
  f.mask[0][0] = true;  // sample 0: patch (0,0) and (1,2)
  f.mask[0][6] = true;
  f.mask[1][3] = true;  // sample 1: patches 3, 4, 15
  f.mask[1][4] = true;
  f.mask[1][15] = true;
  return f;
}

TEST(BeitVitTest, LogitsOnlyForMaskedPositionsInRowMajorOrder) {
  MaskFixture f = MakeMaskFixture();
  torch::NoGradGuard no_grad;
  torch::Tensor masked = f.model->forward(f.images, f.mask);
  ASSERT_EQ(masked.sizes(), (std::vector<int64_t>{5, 24}));
  torch::Tensor all = f.model->AllTokenLogits(f.images, f.mask);
  ASSERT_EQ(all.sizes(), (std::vector<int64_t>{2, 16, 24}));
  const std::vector<std::pair<int, int>> order = {{0, 0}, {0, 6}, {1, 3}, {1, 4}, {1, 15}};
  for (size_t row = 0; row < order.size(); ++row) {
    EXPECT_LT(MaxAbsDiff(masked[row], all[order[row].first][order[row].second]), 1e-6) << row;
  }
  torch::Tensor none = f.model->forward(f.images, torch::zeros({2, 16}, torch::kBool));
  EXPECT_EQ(none.sizes(), (std::vector<int64_t>{0, 24}));
  EXPECT_ANY_THROW(f.model->forward(f.images, torch::zeros({2, 15}, torch::kBool)));
}

TEST(BeitVitTest, MaskTokenReplacesThePixelsOfMaskedPatches) {
  MaskFixture f = MakeMaskFixture();
  torch::NoGradGuard no_grad;
  const torch::Tensor all = f.model->AllTokenLogits(f.images, f.mask);
  // Repaint patch (1,2) of sample 0 (masked): nothing anywhere may change.
  torch::Tensor repainted = f.images.clone();
  repainted[0].slice(1, 4, 8).slice(2, 8, 12).normal_(0, 3);
  EXPECT_TRUE(torch::equal(f.model->AllTokenLogits(repainted, f.mask), all));
  // Repaint patch (0,1) of sample 0 (visible): the masked predictions see it through attention.
  torch::Tensor visible = f.images.clone();
  visible[0].slice(1, 0, 4).slice(2, 4, 8).normal_(0, 3);
  torch::Tensor changed = f.model->forward(visible, f.mask);
  EXPECT_GT(MaxAbsDiff(changed.slice(0, 0, 2), f.model->forward(f.images, f.mask).slice(0, 0, 2)),
            1e-4);
  // Sample 1 is untouched by either repaint.
  EXPECT_TRUE(torch::equal(changed.slice(0, 2), f.model->forward(f.images, f.mask).slice(0, 2)));
  // The mask token is what the masked positions see.
  // The mask token is what the masked positions see instead: changing it changes the outputs,
  // which stay independent of the masked pixels.
  // (Not a constant shift: every LayerNorm would remove it.)
  Param(*f.model, "mask_token").add_(torch::randn({1, 1, 32}));
  EXPECT_GT(MaxAbsDiff(f.model->AllTokenLogits(f.images, f.mask), all), 1e-4);
  EXPECT_TRUE(
      torch::equal(f.model->forward(f.images, f.mask), f.model->forward(repainted, f.mask)));
}

TEST(BeitVitTest, DropPathDropsWholeSamplesOnlyInTraining) {
  torch::manual_seed(6);
  torch::Tensor x = torch::ones({2000, 3, 4});
  torch::Tensor y = DropPath(x, 0.25, /*training=*/true);
  torch::Tensor per_sample = y.reshape({2000, -1});
  // Every sample is all 0 or all 1/0.75.
  EXPECT_TRUE(torch::equal(per_sample.amin(1), per_sample.amax(1)));
  const double kept = (per_sample.select(1, 0) > 0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 0.04);
  EXPECT_NEAR(per_sample.max().item<double>(), 1.0 / 0.75, 1e-6);
  EXPECT_TRUE(torch::equal(DropPath(x, 0.25, /*training=*/false), x));

  BeitVitConfig config = TinyConfig();
  config.drop_path_rate = 0.5;
  BeitMim model(config);
  torch::Tensor images = torch::randn({8, 3, 16, 16});
  torch::Tensor mask = torch::ones({8, 16}, torch::kBool);
  torch::NoGradGuard no_grad;
  model->train();
  EXPECT_FALSE(torch::equal(model->forward(images, mask), model->forward(images, mask)));
  model->eval();
  EXPECT_TRUE(torch::equal(model->forward(images, mask), model->forward(images, mask)));
}

TEST(BeitVitTest, GradientsReachEveryTrainableParameter) {
  MaskFixture f = MakeMaskFixture();  // eval(): no drop path, so every block gets gradients
  torch::Tensor logits = f.model->forward(f.images, f.mask);
  torch::Tensor targets = torch::randint(0, 24, {logits.size(0)}, torch::kInt64);
  torch::cross_entropy_loss(logits, targets).backward();
  for (const auto& item : f.model->named_parameters()) {
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
  }
}

TEST(BeitVitTest, Bf16AutocastStaysCloseToFp32) {
  MaskFixture f = MakeMaskFixture();
  torch::NoGradGuard no_grad;
  torch::Tensor fp32 = f.model->forward(f.images, f.mask);
  torch::Tensor bf16;
  {
    AutocastGuard autocast(true, torch::kCPU);
    bf16 = f.model->forward(f.images, f.mask);
  }
  ASSERT_EQ(bf16.sizes(), fp32.sizes());
  EXPECT_TRUE(torch::isfinite(bf16).all().item<bool>());
  EXPECT_LT(MaxAbsDiff(bf16.to(torch::kFloat32), fp32), 0.05 * fp32.abs().max().item<double>());
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning classifier, linear-probe features and the pre-training -> fine-tuning conversion.

TEST(BeitVitTest, ClassifierPoolsPatchTokensAndBlockFeaturesAreMeans) {
  torch::manual_seed(8);
  BeitClassifier model(FinetuneConfigFrom(TinyConfig(), 5));
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor images = torch::randn({3, 3, 16, 16});
  EXPECT_EQ(model->forward(images).sizes(), (std::vector<int64_t>{3, 5}));
  torch::Tensor tokens = model->RunBlocks(model->Embed(images, torch::Tensor()), 2);
  torch::Tensor pooled = model->PooledFeatures(images);
  EXPECT_LT(MaxAbsDiff(pooled, torch::layer_norm(tokens.slice(1, 1).mean(1), {32}, {}, {}, 1e-6)),
            1e-5);
  std::vector<torch::Tensor> features = model->BlockFeatures(images, {2, 1});
  ASSERT_EQ(features.size(), 2u);
  EXPECT_LT(MaxAbsDiff(features[0], tokens.slice(1, 1).mean(1)), 1e-6);
  torch::Tensor first = model->RunBlocks(model->Embed(images, torch::Tensor()), 1);
  EXPECT_LT(MaxAbsDiff(features[1], first.slice(1, 1).mean(1)), 1e-6);
  EXPECT_ANY_THROW(model->BlockFeatures(images, {3}));

  BeitVitConfig headless = FinetuneConfigFrom(TinyConfig(), 0);
  BeitClassifier features_only(headless);
  EXPECT_EQ(features_only->forward(images).sizes(), (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(features_only->named_parameters().find("head.weight"), nullptr);
}

TEST(BeitVitTest, PretrainStateBecomesTheClassifiersTrunk) {
  torch::manual_seed(9);
  BeitMim mim(TinyConfig());
  {
    torch::NoGradGuard no_grad;
    Param(*mim, "rel_pos_bias.relative_position_bias_table").normal_(0, 0.5);
  }
  mim->eval();
  const NamedTensors pretrain = StateDictInOfficialOrder(*mim);
  const NamedTensors converted =
      ConvertPretrainToFinetune(pretrain, FinetuneConfigFrom(TinyConfig(), 5));
  std::set<std::string> names;
  for (const auto& [name, tensor] : converted) names.insert(name);
  EXPECT_EQ(names.count("mask_token"), 0u);
  EXPECT_EQ(names.count("lm_head.weight"), 0u);
  EXPECT_EQ(names.count("norm.weight"), 0u);
  EXPECT_EQ(names.count("rel_pos_bias.relative_position_bias_table"), 0u);
  EXPECT_EQ(names.count("blocks.1.attn.relative_position_bias_table"), 1u);

  BeitClassifier classifier(FinetuneConfigFrom(TinyConfig(), 5));
  classifier->eval();
  const torch::Tensor head_before = Param(*classifier, "head.weight").clone();
  ASSERT_TRUE(LoadPretrainIntoClassifier(classifier, pretrain, "pretrain").ok());
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(torch::equal(
        Param(*classifier, absl::StrCat("blocks.", i, ".attn.relative_position_bias_table")),
        Param(*mim, "rel_pos_bias.relative_position_bias_table")));
  }
  EXPECT_TRUE(torch::equal(Param(*classifier, "head.weight"), head_before));
  // Per-block copies of the shared table compute exactly what the shared table did.
  torch::NoGradGuard no_grad;
  torch::Tensor images = torch::randn({2, 3, 16, 16});
  std::vector<torch::Tensor> want = mim->BlockFeatures(images, {1, 2});
  std::vector<torch::Tensor> got = classifier->BlockFeatures(images, {1, 2});
  EXPECT_LT(MaxAbsDiff(got[0], want[0]), 1e-6);
  EXPECT_LT(MaxAbsDiff(got[1], want[1]), 1e-6);
  // The copies are independent parameters.
  Param(*classifier, "blocks.0.attn.relative_position_bias_table").add_(1.0);
  EXPECT_FALSE(torch::equal(Param(*classifier, "blocks.1.attn.relative_position_bias_table"),
                            Param(*classifier, "blocks.0.attn.relative_position_bias_table")));
}

TEST(BeitVitTest, IncompletePretrainStateIsRefusedAndNothingLoads) {
  BeitMim mim(TinyConfig());
  BeitClassifier classifier(FinetuneConfigFrom(TinyConfig(), 5));
  const torch::Tensor before = Param(*classifier, "cls_token").clone();
  NamedTensors missing;
  for (const auto& [name, tensor] : StateDictInOfficialOrder(*mim)) {
    if (name != "blocks.1.mlp.fc1.bias") missing.emplace_back(name, tensor);
  }
  absl::Status status = LoadPretrainIntoClassifier(classifier, missing, "ckpt");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("blocks.1.mlp.fc1.bias"));
  EXPECT_TRUE(torch::equal(before, Param(*classifier, "cls_token")));

  NamedTensors extra = StateDictInOfficialOrder(*mim);
  extra.emplace_back("pos_embed", torch::zeros({1, 17, 32}));
  status = LoadPretrainIntoClassifier(classifier, extra, "ckpt");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("unexpected key 'pos_embed'"));

  BeitVitConfig wider = TinyConfig();
  wider.embed_dim = 64;
  BeitMim wide(wider);
  status = LoadPretrainIntoClassifier(classifier, StateDictInOfficialOrder(*wide), "ckpt");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("shape"));
  EXPECT_TRUE(torch::equal(before, Param(*classifier, "cls_token")));
}

// ---------------------------------------------------------------------------------------------
// Optimiser groups.

TEST(BeitVitTest, LayerIdsFollowTheOfficialRule) {
  EXPECT_EQ(BeitLayerId("cls_token", 12), 0);
  EXPECT_EQ(BeitLayerId("mask_token", 12), 0);
  EXPECT_EQ(BeitLayerId("pos_embed", 12), 0);
  EXPECT_EQ(BeitLayerId("patch_embed.proj.weight", 12), 0);
  EXPECT_EQ(BeitLayerId("blocks.0.norm1.weight", 12), 1);
  EXPECT_EQ(BeitLayerId("blocks.11.attn.qkv.weight", 12), 12);
  EXPECT_EQ(BeitLayerId("rel_pos_bias.relative_position_bias_table", 12), 13);
  EXPECT_EQ(BeitLayerId("fc_norm.weight", 12), 13);
  EXPECT_EQ(BeitLayerId("head.bias", 12), 13);
  EXPECT_EQ(BeitLayerId("lm_head.weight", 12), 13);
}

TEST(BeitVitTest, WeightDecaySkipsOneDimParamsBiasesClsTokenButNotMaskToken) {
  BeitMim model(TinyConfig());
  std::vector<BeitParamGroup> groups = BeitParamGroups(*model, 2, 0.05, std::nullopt);
  ASSERT_EQ(groups.size(), 2u);
  std::map<std::string, const BeitParamGroup*> by_name;
  for (const auto& g : groups) by_name[g.name] = &g;
  ASSERT_TRUE(by_name.count("decay") && by_name.count("no_decay"));
  EXPECT_EQ(by_name["decay"]->weight_decay, 0.05);
  EXPECT_EQ(by_name["no_decay"]->weight_decay, 0.0);
  auto names = [](const BeitParamGroup* g) {
    return std::set<std::string>(g->param_names.begin(), g->param_names.end());
  };
  const std::set<std::string> decay = names(by_name["decay"]);
  const std::set<std::string> no_decay = names(by_name["no_decay"]);
  for (const std::string n :
       {"mask_token", "rel_pos_bias.relative_position_bias_table", "blocks.0.attn.qkv.weight",
        "lm_head.weight", "patch_embed.proj.weight"}) {
    EXPECT_EQ(decay.count(n), 1u) << n;
  }
  for (const std::string n : {"cls_token", "blocks.0.gamma_1", "blocks.0.attn.q_bias",
                              "blocks.1.norm2.weight", "norm.bias", "lm_head.bias"}) {
    EXPECT_EQ(no_decay.count(n), 1u) << n;
  }
  EXPECT_EQ(decay.size() + no_decay.size(), model->parameters().size());
}

TEST(BeitVitTest, LayerDecayScalesLearningRatesPerLayer) {
  BeitClassifier model(FinetuneConfigFrom(TinyConfig(), 5));
  std::vector<BeitParamGroup> groups = BeitParamGroups(*model, 2, 0.05, 0.65);
  std::map<std::string, double> scale;
  size_t total = 0;
  for (const auto& g : groups) {
    for (const auto& n : g.param_names) scale[n] = g.lr_scale;
    total += g.params.size();
  }
  EXPECT_EQ(total, model->parameters().size());
  EXPECT_NEAR(scale["patch_embed.proj.weight"], std::pow(0.65, 3), 1e-12);
  EXPECT_NEAR(scale["cls_token"], std::pow(0.65, 3), 1e-12);
  EXPECT_NEAR(scale["blocks.0.attn.qkv.weight"], std::pow(0.65, 2), 1e-12);
  EXPECT_NEAR(scale["blocks.1.mlp.fc2.bias"], 0.65, 1e-12);
  EXPECT_EQ(scale["head.weight"], 1.0);
  EXPECT_EQ(scale["fc_norm.weight"], 1.0);

  // The groups drive AdamW: a step moves parameters, each group has its own lr and decay.
  torch::optim::AdamW optimizer(ToAdamWParamGroups(groups, torch::optim::AdamWOptions(1e-3)));
  ASSERT_EQ(optimizer.param_groups().size(), groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    auto& options = static_cast<torch::optim::AdamWOptions&>(optimizer.param_groups()[i].options());
    EXPECT_NEAR(options.lr(), 1e-3 * groups[i].lr_scale, 1e-15);
    EXPECT_EQ(options.weight_decay(), groups[i].weight_decay);
  }
  torch::Tensor before = Param(*model, "blocks.0.attn.qkv.weight").clone();
  model->forward(torch::randn({2, 3, 16, 16})).sum().backward();
  optimizer.step();
  EXPECT_FALSE(torch::equal(before, Param(*model, "blocks.0.attn.qkv.weight")));
}

}  // namespace
}  // namespace peco::trainer
