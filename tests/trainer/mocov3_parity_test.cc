// Parity of the perceptual ViT with MoCo v3's base encoder (shared/golden/mocov3_vit_tiny.pt),
// loading weights from a checkpoint in the MoCo v3 release format.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "trainer/io/torch_file.h"
#include "trainer/losses/timm_vit_extractor.h"
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

}  // namespace
}  // namespace peco::trainer
