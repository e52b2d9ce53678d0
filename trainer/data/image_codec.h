// In-memory JPEG (libjpeg-turbo) and PNG (libpng) decoding into Image, and PNG encoding.
//
// Image files come from users' folders and are hostile until decoded: every decoder checks the
// encoded size, the declared pixel count (before anything is allocated for it) and, for JPEG, the
// number of scans (a progressive JPEG of thousands of tiny scans costs a full pass over the image
// per scan) against ImageLimits, and refuses with DataLoss naming the file and the limit.
#ifndef PECO_TRAINER_DATA_IMAGE_CODEC_H_
#define PECO_TRAINER_DATA_IMAGE_CODEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/data/image.h"

namespace peco::trainer {

// What a decoder accepts. The defaults are far above any training image and far below what
// exhausts a worker: 64 MiB files, 64 megapixels (192 MiB decoded RGB), 64 JPEG scans (a
// progressive JPEG has about 10).
struct ImageLimits {
  int64_t max_file_bytes = int64_t{64} << 20;
  int64_t max_pixels = int64_t{64} << 20;
  int max_jpeg_scans = 64;
};

// The number of start-of-scan markers of a JPEG's marker stream, counting stops at `stop_after`
// (so a hostile file costs at most that many scans to count). A truncated stream counts what it
// holds; the decoder reports it.
int CountJpegScans(absl::string_view data, int stop_after);

// Decodes a JPEG. Greyscale JPEGs give 1 channel, everything else RGB. When min_decode_side > 0
// the decoder's DCT scaling picks the smallest scale factor (<= 1) whose scaled shorter side is
// still >= min_decode_side (full size when none is). Errors (DataLoss) name `what`, usually the
// file path. Thread-safe (each thread uses its own decompressor).
absl::StatusOr<Image> DecodeJpeg(absl::string_view data, int min_decode_side,
                                 absl::string_view what, const ImageLimits& limits = {});

// Decodes a PNG to 8-bit grey or RGB: palette images are expanded, 16-bit samples reduced, alpha
// composited onto black. Errors (DataLoss) name `what`. Thread-safe.
absl::StatusOr<Image> DecodePng(absl::string_view data, absl::string_view what,
                                const ImageLimits& limits = {});

// Encodes an 8-bit grey or RGB image as PNG. InvalidArgument for an empty image, a channel count
// other than 1 or 3, or pixels that do not match the shape. Thread-safe.
absl::StatusOr<std::string> EncodePng(const Image& image);

// Dispatches on the file signature (JPEG SOI marker or PNG signature).
absl::StatusOr<Image> DecodeImage(absl::string_view data, int min_decode_side,
                                  absl::string_view what, const ImageLimits& limits = {});

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_IMAGE_CODEC_H_
