// Fuzzes the image decoders (trainer/data/image_codec.h DecodeImage: libjpeg-turbo and libpng
// behind peco's size, pixel and scan limits), which read every file of a user's image folder.
//
// Input: the first byte picks the DCT scaling side (min_decode_side, 0..255); the rest is the
// file.
//
// Asserts, besides no crash, no sanitizer report and no allocation past the limits (libFuzzer's
// -rss_limit_mb):
//  - a refusal is DataLoss naming the file;
//  - a decoded image is 1 or 3 channels, at least 1x1, within max_pixels, with exactly
//    height * width * channels bytes; a PNG is never scaled;
//  - a JPEG with more scans than the limit is never decoded.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "fuzz/fuzz_util.h"
#include "trainer/data/image_codec.h"

namespace peco::trainer {
namespace {

constexpr char kWhat[] = "images/x.jpg";

void FuzzDecode(const std::string& input) {
  if (input.empty()) return;
  const int min_decode_side = static_cast<unsigned char>(input[0]);
  const std::string file = input.substr(1);
  ImageLimits limits;
  limits.max_file_bytes = 1 << 16;
  limits.max_pixels = 1 << 20;
  limits.max_jpeg_scans = 16;
  absl::StatusOr<Image> image = DecodeImage(file, min_decode_side, kWhat, limits);
  if (!image.ok()) {
    PECO_FUZZ_CHECK(image.status().code() == absl::StatusCode::kDataLoss,
                    image.status().ToString());
    PECO_FUZZ_CHECK(absl::StrContains(image.status().message(), kWhat), image.status().ToString());
    return;
  }
  PECO_FUZZ_CHECK(image->channels == 1 || image->channels == 3, image->channels);
  PECO_FUZZ_CHECK(image->height >= 1 && image->width >= 1, image->height, "x", image->width);
  PECO_FUZZ_CHECK(int64_t{image->height} * image->width <= limits.max_pixels, image->height, "x",
                  image->width);
  PECO_FUZZ_CHECK(
      image->pixels.size() == static_cast<size_t>(image->height) * image->width * image->channels,
      image->pixels.size());
  const bool jpeg = file.size() >= 2 && static_cast<unsigned char>(file[0]) == 0xFF &&
                    static_cast<unsigned char>(file[1]) == 0xD8;
  if (jpeg) {
    PECO_FUZZ_CHECK(CountJpegScans(file, limits.max_jpeg_scans + 1) <= limits.max_jpeg_scans,
                    "a JPEG over the scan limit was decoded");
  }
}

}  // namespace
}  // namespace peco::trainer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peco::trainer::FuzzDecode(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
