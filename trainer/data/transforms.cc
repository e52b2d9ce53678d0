#include "trainer/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "trainer/data/photometric.h"
#include "trainer/data/random.h"

namespace peco::trainer {
namespace {

constexpr int kMaxOutputSize = 8192;
constexpr int kCropAttempts = 10;
constexpr float kLuma[3] = {0.299f, 0.587f, 0.114f};

absl::Status FieldError(const char* field, const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat("transform.", field, ": expected ", expected));
}

bool Finite(double v) { return std::isfinite(v); }

// Source sampling positions along one axis for bilinear resize (align_corners=false, edge
// clamped), as element offsets into the image row or plane.
struct AxisTable {
  std::vector<int> i0, i1;
  std::vector<float> w1;  // weight of i1; i0 gets 1 - w1
};

AxisTable MakeAxisTable(int start, int length, int out, int stride, bool reverse) {
  AxisTable t;
  t.i0.resize(out);
  t.i1.resize(out);
  t.w1.resize(out);
  const double scale = static_cast<double>(length) / out;
  for (int o = 0; o < out; ++o) {
    double src = (o + 0.5) * scale - 0.5;
    if (src < 0) src = 0;
    int i0 = static_cast<int>(src);
    if (i0 > length - 1) i0 = length - 1;
    const int i1 = std::min(i0 + 1, length - 1);
    const int slot = reverse ? out - 1 - o : o;
    t.i0[slot] = (start + i0) * stride;
    t.i1[slot] = (start + i1) * stride;
    t.w1[slot] = static_cast<float>(src - i0);
  }
  return t;
}

// Crops `box`, resizes to size x size, optionally flips horizontally, and writes planes of
// values in [0, 1] to dst (out_c planes).
template <int kInC, int kOutC>
void ResizeCropKernel(const Image& image, const CropBox& box, int size, bool flip, float* dst) {
  const AxisTable xs = MakeAxisTable(box.left, box.width, size, kInC, flip);
  const AxisTable ys = MakeAxisTable(box.top, box.height, size, image.width * kInC, false);
  const uint8_t* pixels = image.pixels.data();
  const size_t plane = static_cast<size_t>(size) * size;
  constexpr float kInv255 = 1.0f / 255.0f;
  for (int oy = 0; oy < size; ++oy) {
    const uint8_t* r0 = pixels + ys.i0[oy];
    const uint8_t* r1 = pixels + ys.i1[oy];
    const float wy1 = ys.w1[oy], wy0 = 1.0f - wy1;
    float* out = dst + static_cast<size_t>(oy) * size;
    for (int ox = 0; ox < size; ++ox) {
      const int x0 = xs.i0[ox], x1 = xs.i1[ox];
      const float wx1 = xs.w1[ox], wx0 = 1.0f - wx1;
      float v[kInC];
      for (int c = 0; c < kInC; ++c) {
        v[c] = wy0 * (wx0 * r0[x0 + c] + wx1 * r0[x1 + c]) +
               wy1 * (wx0 * r1[x0 + c] + wx1 * r1[x1 + c]);
      }
      if constexpr (kInC == kOutC) {
        for (int c = 0; c < kOutC; ++c) out[c * plane + ox] = v[c] * kInv255;
      } else if constexpr (kInC == 1) {
        const float g = v[0] * kInv255;
        for (int c = 0; c < kOutC; ++c) out[c * plane + ox] = g;
      } else {
        out[ox] = (kLuma[0] * v[0] + kLuma[1] * v[1] + kLuma[2] * v[2]) * kInv255;
      }
    }
  }
}

void ResizeCrop(const Image& image, const CropBox& box, int size, bool flip, int out_c,
                float* dst) {
  if (image.channels == 1) {
    if (out_c == 1) {
      ResizeCropKernel<1, 1>(image, box, size, flip, dst);
    } else {
      ResizeCropKernel<1, 3>(image, box, size, flip, dst);
    }
  } else {
    if (out_c == 1) {
      ResizeCropKernel<3, 1>(image, box, size, flip, dst);
    } else {
      ResizeCropKernel<3, 3>(image, box, size, flip, dst);
    }
  }
}

enum JitterOp { kBrightness = 0, kContrast = 1, kSaturation = 2, kHue = 3 };

struct Jitter {
  int order[4] = {0, 1, 2, 3};
  float factor[4] = {1, 1, 1, 0};
  bool enabled[4] = {false, false, false, false};
  bool any() const { return enabled[0] || enabled[1] || enabled[2] || enabled[3]; }
};

// Draws nothing when no factor is on. Without hue, the order is a permutation of the three
// factors (the stream of configs written before hue existed is unchanged).
Jitter SampleJitter(const TransformOptions& o, std::mt19937_64& rng) {
  Jitter j;
  const double strength[3] = {o.brightness, o.contrast, o.saturation};
  for (int k = 0; k < 3; ++k) j.enabled[k] = strength[k] > 0;
  j.enabled[kHue] = o.hue > 0;
  if (!j.any()) return j;
  if (o.jitter_probability < 1 && Uniform01(rng) >= o.jitter_probability) return Jitter();
  const int ops = j.enabled[kHue] ? 4 : 3;
  for (int k = ops - 1; k > 0; --k) std::swap(j.order[k], j.order[UniformBelow(rng, k + 1)]);
  for (int k = 0; k < 3; ++k) {
    if (j.enabled[k]) {
      j.factor[k] =
          static_cast<float>(UniformReal(rng, std::max(0.0, 1.0 - strength[k]), 1.0 + strength[k]));
    }
  }
  if (j.enabled[kHue]) j.factor[kHue] = static_cast<float>(UniformReal(rng, -o.hue, o.hue));
  return j;
}

// The ops after the jitter, drawn once per sample (every output size gets the same).
struct ViewOps {
  bool grayscale = false;
  float blur_sigma = 0;  // 0 = no blur
  bool solarize = false;
};

ViewOps SampleViewOps(const TransformOptions& o, std::mt19937_64& rng) {
  ViewOps ops;
  if (o.grayscale_probability > 0) ops.grayscale = Uniform01(rng) < o.grayscale_probability;
  if (o.blur_probability > 0 && Uniform01(rng) < o.blur_probability) {
    ops.blur_sigma = static_cast<float>(UniformReal(rng, o.blur_sigma_min, o.blur_sigma_max));
  }
  if (o.solarize_probability > 0) ops.solarize = Uniform01(rng) < o.solarize_probability;
  return ops;
}

inline float Clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }

