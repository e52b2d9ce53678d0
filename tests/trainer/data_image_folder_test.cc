#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/data/image_codec.h"
#include "trainer/data/image_folder.h"
#include "trainer/data/loader.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

Image Pattern(int h, int w, int c, int seed) {
  Image image = Image::Zeros(h, w, c);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < c; ++k) {
        image.pixels[(y * w + x) * c + k] =
            static_cast<uint8_t>((x * 4 + y * 3 + k * 50 + seed) & 0xFF);
      }
    }
  }
  return image;
}

void WritePng(const fs::path& path, const Image& image, bool with_alpha = false) {
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = image.width;
  png.height = image.height;
  std::vector<uint8_t> data = image.pixels;
  if (with_alpha) {  // Opaque RGBA: decoding must drop the alpha channel.
    png.format = PNG_FORMAT_RGBA;
    data.clear();
    for (size_t i = 0; i < image.pixels.size(); i += 3) {
      data.insert(data.end(), {image.pixels[i], image.pixels[i + 1], image.pixels[i + 2], 255});
    }
  } else {
    png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  }
  ASSERT_TRUE(png_image_write_to_file(&png, path.c_str(), 0, data.data(), 0, nullptr))
      << png.message;
}

void WriteJpeg(const fs::path& path, const Image& image, int flags = 0) {
  tjhandle handle = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  ASSERT_EQ(tjCompress2(handle, image.pixels.data(), image.width, 0, image.height,
                        image.channels == 3 ? TJPF_RGB : TJPF_GRAY, &out, &size,
                        image.channels == 3 ? TJSAMP_444 : TJSAMP_GRAY, 95, flags),
            0)
      << tjGetErrorStr2(handle);
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<char*>(out), size);
  tjFree(out);
  tjDestroy(handle);
}

double MeanAbsDiff(const Image& a, const Image& b) {
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) sum += std::abs(a.pixels[i] - b.pixels[i]);
  return sum / a.pixels.size();
}

class ImageFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("peco_image_folder_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    // Classes are sorted by name: apple=0, banana=1, cherry=2.
    fs::create_directories(root_ / "cherry");
    fs::create_directories(root_ / "apple" / "nested");
    fs::create_directories(root_ / "banana");
    WritePng(root_ / "apple" / "a0.png", Pattern(20, 30, 3, 0));
    WritePng(root_ / "apple" / "a1.PNG", Pattern(24, 24, 1, 1));
    WritePng(root_ / "apple" / "nested" / "a2.png", Pattern(16, 16, 3, 2), /*with_alpha=*/true);
    WriteJpeg(root_ / "banana" / "b0.jpg", Pattern(48, 64, 3, 3));
    WriteJpeg(root_ / "banana" / "b1.JPEG", Pattern(32, 32, 1, 4));
    std::ofstream(root_ / "banana" / "b2_corrupt.jpg") << "this is not a jpeg at all";
    // A JPEG signature followed by garbage: the decoder itself must reject it.
    std::ofstream(root_ / "banana" / "b3_truncated.jpg", std::ios::binary)
        << std::string("\xFF\xD8\xFF\xE0\x00\x10JFIF\x00garbage", 18);
    WriteJpeg(root_ / "cherry" / "c0.jpeg", Pattern(40, 40, 3, 5));
    WritePng(root_ / "cherry" / "c1.png", Pattern(12, 18, 3, 6));
    std::ofstream(root_ / "cherry" / "notes.txt") << "ignored";
  }
  void TearDown() override { fs::remove_all(root_); }

  fs::path root_;
};

