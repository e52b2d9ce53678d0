// BEiT/PeCo-style augmentation: one RandomResizedCrop box resized to every output size (the ViT
// view and the tokenizer view), horizontal flip, colour jitter, normalisation; and the photometric
// ops of MoCo v3's views (random grayscale, Gaussian blur, solarize; data/photometric.h).
//
// All randomness comes from the caller's generator, drawn in a fixed order (crop box, flip,
// jitter, grayscale, blur, solarize; an op whose probability is 0 draws nothing), so a sample's
// views are a pure function of (image, options, generator state). The functions here are
// thread-compatible: they touch only their arguments and run on the calling thread with plain loops
// (no intra-op parallelism), which is what the loader threads want.
#ifndef PECO_TRAINER_DATA_TRANSFORMS_H_
#define PECO_TRAINER_DATA_TRANSFORMS_H_

#include <random>
#include <vector>

#include "absl/status/status.h"
#include "torch/torch.h"
#include "trainer/data/image.h"

namespace peco::trainer {

struct TransformOptions {
  // One crop box, resized (bilinear, align_corners=false, no antialias) to each square size;
  // each size gives one view.
  std::vector<int> output_sizes = {224};
  // RandomResizedCrop: area fraction range and aspect-ratio (width / height) range.
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4, ratio_max = 4.0 / 3;
  // false: deterministic centre crop (evaluation): a square of side
  // round(min(height, width) * center_crop_fraction), centred, then resized.
  bool random_crop = true;
  double center_crop_fraction = 1.0;
  bool horizontal_flip = true;  // With probability 1/2, same flip for every view.
  // ColorJitter factors with torchvision semantics (0 = off): each enabled factor is drawn
  // uniformly from [max(0, 1 - f), 1 + f] and the enabled adjustments run in random order.
  // Contrast blends with the mean grey level of the view.
  double brightness = 0, contrast = 0, saturation = 0;
  // Hue jitter in [0, 0.5] (0 = off): a shift drawn uniformly from [-hue, hue]; with any factor
  // above on, the four adjustments run in random order (torchvision's ColorJitter).
  double hue = 0;
  // torchvision's RandomApply around the whole ColorJitter: applied with this probability.
  double jitter_probability = 1.0;
  // MoCo v3 / BYOL view ops, after the jitter, each with its probability (0 = never drawn):
  // RandomGrayscale, GaussianBlur with sigma uniform in [blur_sigma_min, blur_sigma_max] pixels
  // of the output view, and Solarize (threshold 128).
  double grayscale_probability = 0;
  double blur_probability = 0;
  double blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  double solarize_probability = 0;
  // Replicate greyscale images to 3 channels. When false, grey images stay 1 channel.
  bool to_rgb = true;
  // Per-channel normalisation (value / 255 - mean) / std; 1 or 3 entries (1 = all channels).
  std::vector<double> mean = {0.5, 0.5, 0.5};
  std::vector<double> std = {0.5, 0.5, 0.5};

  // InvalidArgument naming the offending field ("transform.<field>: expected ...").
  absl::Status Validate() const;

  // Number of channels of the views made from an image with `image_channels` channels.
  int OutputChannels(int image_channels) const { return to_rgb || image_channels == 3 ? 3 : 1; }
};

// `t` without randomness: the centred crop of `center_crop_fraction`, no flip, no photometric op
// (an evaluation's view of the same images, sizes and normalisation). Draws nothing.
TransformOptions EvaluationView(const TransformOptions& t, double center_crop_fraction = 1.0);

// A crop rectangle in image pixels. `fallback` is true when SampleResizedCropBox used its
// centre-crop fallback instead of a successful random attempt.
struct CropBox {
  int top = 0, left = 0, height = 0, width = 0;
  bool fallback = false;
};

// torchvision's RandomResizedCrop.get_params: up to 10 attempts with area fraction uniform in
// [scale_min, scale_max] and log-uniform aspect ratio in [ratio_min, ratio_max]; an attempt
// succeeds when the rounded box fits, and its offset is uniform. Otherwise the fallback is a
// centre crop of the whole image clamped to the ratio range. Always returns a non-empty box
// inside the image. Precondition: height, width >= 1 and valid options.
CropBox SampleResizedCropBox(int height, int width, const TransformOptions& o,
                             std::mt19937_64& rng);

// The deterministic evaluation crop (see TransformOptions::random_crop).
CropBox CenterCropBox(int height, int width, const TransformOptions& o);

// Applies the transform and returns one float CHW tensor per output size, with
// o.OutputChannels(image.channels) channels. Preconditions: valid options, a non-empty image
// with 1 or 3 channels.
std::vector<torch::Tensor> ApplyTransform(const Image& image, const TransformOptions& options,
                                          std::mt19937_64& rng);

// As ApplyTransform, but writes view v into dst[v], a caller-owned contiguous float buffer of
// out_channels * output_sizes[v]^2 elements. `out_channels` (1 or 3) may differ from the image's:
// grey is replicated, RGB is reduced to luma (ITU-R 601). Used by the loader to fill batch
// tensors in place.
void ApplyTransformInto(const Image& image, const TransformOptions& options, std::mt19937_64& rng,
                        int out_channels, const std::vector<float*>& dst);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_TRANSFORMS_H_