// Applies the jitter to `channels` planes of `n` values in [0, 1].
void ApplyJitter(const Jitter& j, int channels, size_t n, float* data) {
  for (int k = 0; k < 4; ++k) {
    const int op = j.order[k];
    if (!j.enabled[op]) continue;
    const float f = j.factor[op];
    if (op == kHue) {
      AdjustHue(f, channels, n, data);
    } else if (op == kBrightness) {
      for (size_t i = 0; i < n * channels; ++i) data[i] = Clamp01(data[i] * f);
    } else if (op == kContrast) {
      double sum = 0;
      if (channels == 1) {
        for (size_t i = 0; i < n; ++i) sum += data[i];
      } else {
        for (size_t i = 0; i < n; ++i) {
          sum += kLuma[0] * data[i] + kLuma[1] * data[n + i] + kLuma[2] * data[2 * n + i];
        }
      }
      const float mean_term = (1.0f - f) * static_cast<float>(sum / static_cast<double>(n));
      for (size_t i = 0; i < n * channels; ++i) data[i] = Clamp01(f * data[i] + mean_term);
    } else if (channels == 3) {  // kSaturation; a no-op on grey views, as in torchvision.
      for (size_t i = 0; i < n; ++i) {
        const float grey =
            (1.0f - f) * (kLuma[0] * data[i] + kLuma[1] * data[n + i] + kLuma[2] * data[2 * n + i]);
        for (int c = 0; c < 3; ++c) data[c * n + i] = Clamp01(f * data[c * n + i] + grey);
      }
    }
  }
}

