#include "trainer/data/photometric.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace peco::trainer {
namespace {

constexpr float kLuma[3] = {0.299f, 0.587f, 0.114f};

}  // namespace

void AdjustHue(float factor, int channels, size_t n, float* data) {
  if (channels != 3 || factor == 0.f) return;
  float* r = data;
  float* g = data + n;
  float* b = data + 2 * n;
  for (size_t i = 0; i < n; ++i) {
    const float maxc = std::max({r[i], g[i], b[i]});
    const float minc = std::min({r[i], g[i], b[i]});
    const float delta = maxc - minc;
    if (delta <= 0.f) continue;  // grey: no hue to turn
    // HSV as torchvision's _rgb2hsv.
    const float v = maxc;
    const float s = delta / maxc;
    float h;
    if (maxc == r[i]) {
      h = (g[i] - b[i]) / delta;
    } else if (maxc == g[i]) {
      h = 2.f + (b[i] - r[i]) / delta;
    } else {
      h = 4.f + (r[i] - g[i]) / delta;
    }
    h = h / 6.f + factor;
    h -= std::floor(h);
    // torchvision's _hsv2rgb.
    const float h6 = h * 6.f;
    const int sector = static_cast<int>(std::floor(h6)) % 6;
    const float f = h6 - std::floor(h6);
    const float p = std::clamp(v * (1.f - s), 0.f, 1.f);
    const float q = std::clamp(v * (1.f - s * f), 0.f, 1.f);
    const float t = std::clamp(v * (1.f - s * (1.f - f)), 0.f, 1.f);
    switch (sector) {
      case 0:
        r[i] = v, g[i] = t, b[i] = p;
        break;
      case 1:
        r[i] = q, g[i] = v, b[i] = p;
        break;
      case 2:
        r[i] = p, g[i] = v, b[i] = t;
        break;
      case 3:
        r[i] = p, g[i] = q, b[i] = v;
        break;
      case 4:
        r[i] = t, g[i] = p, b[i] = v;
        break;
      default:
        r[i] = v, g[i] = p, b[i] = q;
        break;
    }
  }
}

void ToGrayscale(int channels, size_t n, float* data) {
  if (channels != 3) return;
  for (size_t i = 0; i < n; ++i) {
    const float grey = kLuma[0] * data[i] + kLuma[1] * data[n + i] + kLuma[2] * data[2 * n + i];
    data[i] = data[n + i] = data[2 * n + i] = grey;
  }
}

void GaussianBlur(float sigma, int channels, int size, float* data, float* scratch) {
  const int radius = std::min(size - 1, static_cast<int>(std::ceil(3.f * sigma)));
  if (radius <= 0 || !(sigma > 0.f)) return;
  std::vector<float> kernel(2 * radius + 1);
  float sum = 0;
  for (int k = -radius; k <= radius; ++k) {
    kernel[k + radius] = std::exp(-0.5f * static_cast<float>(k * k) / (sigma * sigma));
    sum += kernel[k + radius];
  }
  for (float& w : kernel) w /= sum;
  const size_t plane = static_cast<size_t>(size) * size;
  for (int c = 0; c < channels; ++c) {
    float* p = data + c * plane;
    for (int y = 0; y < size; ++y) {  // rows into scratch
      for (int x = 0; x < size; ++x) {
        float acc = 0;
        for (int k = -radius; k <= radius; ++k) {
          acc += kernel[k + radius] * p[y * size + std::clamp(x + k, 0, size - 1)];
        }
        scratch[y * size + x] = acc;
      }
    }
    for (int y = 0; y < size; ++y) {  // columns back into the plane
      for (int x = 0; x < size; ++x) {
        float acc = 0;
        for (int k = -radius; k <= radius; ++k) {
          acc += kernel[k + radius] * scratch[std::clamp(y + k, 0, size - 1) * size + x];
        }
        p[y * size + x] = acc;
      }
    }
  }
}

void Solarize(int channels, size_t n, float* data) {
  constexpr float kThreshold = 128.f / 255.f;
  for (size_t i = 0; i < n * channels; ++i) {
    if (data[i] >= kThreshold) data[i] = 1.f - data[i];
  }
}

}  // namespace peco::trainer
