#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "torch/torch.h"
#include "trainer/data/synthetic.h"
#include "trainer/data/transforms.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

Image RandomImage(int h, int w, int c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Image image = Image::Zeros(h, w, c);
  for (uint8_t& p : image.pixels) p = static_cast<uint8_t>(rng() & 0xFF);
  return image;
}

// The image as a float [C, H, W] tensor in [0, 255].
torch::Tensor ToTensor(const Image& image) {
  std::vector<float> data(image.pixels.begin(), image.pixels.end());
  return torch::from_blob(data.data(), {image.height, image.width, image.channels}, torch::kFloat32)
      .permute({2, 0, 1})
      .contiguous()
      .clone();
}

TransformOptions PlainOptions(int size) {
  TransformOptions o;
  o.output_sizes = {size};
  o.random_crop = false;
  o.horizontal_flip = false;
  return o;
}

TEST(CropBoxTest, InsideImageAndAreaInScaleRange) {
  std::mt19937_64 rng(7);
  TransformOptions o;
  int successes = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    const int h = 1 + static_cast<int>(rng() % 400), w = 1 + static_cast<int>(rng() % 400);
    o.scale_min = 0.05 + 0.5 * (trial % 3) / 3.0;
    o.scale_max = std::min(1.0, o.scale_min + 0.3);
    const CropBox box = SampleResizedCropBox(h, w, o, rng);
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_GE(box.height, 1);
    ASSERT_GE(box.width, 1);
    ASSERT_LE(box.top + box.height, h);
    ASSERT_LE(box.left + box.width, w);
    if (!box.fallback && h >= 50 && w >= 50) {
      ++successes;
      // Rounding each side to an integer moves the area by at most about half a pixel per side.
      const double area = static_cast<double>(box.height) * box.width;
      const double slack = 0.5 * (box.height + box.width) + 0.25;
      ASSERT_GE(area + slack, o.scale_min * h * w) << h << "x" << w;
      ASSERT_LE(area - slack, o.scale_max * h * w) << h << "x" << w;
      const double ratio = static_cast<double>(box.width) / box.height;
      ASSERT_GE(ratio * (1 + 1.0 / box.height) * (1 + 1.0 / box.width), o.ratio_min * 0.99);
      ASSERT_LE(ratio / ((1 + 1.0 / box.height) * (1 + 1.0 / box.width)), o.ratio_max * 1.01);
    }
  }
  EXPECT_GT(successes, 1000);
}

TEST(CropBoxTest, FallbackClampsToRatio) {
  TransformOptions o;
  o.scale_min = o.scale_max = 1.0;
  o.ratio_min = 2.0;
  o.ratio_max = 3.0;
  std::mt19937_64 rng(1);
  const CropBox box = SampleResizedCropBox(100, 100, o, rng);
  EXPECT_TRUE(box.fallback);
  EXPECT_EQ(box.width, 100);
  EXPECT_EQ(box.height, 50);
  EXPECT_EQ(box.top, 25);
  EXPECT_EQ(box.left, 0);
}

TEST(CropBoxTest, FullScaleUnitRatioIsWholeImage) {
  TransformOptions o;
  o.scale_min = o.scale_max = 1.0;
  o.ratio_min = o.ratio_max = 1.0;
  std::mt19937_64 rng(3);
  const CropBox box = SampleResizedCropBox(64, 64, o, rng);
  EXPECT_FALSE(box.fallback);
  EXPECT_EQ(box.top, 0);
  EXPECT_EQ(box.left, 0);
  EXPECT_EQ(box.height, 64);
  EXPECT_EQ(box.width, 64);
}