TEST_F(ImageFolderTest, LabelsFromSortedFoldersAndDecoding) {
  auto dataset = OpenImageFolder(root_.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const Dataset& d = **dataset;
  ASSERT_EQ(d.size(), 9);
  EXPECT_EQ(d.num_classes(), 3);
  // Sorted by path within each class: a0.png, a1.PNG, nested/a2.png, b0, b1, b2, b3, c0, c1.
  const int64_t expected_labels[] = {0, 0, 0, 1, 1, 1, 1, 2, 2};
  for (int64_t i = 0; i < d.size(); ++i) {
    auto example = d.Get(i);
    if (i == 5 || i == 6) {
      ASSERT_FALSE(example.ok());
      EXPECT_THAT(example.status().message(),
                  HasSubstr(i == 5 ? "b2_corrupt.jpg" : "b3_truncated.jpg"));
      continue;
    }
    ASSERT_TRUE(example.ok()) << example.status();
    EXPECT_EQ(example->label, expected_labels[i]) << i;
  }
  // PNG decoding is lossless.
  auto a0 = d.Get(0);
  EXPECT_EQ(a0->image.pixels, Pattern(20, 30, 3, 0).pixels);
  EXPECT_EQ(a0->image.channels, 3);
  auto a1 = d.Get(1);
  EXPECT_EQ(a1->image.channels, 1);
  EXPECT_EQ(a1->image.pixels, Pattern(24, 24, 1, 1).pixels);
  auto a2 = d.Get(2);
  EXPECT_EQ(a2->image.channels, 3);
  EXPECT_EQ(a2->image.pixels, Pattern(16, 16, 3, 2).pixels);
  // JPEG decoding is close.
  auto b0 = d.Get(3);
  ASSERT_EQ(b0->image.height, 48);
  ASSERT_EQ(b0->image.width, 64);
  EXPECT_LT(MeanAbsDiff(b0->image, Pattern(48, 64, 3, 3)), 4.0);
  auto b1 = d.Get(4);
  EXPECT_EQ(b1->image.channels, 1);
  EXPECT_LT(MeanAbsDiff(b1->image, Pattern(32, 32, 1, 4)), 4.0);
}

TEST_F(ImageFolderTest, UnlabelledFlatFoldersAndLabelsNone) {
  // A flat folder (no sub-folders): every image below it, unlabelled.
  const fs::path flat = root_ / "apple";
  fs::remove_all(flat / "nested");
  auto dataset = OpenImageFolder(flat.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->size(), 2);
  EXPECT_EQ((*dataset)->num_classes(), 0);
  auto example = (*dataset)->Get(0);
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_EQ(example->label, -1);
  EXPECT_EQ(example->image.pixels, Pattern(20, 30, 3, 0).pixels);

  // labels: none reads class folders as one unlabelled set, sub-folders included.
  ImageFolderOptions none;
  none.labels = FolderLabels::kNone;
  dataset = OpenImageFolder(root_.string(), none);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->size(), 8);
  EXPECT_EQ((*dataset)->num_classes(), 0);
  EXPECT_EQ(*(*dataset)->Label(7), -1);

  // auto refuses images beside class folders (which ones count would be a guess).
  WritePng(root_ / "stray.png", Pattern(8, 8, 3, 9));
  dataset = OpenImageFolder(root_.string());
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("stray.png"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("data.labels"));
  fs::remove(root_ / "stray.png");

  // labels: folders refuses a folder without class folders, naming it.
  ImageFolderOptions folders;
  folders.labels = FolderLabels::kFolders;
  dataset = OpenImageFolder(flat.string(), folders);
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr(flat.string()));
}