void Normalize(const TransformOptions& o, int channels, size_t n, float* data) {
  for (int c = 0; c < channels; ++c) {
    const size_t k = o.mean.size() == 1 || channels == 1 ? 0 : static_cast<size_t>(c);
    const float mean = static_cast<float>(o.mean[k]);
    const float inv_std = static_cast<float>(1.0 / o.std[k]);
    float* p = data + c * n;
    for (size_t i = 0; i < n; ++i) p[i] = (p[i] - mean) * inv_std;
  }
}

}  // namespace

absl::Status TransformOptions::Validate() const {
  if (output_sizes.empty()) return FieldError("output_sizes", "at least one size");
  for (int s : output_sizes) {
    if (s <= 0 || s > kMaxOutputSize) {
      return FieldError("output_sizes", absl::StrCat("0 < size <= ", kMaxOutputSize, ", got ", s));
    }
  }
  if (!Finite(scale_min) || !(scale_min > 0) || !(scale_min <= scale_max)) {
    return FieldError("scale_min", "0 < value <= scale_max");
  }
  if (!Finite(scale_max) || !(scale_max <= 1)) {
    return FieldError("scale_max", "scale_min <= value <= 1");
  }
  if (!Finite(ratio_min) || !(ratio_min > 0) || !(ratio_min <= ratio_max)) {
    return FieldError("ratio_min", "0 < value <= ratio_max");
  }
  if (!Finite(ratio_max)) return FieldError("ratio_max", "a finite value >= ratio_min");
  if (!Finite(center_crop_fraction) || !(center_crop_fraction > 0) ||
      !(center_crop_fraction <= 1)) {
    return FieldError("center_crop_fraction", "0 < value <= 1");
  }
  if (!Finite(brightness) || brightness < 0) return FieldError("brightness", "value >= 0");
  if (!Finite(contrast) || contrast < 0) return FieldError("contrast", "value >= 0");
  if (!Finite(saturation) || saturation < 0) return FieldError("saturation", "value >= 0");
  if (!Finite(hue) || hue < 0 || hue > 0.5) return FieldError("hue", "a value in [0, 0.5]");
  for (const auto& [field, p] :
       {std::pair<const char*, double>{"jitter_probability", jitter_probability},
        {"grayscale_probability", grayscale_probability},
        {"blur_probability", blur_probability},
        {"solarize_probability", solarize_probability}}) {
    if (!Finite(p) || p < 0 || p > 1) return FieldError(field, "a probability in [0, 1]");
  }
  if (!Finite(blur_sigma_min) || !(blur_sigma_min > 0) || !(blur_sigma_min <= blur_sigma_max)) {
    return FieldError("blur_sigma_min", "0 < value <= blur_sigma_max");
  }
  if (!Finite(blur_sigma_max)) return FieldError("blur_sigma_max", "a finite value");
  if (mean.size() != 1 && mean.size() != 3) return FieldError("mean", "1 or 3 values");
  if (std.size() != mean.size()) return FieldError("std", "as many values as mean");
  for (double m : mean) {
    if (!Finite(m)) return FieldError("mean", "finite values");
  }
  for (double s : std) {
    if (!Finite(s) || !(s > 0)) return FieldError("std", "finite values > 0");
  }
  return absl::OkStatus();
}

TransformOptions EvaluationView(const TransformOptions& t, double center_crop_fraction) {
  TransformOptions view = t;
  view.random_crop = false;
  view.center_crop_fraction = center_crop_fraction;
  view.horizontal_flip = false;
  view.brightness = view.contrast = view.saturation = view.hue = 0;
  view.grayscale_probability = view.blur_probability = view.solarize_probability = 0;
  return view;
}