TEST(TransformTest, IdentityCropReproducesImageAfterDenormalisation) {
  for (int channels : {1, 3}) {
    const Image image = RandomImage(32, 32, channels, 11 + channels);
    TransformOptions o = PlainOptions(32);
    o.to_rgb = false;
    o.mean = {0.485, 0.456, 0.406};
    o.std = {0.229, 0.224, 0.225};
    if (channels == 1) {
      o.mean = {0.3};
      o.std = {0.2};
    }
    std::mt19937_64 rng(0);
    const std::vector<torch::Tensor> views = ApplyTransform(image, o, rng);
    ASSERT_EQ(views.size(), 1u);
    ASSERT_EQ(views[0].sizes(), (std::vector<int64_t>{channels, 32, 32}));
    const auto mean = torch::tensor(o.mean, torch::kFloat32).view({-1, 1, 1});
    const auto std = torch::tensor(o.std, torch::kFloat32).view({-1, 1, 1});
    const torch::Tensor restored = ((views[0] * std + mean) * 255).round();
    EXPECT_TRUE(torch::equal(restored, ToTensor(image))) << "channels " << channels;
  }
}

TEST(TransformTest, GreyIsReplicatedToRgb) {
  const Image image = RandomImage(20, 20, 1, 5);
  TransformOptions o = PlainOptions(20);
  std::mt19937_64 rng(0);
  const torch::Tensor view = ApplyTransform(image, o, rng)[0];
  ASSERT_EQ(view.size(0), 3);
  EXPECT_TRUE(torch::equal(view[0], view[1]));
  EXPECT_TRUE(torch::equal(view[0], view[2]));
  EXPECT_TRUE(torch::equal(((view[0] * 0.5 + 0.5) * 255).round(), ToTensor(image)[0]));
}

TEST(TransformTest, CentreCropOfRectangle) {
  const Image image = RandomImage(30, 50, 3, 9);
  TransformOptions o = PlainOptions(30);
  std::mt19937_64 rng(0);
  const torch::Tensor view = ApplyTransform(image, o, rng)[0];
  const torch::Tensor expected = ToTensor(image).slice(2, 10, 40);
  EXPECT_TRUE(torch::equal(((view * 0.5 + 0.5) * 255).round(), expected));
}

TEST(TransformTest, ResizeMatchesTorchBilinear) {
  const Image image = RandomImage(57, 83, 3, 21);
  TransformOptions o;
  o.output_sizes = {24, 40};
  o.horizontal_flip = false;
  o.mean = {0.0};
  o.std = {1.0};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::mt19937_64 rng(seed), box_rng(seed);
    const std::vector<torch::Tensor> views = ApplyTransform(image, o, rng);
    const CropBox box = SampleResizedCropBox(57, 83, o, box_rng);
    const torch::Tensor crop = ToTensor(image)
                                   .slice(1, box.top, box.top + box.height)
                                   .slice(2, box.left, box.left + box.width)
                                   .unsqueeze(0) /
                               255.0;
    for (size_t v = 0; v < views.size(); ++v) {
      const int64_t s = o.output_sizes[v];
      const torch::Tensor expected =
          torch::nn::functional::interpolate(crop, torch::nn::functional::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{s, s})
                                                       .mode(torch::kBilinear)
                                                       .align_corners(false))[0];
      EXPECT_LT((views[v] - expected).abs().max().item<float>(), 1e-4)
          << "seed " << seed << " view " << v;
    }
  }
}

TEST(TransformTest, FlipMirrorsEveryView) {
  const Image image = RandomImage(16, 16, 3, 4);
  TransformOptions o = PlainOptions(16);
  o.output_sizes = {16, 8};
  const std::vector<torch::Tensor> plain = [&] {
    std::mt19937_64 rng(0);
    return ApplyTransform(image, o, rng);
  }();
  o.horizontal_flip = true;
  int flipped = 0, kept = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    std::mt19937_64 rng(seed);
    const std::vector<torch::Tensor> views = ApplyTransform(image, o, rng);
    const bool is_flipped = torch::equal(views[0], plain[0].flip({2}));
    if (is_flipped) {
      ++flipped;
      EXPECT_TRUE(torch::equal(views[1], plain[1].flip({2})));
    } else {
      ++kept;
      EXPECT_TRUE(torch::equal(views[0], plain[0]));
      EXPECT_TRUE(torch::equal(views[1], plain[1]));
    }
  }
  EXPECT_GT(flipped, 5);
  EXPECT_GT(kept, 5);
}