TEST_F(ImageFolderTest, ListFilesLabelledOrNotAndConfinedToTheirFolder) {
  const fs::path unlabelled = root_ / "train.txt";
  std::ofstream(unlabelled) << "# unlabelled\napple/a0.png\n\ncherry/c1.png\n./apple/a1.PNG\n";
  auto dataset = OpenImageFolder(unlabelled.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  ASSERT_EQ((*dataset)->size(), 3);
  EXPECT_EQ((*dataset)->num_classes(), 0);
  auto c1 = (*dataset)->Get(1);
  ASSERT_TRUE(c1.ok()) << c1.status();
  EXPECT_EQ(c1->label, -1);
  EXPECT_EQ(c1->image.pixels, Pattern(12, 18, 3, 6).pixels);

  const fs::path labelled = root_ / "labelled.txt";
  std::ofstream(labelled) << "apple/a0.png\t2\ncherry/c1.png\t0\n";
  ImageFolderOptions drop_labels;
  drop_labels.labels = FolderLabels::kNone;
  dataset = OpenImageFolder(labelled.string(), drop_labels);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_classes(), 0);
  EXPECT_EQ(*(*dataset)->Label(0), -1);
  dataset = OpenImageFolder(labelled.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->num_classes(), 3);
  EXPECT_EQ(*(*dataset)->Label(0), 2);
  EXPECT_EQ((*dataset)->Get(1)->label, 0);

  // A symlink inside the folder that leads out of it.
  fs::create_symlink(fs::temp_directory_path(), root_ / "escape.png");
  struct Case {
    std::string text;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {"apple/a0.png\t1\ncherry/c1.png\n", "1 of 2 lines have a label"},
           {"apple/a0.png\tcat\n", "line 1: expected <path>\\t<label>"},
           {"apple/a0.png\n/etc/passwd\n", "line 2: expected a path relative"},
           {"apple/../../secret.png\n", "line 1: '..' would leave the list's folder"},
           {"# nothing\n\n", "no image paths"},
           {"escape.png\n", "line 1: 'escape.png' resolves outside the list's folder"},
       }) {
    const fs::path bad = root_ / "bad.txt";
    std::ofstream(bad, std::ios::trunc) << c.text;
    dataset = OpenImageFolder(bad.string());
    ASSERT_FALSE(dataset.ok()) << c.text;
    EXPECT_THAT(dataset.status().message(), HasSubstr(c.expected)) << c.text;
    EXPECT_THAT(dataset.status().message(), HasSubstr(bad.string()));
  }
}

TEST_F(ImageFolderTest, JpegDctScaling) {
  ImageFolderOptions options;
  options.min_decode_side = 20;  // 48x64: 1/2 gives 24x32 (>= 20); 3/8 gives 18x24 (< 20).
  auto dataset = OpenImageFolder(root_.string(), options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto b0 = (*dataset)->Get(3);
  ASSERT_TRUE(b0.ok());
  EXPECT_EQ(b0->image.height, 24);
  EXPECT_EQ(b0->image.width, 32);
  auto a0 = (*dataset)->Get(0);  // PNGs stay full size.
  EXPECT_EQ(a0->image.height, 20);
  options.min_decode_side = 1000;  // Larger than the image: full size.
  dataset = OpenImageFolder(root_.string(), options);
  EXPECT_EQ((*dataset)->Get(3)->image.width, 64);
}

TEST_F(ImageFolderTest, LoaderSkipsAndCountsCorruptFile) {
  auto dataset = OpenImageFolder(root_.string());
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  std::shared_ptr<const Dataset> shared(std::move(*dataset));
  LoaderOptions options;
  options.batch_size = 4;
  options.num_threads = 2;
  options.transform.output_sizes = {16, 8};
  auto loader = DataLoader::Create(shared, options);
  ASSERT_TRUE(loader.ok()) << loader.status();
  ASSERT_EQ((*loader)->batches_per_epoch(), 2);  // 9 samples, 4 per batch, last dropped
  std::multiset<int64_t> seen;
  for (int b = 0; b < 2; ++b) {
    auto batch = (*loader)->Next();
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->views[0].sizes(), (std::vector<int64_t>{4, 3, 16, 16}));
    ASSERT_EQ(batch->views[1].sizes(), (std::vector<int64_t>{4, 3, 8, 8}));
    for (int i = 0; i < 4; ++i) {
      const int64_t index = batch->indices[i].item<int64_t>();
      seen.insert(index);
      EXPECT_NE(index, 5) << "corrupt sample used";
      EXPECT_NE(index, 6) << "corrupt sample used";
      EXPECT_EQ(batch->labels[i].item<int64_t>(), index < 3 ? 0 : (index < 7 ? 1 : 2));
    }
  }
  // Prefetching may already have reached into epoch 1 and skipped them again there.
  EXPECT_GE((*loader)->skipped_samples(), 2);
  // With prefetch 1 and one thread nothing runs ahead once the worker blocks on the queue.
  options.num_threads = 1;
  options.prefetch_batches = 1;
  options.shuffle = false;
  auto serial = DataLoader::Create(shared, options);
  ASSERT_TRUE(serial.ok());
  auto first = (*serial)->Next();  // indices 0-3
  ASSERT_TRUE(first.ok());
  auto second = (*serial)->Next();  // positions 4-7: 4, then 5 and 6 are replaced by 7 and 7, 7
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->indices[0].item<int64_t>(), 4);
  EXPECT_EQ(second->indices[1].item<int64_t>(), 7);  // 5 -> 6 (bad) -> 7
  EXPECT_EQ(second->indices[2].item<int64_t>(), 7);  // 6 -> 7
  EXPECT_EQ(second->indices[3].item<int64_t>(), 7);
  EXPECT_GE((*serial)->skipped_samples(), 3);
}

