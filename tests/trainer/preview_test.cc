// Preview grids (trainer/tasks/preview.h) and PNG encoding: layout, enlargement, mask shading,
// the fixed preview images, and a PNG that decodes back to the same pixels.
#include "trainer/tasks/preview.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>
#include <set>

#include "trainer/data/image_codec.h"
#include "trainer/data/synthetic.h"

namespace peco::trainer {
namespace {

torch::Tensor RandomPixels(int64_t n, int64_t size, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, {n, 3, size, size}, torch::kUInt8);
}

// The decoded grid's tile at (row, column) as [3, tile, tile] uint8.
torch::Tensor Tile(const Image& grid, int row, int column, int tile) {
  torch::Tensor hwc = torch::from_blob(const_cast<uint8_t*>(grid.pixels.data()),
                                       {grid.height, grid.width, 3}, torch::kUInt8);
  const int top = kPreviewGap + row * (tile + kPreviewGap);
  const int left = kPreviewGap + column * (tile + kPreviewGap);
  return hwc.slice(0, top, top + tile).slice(1, left, left + tile).permute({2, 0, 1}).clone();
}

TEST(PreviewTest, PngRoundTripKeepsEveryPixel) {
  for (int channels : {1, 3}) {
    Image image = Image::Zeros(5, 7, channels);
    for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = (i * 37) % 256;
    absl::StatusOr<std::string> png = EncodePng(image);
    ASSERT_TRUE(png.ok()) << png.status();
    absl::StatusOr<Image> back = DecodePng(*png, "round trip");
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->height, 5);
    EXPECT_EQ(back->width, 7);
    EXPECT_EQ(back->channels, channels);
    EXPECT_EQ(back->pixels, image.pixels);
  }
  Image wrong = Image::Zeros(2, 2, 3);
  wrong.pixels.pop_back();
  EXPECT_EQ(EncodePng(wrong).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodePng(Image()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PreviewTest, GridPlacesEveryTileEnlargedAndResizesOtherRows) {
  // 16-pixel tiles are enlarged 4x to 64; the second row's 8-pixel tiles go 8x to the same size.
  torch::Tensor top = RandomPixels(3, 16, 1);
  torch::Tensor bottom = RandomPixels(3, 8, 2);
  absl::StatusOr<std::string> png = EncodePreviewGrid({top, bottom});
  ASSERT_TRUE(png.ok()) << png.status();
  absl::StatusOr<Image> grid = DecodePng(*png, "grid");
  ASSERT_TRUE(grid.ok()) << grid.status();
  constexpr int kTile = 64;
  EXPECT_EQ(grid->width, kPreviewGap + 3 * (kTile + kPreviewGap));
  EXPECT_EQ(grid->height, kPreviewGap + 2 * (kTile + kPreviewGap));
  EXPECT_EQ(grid->channels, 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(torch::equal(Tile(*grid, 0, i, kTile),
                             top[i].repeat_interleave(4, 1).repeat_interleave(4, 2)))
        << "top tile " << i;
    // The first row's factor (4) takes 8-pixel tiles to 32, not 64, so this row is resized
    // bilinearly: each 8x8 block of the tile averages near its source pixel.
    torch::Tensor resized = Tile(*grid, 1, i, kTile).to(torch::kFloat32);
    torch::Tensor expected = bottom[i].to(torch::kFloat32);
    torch::Tensor block_means = torch::nn::functional::avg_pool2d(
        resized.unsqueeze(0), torch::nn::functional::AvgPool2dFuncOptions(8))[0];
    EXPECT_LT((block_means - expected).abs().mean().item<double>(), 40.0) << "bottom tile " << i;
  }
  // The gap between tiles is background, not image.
  torch::Tensor gap =
      torch::from_blob(grid->pixels.data(), {grid->height, grid->width, 3}, torch::kUInt8)
          .slice(1, 0, kPreviewGap);
  EXPECT_TRUE((gap == gap.flatten()[0]).all().item<bool>());
}

TEST(PreviewTest, GridRefusesRowsThatDisagree) {
  EXPECT_EQ(EncodePreviewGrid({}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodePreviewGrid({RandomPixels(3, 8, 1), RandomPixels(2, 8, 2)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodePreviewGrid({RandomPixels(3, 8, 1).to(torch::kFloat32)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PreviewTest, MaskShadesExactlyTheMaskedPatches) {
  torch::Tensor pixels = torch::full({1, 3, 8, 8}, 250, torch::kUInt8);
  torch::Tensor mask = torch::zeros({1, 4}, torch::kBool);
  mask[0][1] = true;  // grid 2x2: top-right patch
  torch::Tensor shaded = ShadeMaskedPatches(pixels, mask, 2);
  EXPECT_TRUE(torch::equal(shaded.slice(2, 0, 4).slice(3, 4, 8),
                           torch::full({1, 3, 4, 4}, 189, torch::kUInt8)));  // 250 + (128-250)/2
  torch::Tensor unmasked = shaded.clone();
  unmasked.slice(2, 0, 4).slice(3, 4, 8).fill_(250);
  EXPECT_TRUE(torch::equal(unmasked, pixels));
}

TEST(PreviewTest, SignedUnitPixelsClampAndReplicateGrey) {
  torch::Tensor grey = torch::tensor({-2.0f, -1.0f, 0.0f, 1.0f, 3.0f}).view({1, 1, 1, 5});
  torch::Tensor pixels = SignedUnitToPixels(grey);
  ASSERT_EQ(pixels.sizes(), (std::vector<int64_t>{1, 3, 1, 5}));
  EXPECT_TRUE(torch::equal(pixels[0][2][0], torch::tensor({0, 0, 128, 255, 255}, torch::kUInt8)));
}

TEST(PreviewTest, PreviewImagesAreFixedSpreadAndSkipUnreadableSamples) {
  std::shared_ptr<const Dataset> dataset = MakeSyntheticDataset(40, 12, 12, 3, 10, 5);
  TransformOptions transform;
  transform.output_sizes = {8, 16};
  transform.brightness = 0.4;  // off in previews
  auto a = LoadPreviewViews(*dataset, transform, 4);
  auto b = LoadPreviewViews(*dataset, transform, 4);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].sizes(), (std::vector<int64_t>{4, 3, 8, 8}));
  EXPECT_EQ((*a)[1].sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
  EXPECT_TRUE(torch::equal((*a)[0], (*b)[0]));
  EXPECT_TRUE(torch::equal((*a)[1], (*b)[1]));
  // Evenly spread: four different images (labels 0, 0, 0, 0 differ by seed noise), none equal.
  std::set<std::string> distinct;
  for (int i = 0; i < 4; ++i) {
    torch::Tensor t = (*a)[0][i].contiguous();
    distinct.insert(
        std::string(reinterpret_cast<const char*>(t.data_ptr<float>()), t.numel() * sizeof(float)));
  }
  EXPECT_EQ(distinct.size(), 4u);

  EXPECT_EQ(LoadPreviewViews(*dataset, transform, 41).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadPreviewViews(*dataset, transform, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A dataset whose even indices cannot be read.
class HalfBrokenDataset : public Dataset {
 public:
  explicit HalfBrokenDataset(std::shared_ptr<const Dataset> base) : base_(std::move(base)) {}
  int64_t size() const override { return base_->size(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index % 2 == 0) return absl::DataLossError("corrupt");
    return base_->Get(index);
  }
  std::string name() const override { return "half-broken"; }

 private:
  std::shared_ptr<const Dataset> base_;
};

TEST(PreviewTest, UnreadableSamplesAreReplacedByTheNextReadableOne) {
  std::shared_ptr<const Dataset> base = MakeSyntheticDataset(8, 12, 12, 3, 10, 5);
  HalfBrokenDataset broken(base);
  TransformOptions transform;
  transform.output_sizes = {12};
  transform.random_crop = false;
  transform.horizontal_flip = false;
  auto views = LoadPreviewViews(broken, transform, 4);  // indices 0, 2, 4, 6 -> 1, 3, 5, 7
  ASSERT_TRUE(views.ok()) << views.status();
  std::mt19937_64 rng(0);
  for (int i = 0; i < 4; ++i) {
    torch::Tensor expected = ApplyTransform(base->Get(2 * i + 1)->image, transform, rng)[0];
    EXPECT_TRUE(torch::equal((*views)[0][i], expected)) << "preview image " << i;
  }
  EXPECT_EQ(LoadPreviewViews(broken, transform, 5).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace peco::trainer
