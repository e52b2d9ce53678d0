// Photometric augmentations on one view held as float planes of values in [0, 1] (CHW, 1 or 3
// channels, `n` values per plane), with torchvision / PIL semantics: the ops of BYOL's and
// MoCo v3's asymmetric views (hue jitter, random grayscale, Gaussian blur, solarize).
//
// Pure functions over caller-owned buffers; thread-compatible (no shared state).
#ifndef PECO_TRAINER_DATA_PHOTOMETRIC_H_
#define PECO_TRAINER_DATA_PHOTOMETRIC_H_

#include <cstddef>

namespace peco::trainer {

// torchvision's adjust_hue: RGB -> HSV, h := (h + factor) mod 1, -> RGB. factor in [-0.5, 0.5].
// A no-op on 1-channel views (grey has no hue).
void AdjustHue(float factor, int channels, size_t n, float* data);

// torchvision's rgb_to_grayscale with the output channel count kept: every channel becomes the
// ITU-R 601 luma. A no-op on 1-channel views.
void ToGrayscale(int channels, size_t n, float* data);

// A separable Gaussian blur of standard deviation `sigma` pixels (kernel radius ceil(3 sigma),
// clamped to the view, edges replicated) on each of `channels` size x size planes. `scratch`
// holds at least size * size floats.
void GaussianBlur(float sigma, int channels, int size, float* data, float* scratch);

// PIL's ImageOps.solarize at threshold 128: a value v with 255 v >= 128 becomes 1 - v.
void Solarize(int channels, size_t n, float* data);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_PHOTOMETRIC_H_