CropBox SampleResizedCropBox(int height, int width, const TransformOptions& o,
                             std::mt19937_64& rng) {
  const double area = static_cast<double>(height) * width;
  const double log_rmin = std::log(o.ratio_min), log_rmax = std::log(o.ratio_max);
  for (int attempt = 0; attempt < kCropAttempts; ++attempt) {
    const double target_area = area * UniformReal(rng, o.scale_min, o.scale_max);
    const double ratio = std::exp(UniformReal(rng, log_rmin, log_rmax));
    const int w = static_cast<int>(std::lround(std::sqrt(target_area * ratio)));
    const int h = static_cast<int>(std::lround(std::sqrt(target_area / ratio)));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      CropBox box;
      box.height = h;
      box.width = w;
      box.top = static_cast<int>(UniformBelow(rng, static_cast<uint64_t>(height - h + 1)));
      box.left = static_cast<int>(UniformBelow(rng, static_cast<uint64_t>(width - w + 1)));
      return box;
    }
  }
  CropBox box;
  box.fallback = true;
  const double in_ratio = static_cast<double>(width) / height;
  if (in_ratio < o.ratio_min) {
    box.width = width;
    box.height = static_cast<int>(std::lround(width / o.ratio_min));
  } else if (in_ratio > o.ratio_max) {
    box.height = height;
    box.width = static_cast<int>(std::lround(height * o.ratio_max));
  } else {
    box.width = width;
    box.height = height;
  }
  box.height = std::clamp(box.height, 1, height);
  box.width = std::clamp(box.width, 1, width);
  box.top = (height - box.height) / 2;
  box.left = (width - box.width) / 2;
  return box;
}

CropBox CenterCropBox(int height, int width, const TransformOptions& o) {
  const int side =
      std::clamp(static_cast<int>(std::lround(std::min(height, width) * o.center_crop_fraction)), 1,
                 std::min(height, width));
  CropBox box;
  box.height = side;
  box.width = side;
  box.top = (height - side) / 2;
  box.left = (width - side) / 2;
  return box;
}

void ApplyTransformInto(const Image& image, const TransformOptions& options, std::mt19937_64& rng,
                        int out_channels, const std::vector<float*>& dst) {
  const CropBox box = options.random_crop
                          ? SampleResizedCropBox(image.height, image.width, options, rng)
                          : CenterCropBox(image.height, image.width, options);
  const bool flip = options.horizontal_flip && Uniform01(rng) < 0.5;
  const Jitter jitter = SampleJitter(options, rng);
  const ViewOps ops = SampleViewOps(options, rng);
  std::vector<float> scratch;
  for (size_t v = 0; v < options.output_sizes.size(); ++v) {
    const int size = options.output_sizes[v];
    const size_t n = static_cast<size_t>(size) * size;
    ResizeCrop(image, box, size, flip, out_channels, dst[v]);
    if (jitter.any()) ApplyJitter(jitter, out_channels, n, dst[v]);
    if (ops.grayscale) ToGrayscale(out_channels, n, dst[v]);
    if (ops.blur_sigma > 0) {
      scratch.resize(n);
      GaussianBlur(ops.blur_sigma, out_channels, size, dst[v], scratch.data());
    }
    if (ops.solarize) Solarize(out_channels, n, dst[v]);
    Normalize(options, out_channels, n, dst[v]);
  }
}

std::vector<torch::Tensor> ApplyTransform(const Image& image, const TransformOptions& options,
                                          std::mt19937_64& rng) {
  const int channels = options.OutputChannels(image.channels);
  std::vector<torch::Tensor> views;
  std::vector<float*> dst;
  for (int size : options.output_sizes) {
    views.push_back(torch::empty({channels, size, size}, torch::kFloat32));
    dst.push_back(views.back().data_ptr<float>());
  }
  ApplyTransformInto(image, options, rng, channels, dst);
  return views;
}

}  // namespace peco::trainer