// Files from a user's folder are hostile: a file over the size limit is refused before it is
// read, an image over the pixel limit before it is decoded, and a JPEG with more scans than the
// limit (a progressive scan bomb) before the decoder runs them. Each error names the file.
TEST_F(ImageFolderTest, RefusesFilesOverTheSizePixelAndScanLimits) {
  const fs::path b0 = root_ / "banana" / "b0.jpg";  // index 3, 48x64 baseline JPEG: one scan
  ImageFolderOptions options;
  options.limits.max_file_bytes = static_cast<int64_t>(fs::file_size(b0)) - 1;
  auto dataset = OpenImageFolder(root_.string(), options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto too_big = (*dataset)->Get(3);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(too_big.status().message(), HasSubstr("over the limit"));
  EXPECT_THAT(too_big.status().message(), HasSubstr(b0.string()));

  options = {};
  options.limits.max_pixels = 48 * 64 - 1;
  dataset = OpenImageFolder(root_.string(), options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto too_many_pixels = (*dataset)->Get(3);
  ASSERT_FALSE(too_many_pixels.ok());
  EXPECT_THAT(too_many_pixels.status().message(), HasSubstr("64x48"));
  auto png = (*dataset)->Get(0);  // 20x30 PNG: within the limit
  EXPECT_TRUE(png.ok()) << png.status();

  // A progressive JPEG of the same image has several scans; a baseline one has one.
  WriteJpeg(b0, Pattern(48, 64, 3, 3), TJFLAG_PROGRESSIVE);
  std::ifstream in(b0, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int scans = CountJpegScans(bytes, 1000);
  ASSERT_GT(scans, 2);
  EXPECT_EQ(CountJpegScans(bytes, 2), 2);  // counting stops at the limit
  options = {};
  options.limits.max_jpeg_scans = scans - 1;
  dataset = OpenImageFolder(root_.string(), options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto bomb = (*dataset)->Get(3);
  ASSERT_FALSE(bomb.ok());
  EXPECT_THAT(bomb.status().message(), HasSubstr("scans"));
  options.limits.max_jpeg_scans = scans;
  dataset = OpenImageFolder(root_.string(), options);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  auto decoded = (*dataset)->Get(3);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->image.width, 64);
  std::ifstream baseline_in(root_ / "cherry" / "c0.jpeg", std::ios::binary);
  const std::string baseline((std::istreambuf_iterator<char>(baseline_in)),
                             std::istreambuf_iterator<char>());
  EXPECT_EQ(CountJpegScans(baseline, 1000), 1);
}

TEST(ImageFolderErrorsTest, MissingRootNamesPath) {
  auto dataset = OpenImageFolder("/nonexistent/peco/images");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("/nonexistent/peco/images"));
}

TEST(ImageFolderErrorsTest, NoImagesNamesPath) {
  const fs::path root = fs::temp_directory_path() / ("peco_empty_" + std::to_string(::getpid()));
  fs::create_directories(root / "class_a");
  std::ofstream(root / "class_a" / "readme.txt") << "no images";
  auto dataset = OpenImageFolder(root.string());
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr(root.string()));
  fs::remove_all(root);
}

}  // namespace
}  // namespace peco::trainer
