// In-memory JPEG (libjpeg-turbo) and PNG (libpng) decoding into Image, and PNG encoding.
#ifndef PECO_TRAINER_DATA_IMAGE_CODEC_H_
#define PECO_TRAINER_DATA_IMAGE_CODEC_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/data/image.h"

namespace peco::trainer {

// Decodes a JPEG. Greyscale JPEGs give 1 channel, everything else RGB. When min_decode_side > 0
// the decoder's DCT scaling picks the smallest scale factor (<= 1) whose scaled shorter side is
// still >= min_decode_side (full size when none is). Errors (DataLoss) name `what`, usually the
// file path. Thread-safe (each thread uses its own decompressor).
absl::StatusOr<Image> DecodeJpeg(absl::string_view data, int min_decode_side,
                                 absl::string_view what);

// Decodes a PNG to 8-bit grey or RGB: palette images are expanded, 16-bit samples reduced, alpha
// composited onto black. Errors (DataLoss) name `what`. Thread-safe.
absl::StatusOr<Image> DecodePng(absl::string_view data, absl::string_view what);

// Encodes an 8-bit grey or RGB image as PNG. InvalidArgument for an empty image, a channel count
// other than 1 or 3, or pixels that do not match the shape. Thread-safe.
absl::StatusOr<std::string> EncodePng(const Image& image);

// Dispatches on the file signature (JPEG SOI marker or PNG signature).
absl::StatusOr<Image> DecodeImage(absl::string_view data, int min_decode_side,
                                  absl::string_view what);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_IMAGE_CODEC_H_