TEST(TransformTest, ColorJitterStaysInRangeAndIsDeterministic) {
  auto dataset = MakeSyntheticDataset(4, 32, 32, 3, 2, 1);
  const Image image = dataset->Get(0)->image;
  TransformOptions o;
  o.output_sizes = {32, 16};
  o.brightness = o.contrast = o.saturation = 0.4;
  o.mean = {0.0};
  o.std = {1.0};
  std::mt19937_64 a(99), b(99), c(100);
  const auto va = ApplyTransform(image, o, a);
  const auto vb = ApplyTransform(image, o, b);
  const auto vc = ApplyTransform(image, o, c);
  for (size_t v = 0; v < va.size(); ++v) {
    EXPECT_TRUE(torch::equal(va[v], vb[v]));
    EXPECT_GE(va[v].min().item<float>(), 0.0f);
    EXPECT_LE(va[v].max().item<float>(), 1.0f);
  }
  EXPECT_FALSE(torch::equal(va[0], vc[0]));
}

TEST(TransformTest, BrightnessOnlyScalesValues) {
  const Image image = Image::Zeros(8, 8, 3);
  Image grey = image;
  for (uint8_t& p : grey.pixels) p = 100;
  TransformOptions o = PlainOptions(8);
  o.brightness = 0.5;
  o.mean = {0.0};
  o.std = {1.0};
  std::mt19937_64 rng(5);
  const torch::Tensor view = ApplyTransform(grey, o, rng)[0];
  const float v = view.flatten()[0].item<float>();
  EXPECT_TRUE(torch::allclose(view, torch::full_like(view, v)));
  EXPECT_GE(v, 0.5f * 100 / 255 - 1e-6f);
  EXPECT_LE(v, 1.5f * 100 / 255 + 1e-6f);
}

TEST(TransformOptionsTest, ValidateNamesField) {
  EXPECT_TRUE(TransformOptions().Validate().ok());
  struct Case {
    void (*mutate)(TransformOptions&);
    const char* field;
  } cases[] = {
      {[](TransformOptions& o) { o.output_sizes = {}; }, "transform.output_sizes"},
      {[](TransformOptions& o) {
         o.output_sizes = {224, 0};
       },
       "transform.output_sizes"},
      {[](TransformOptions& o) { o.scale_min = 0; }, "transform.scale_min"},
      {[](TransformOptions& o) { o.scale_min = 0.9, o.scale_max = 0.5; }, "transform.scale_min"},
      {[](TransformOptions& o) { o.scale_max = 1.5; }, "transform.scale_max"},
      {[](TransformOptions& o) { o.ratio_min = -1; }, "transform.ratio_min"},
      {[](TransformOptions& o) { o.ratio_max = 0.5; }, "transform.ratio_min"},
      {[](TransformOptions& o) { o.brightness = -0.1; }, "transform.brightness"},
      {[](TransformOptions& o) { o.contrast = NAN; }, "transform.contrast"},
      {[](TransformOptions& o) { o.saturation = -1; }, "transform.saturation"},
      {[](TransformOptions& o) {
         o.mean = {0.1, 0.2};
       },
       "transform.mean"},
      {[](TransformOptions& o) { o.std = {0.5}; }, "transform.std"},
      {[](TransformOptions& o) {
         o.std = {0.5, 0, 0.5};
       },
       "transform.std"},
      {[](TransformOptions& o) { o.center_crop_fraction = 0; }, "transform.center_crop_fraction"},
  };
  for (const Case& c : cases) {
    TransformOptions o;
    c.mutate(o);
    const absl::Status status = o.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(std::string(c.field) + ":")) << status;
  }
  TransformOptions o;
  o.scale_min = 0;
  EXPECT_EQ(o.Validate().message(), "transform.scale_min: expected 0 < value <= scale_max");
}

}  // namespace
}  // namespace peco::trainer
