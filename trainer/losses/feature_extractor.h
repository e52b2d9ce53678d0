// The frozen network whose block outputs define PeCo's perceptual distance
// (losses/perceptual_loss.h). Two implementations:
//   - TimmVitExtractor (timm_vit_extractor.h): a MoCo v3 / timm ViT, from a weights file or
//     seeded random;
//   - BeitTrunkExtractor (beit_trunk_extractor.h): the BEiT trunk of a peco pre-training
//     checkpoint, so PeCo can bootstrap without outside weights.
//
// An extractor is frozen from construction: its module is in eval mode and none of its
// parameters requires gradients. It receives images already mapped to [0, 1], normalised with
// input().mean / input().std and resized to input().img_size (PerceptualLoss does that), and
// returns token sequences; autograd flows through it to those images.
//
// Not thread-safe (owns a LibTorch module). Errors: BlockOutputs throws c10::Error on a block
// outside [1, depth()] or mis-shaped images (callers validate first and wrap it in TorchCall).
#ifndef PECO_TRAINER_LOSSES_FEATURE_EXTRACTOR_H_
#define PECO_TRAINER_LOSSES_FEATURE_EXTRACTOR_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace peco::trainer {

// How images must look when they enter the extractor.
struct ExtractorInput {
  int64_t img_size = 224;                            // square side, pixels
  std::vector<double> mean = {0.485, 0.456, 0.406};  // per channel, on [0, 1] pixels
  std::vector<double> std = {0.229, 0.224, 0.225};
};

// The input of a network trained on `img_size`-pixel images normalised with `mean` / `std` (one
// value stands for all three channels, as in job configs).
inline ExtractorInput MakeExtractorInput(int64_t img_size, std::vector<double> mean,
                                         std::vector<double> std) {
  if (mean.size() == 1) mean.assign(3, mean[0]);
  if (std.size() == 1) std.assign(3, std[0]);
  ExtractorInput input;
  input.img_size = img_size;
  input.mean = std::move(mean);
  input.std = std::move(std);
  return input;
}

// Where the extractor's weights came from, for logs and checkpoint metadata.
struct ExtractorSource {
  std::string description;  // "file <path>", "random (seed N)", "pretrain checkpoint <dir> ..."
  std::string path;         // the weights file or checkpoint directory; empty when random
  std::string sha256;       // SHA-256 of a checkpoint's MANIFEST; empty otherwise
};

class PerceptualFeatureExtractor {
 public:
  virtual ~PerceptualFeatureExtractor() = default;

  // Token sequences [B, T, D] after each block in `blocks` (counted from 1, each in
  // [1, depth()]), in the order given, before any final norm. Token 0 is the CLS token.
  virtual std::vector<torch::Tensor> BlockOutputs(const torch::Tensor& images,
                                                  const std::vector<int64_t>& blocks) = 0;

  // Number of blocks.
  virtual int64_t depth() const = 0;

  // The frozen module, to move it to a device or inspect its parameters.
  virtual torch::nn::Module& module() = 0;

  const ExtractorInput& input() const { return input_; }
  const ExtractorSource& source() const { return source_; }

 protected:
  PerceptualFeatureExtractor(ExtractorInput input, ExtractorSource source)
      : input_(std::move(input)), source_(std::move(source)) {}

  // Puts `module` in eval mode and stops gradients into its parameters.
  static void Freeze(torch::nn::Module& module) {
    module.eval();
    for (torch::Tensor& p : module.parameters()) p.set_requires_grad(false);
  }

 private:
  ExtractorInput input_;
  ExtractorSource source_;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_FEATURE_EXTRACTOR_H_
