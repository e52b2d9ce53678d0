#include "trainer/data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/data/random.h"

namespace peco::trainer {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr int kBlobs = 3;

class SyntheticDataset : public Dataset {
 public:
  SyntheticDataset(int64_t size, int height, int width, int channels, int64_t num_classes,
                   uint64_t seed)
      : size_(size),
        height_(height),
        width_(width),
        channels_(channels),
        num_classes_(num_classes),
        seed_(seed) {}

  int64_t size() const override { return size_; }
  int64_t num_classes() const override { return num_classes_; }
  std::string name() const override {
    return absl::StrCat("synthetic:", size_, "x", height_, "x", width_, "x", channels_);
  }

  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index < 0 || index >= size_) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size_, ")"));
    }
    Example example;
    example.label = index % num_classes_;
    std::mt19937_64 rng(MixSeed(seed_, 0x53594E54ull, static_cast<uint64_t>(index)));

    // Gradient: direction from the label, base colour and strength random.
    const double angle =
        2 * kPi * static_cast<double>(example.label) / static_cast<double>(num_classes_) +
        UniformReal(rng, -0.2, 0.2);
    const double gx = std::cos(angle), gy = std::sin(angle);
    double base[3], slope[3];
    for (int c = 0; c < 3; ++c) {
      base[c] = UniformReal(rng, 60, 196);
      slope[c] = UniformReal(rng, 30, 60) * (c % 2 == 0 ? 1 : -1);
    }
    struct Blob {
      double cy, cx, inv_two_sigma2, amp[3];
    } blobs[kBlobs];
    for (Blob& b : blobs) {
      b.cy = UniformReal(rng, 0, height_);
      b.cx = UniformReal(rng, 0, width_);
      const double sigma = UniformReal(rng, 0.08, 0.25) * std::min(height_, width_);
      b.inv_two_sigma2 = 1.0 / (2 * sigma * sigma);
      for (double& a : b.amp) a = UniformReal(rng, -90, 90);
    }

    Image& image = example.image;
    image = Image::Zeros(height_, width_, channels_);
    uint8_t* out = image.pixels.data();
    const double inv_h = 1.0 / height_, inv_w = 1.0 / width_;
    for (int y = 0; y < height_; ++y) {
      for (int x = 0; x < width_; ++x) {
        const double t = (x * inv_w - 0.5) * gx + (y * inv_h - 0.5) * gy;
        double v[3];
        for (int c = 0; c < 3; ++c) v[c] = base[c] + slope[c] * t;
        for (const Blob& b : blobs) {
          const double dy = y - b.cy, dx = x - b.cx;
          const double w = std::exp(-(dy * dy + dx * dx) * b.inv_two_sigma2);
          for (int c = 0; c < 3; ++c) v[c] += b.amp[c] * w;
        }
        if (channels_ == 1) {
          *out++ = Clamp(0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]);
        } else {
          for (int c = 0; c < 3; ++c) *out++ = Clamp(v[c]);
        }
      }
    }
    return example;
  }

 private:
  static uint8_t Clamp(double v) {
    return static_cast<uint8_t>(std::clamp(std::lround(v), 0l, 255l));
  }

  const int64_t size_;
  const int height_, width_, channels_;
  const int64_t num_classes_;
  const uint64_t seed_;
};

}  // namespace

std::unique_ptr<Dataset> MakeSyntheticDataset(int64_t size, int height, int width, int channels,
                                              int64_t num_classes, uint64_t seed) {
  if (size < 0 || height <= 0 || width <= 0 || (channels != 1 && channels != 3) ||
      num_classes < 1) {
    std::fprintf(
        stderr, "MakeSyntheticDataset: invalid arguments size=%lld %dx%dx%d classes=%lld\n",
        static_cast<long long>(size), height, width, channels, static_cast<long long>(num_classes));
    std::abort();
  }
  return std::make_unique<SyntheticDataset>(size, height, width, channels, num_classes, seed);
}

}  // namespace peco::trainer
