// Decoded 8-bit images as produced by the datasets and consumed by the transforms.
#ifndef PECO_TRAINER_DATA_IMAGE_H_
#define PECO_TRAINER_DATA_IMAGE_H_

#include <cstdint>
#include <vector>

namespace peco::trainer {

// An 8-bit image stored row-major, HWC interleaved: pixel (y, x) channel c is at
// pixels[(y * width + x) * channels + c]. `channels` is 1 (grey) or 3 (RGB). A value type; not
// synchronised (copy it to share across threads, or share it const).
struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;

  // Allocates zeroed pixels for the given shape.
  static Image Zeros(int height, int width, int channels) {
    Image image;
    image.height = height;
    image.width = width;
    image.channels = channels;
    image.pixels.assign(static_cast<size_t>(height) * width * channels, 0);
    return image;
  }
  bool empty() const { return pixels.empty(); }
  uint8_t at(int y, int x, int c) const {
    return pixels[(static_cast<size_t>(y) * width + x) * channels + c];
  }
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_IMAGE_H_
