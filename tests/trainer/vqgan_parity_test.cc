// Parity of the VQGAN tokenizer with taming-transformers' outputs (shared/golden/vqgan_tiny.pt).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "trainer/io/torch_file.h"
#include "trainer/models/vq_tokenizer.h"
#include "trainer/models/weights.h"

namespace peco::trainer {
namespace {

class VqganParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::set_num_threads(2);
    auto file = ReadTorchFile(std::string(PECO_REFERENCE_DIR) + "/golden/vqgan_tiny.pt");
    ASSERT_TRUE(file.ok()) << file.status();
    golden_ = *file;
    VqTokenizerConfig config;
    config.vqgan.resolution = 32;
    config.vqgan.ch = 32;
    config.vqgan.ch_mult = {1, 2, 2};
    config.vqgan.num_res_blocks = 1;
    config.vqgan.attn_resolutions = {8};
    config.vqgan.z_channels = 16;
    config.quantizer.num_codes = 64;
    config.quantizer.dim = 16;
    config.quantizer.beta = 0.25;
    ASSERT_TRUE(config.Validate("model.").ok());
    model_ = VqTokenizer(config);
    auto state = DictGet(golden_, "state_dict", "vqgan_tiny.pt");
    ASSERT_TRUE(state.ok()) << state.status();
    auto named = ToNamedTensors(*state, "state_dict");
    ASSERT_TRUE(named.ok()) << named.status();
    ASSERT_TRUE(LoadNamedTensors(*model_, *named, "vqgan_tiny.pt", /*strict=*/true).ok());
    model_->eval();
  }

  torch::Tensor Golden(const std::string& key) {
    auto value = DictGet(golden_, key, "vqgan_tiny.pt");
    EXPECT_TRUE(value.ok()) << value.status();
    return value->toTensor();
  }

  c10::IValue golden_;
  VqTokenizer model_{nullptr};
};

TEST_F(VqganParityTest, KeysMatchTamingNames) {
  auto named = ToNamedTensors(*DictGet(golden_, "state_dict", ""), "");
  auto params = model_->named_parameters();
  ASSERT_EQ(params.size(), named->size());
  for (const auto& [name, tensor] : *named) {
    const torch::Tensor* mine = params.find(name);
    ASSERT_NE(mine, nullptr) << name;
    EXPECT_EQ(mine->sizes(), tensor.sizes()) << name;
  }
}

TEST_F(VqganParityTest, ForwardMatchesGolden) {
  torch::NoGradGuard no_grad;
  torch::Tensor input = Golden("input");
  TokenizerOutput out = model_->forward(input);
  EXPECT_TRUE(torch::allclose(out.z, Golden("z"), 1e-4, 1e-4));
  EXPECT_TRUE(torch::equal(out.quantized.indices, Golden("indices")));
  EXPECT_TRUE(torch::allclose(out.quantized.z_q, Golden("z_q"), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(out.quantized.loss, Golden("quant_loss"), 1e-4, 1e-4));
  EXPECT_TRUE(torch::allclose(out.reconstruction, Golden("reconstruction"), 1e-4, 1e-4))
      << (out.reconstruction - Golden("reconstruction")).abs().max();
}

TEST_F(VqganParityTest, StraightThroughGradientReachesEncoder) {
  model_->train();
  torch::Tensor input = Golden("input");
  TokenizerOutput out = model_->forward(input);
  // A loss on the reconstruction only: its gradient must pass the quantizer to the encoder.
  out.reconstruction.pow(2).mean().backward();
  for (const auto& item : model_->named_parameters()) {
    if (item.key().rfind("encoder.conv_in", 0) == 0 &&
        item.key().find("weight") != std::string::npos) {
      ASSERT_TRUE(item.value().grad().defined());
      EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0);
    }
  }
}

}  // namespace
}  // namespace peco::trainer
