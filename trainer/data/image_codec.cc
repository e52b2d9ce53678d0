#include "trainer/data/image_codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace peco::trainer {
namespace {

// A per-thread decompressor handle, created on first use and destroyed at thread exit.
class ThreadJpegDecompressor {
 public:
  ThreadJpegDecompressor() : handle_(tjInitDecompress()) {}
  ~ThreadJpegDecompressor() {
    if (handle_ != nullptr) tjDestroy(handle_);
  }
  tjhandle get() const { return handle_; }

 private:
  tjhandle handle_;
};

tjhandle JpegHandle() {
  thread_local ThreadJpegDecompressor decompressor;
  return decompressor.get();
}

absl::Status CheckFileSize(absl::string_view data, const ImageLimits& limits,
                           absl::string_view what) {
  if (static_cast<int64_t>(data.size()) > limits.max_file_bytes) {
    return absl::DataLossError(absl::StrCat(what, ": image file of ", data.size(),
                                            " bytes is over the limit of ", limits.max_file_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckPixels(int64_t width, int64_t height, const ImageLimits& limits,
                         absl::string_view format, absl::string_view what) {
  if (width <= 0 || height <= 0 || width * height > limits.max_pixels) {
    return absl::DataLossError(absl::StrCat(what, ": ", format, " of ", width, "x", height,
                                            " pixels is outside 1..", limits.max_pixels,
                                            " pixels"));
  }
  return absl::OkStatus();
}

}  // namespace

int CountJpegScans(absl::string_view data, int stop_after) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(data[i]); };
  int scans = 0;
  size_t pos = 2;  // after SOI
  while (pos + 1 < data.size() && scans < stop_after) {
    if (byte(pos) != 0xFF) {
      ++pos;  // not at a marker (garbage between segments): the decoder decides
      continue;
    }
    const unsigned char marker = byte(pos + 1);
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    pos += 2;
    if (marker == 0xD9) break;                                           // EOI
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;  // no length
    if (pos + 1 >= data.size()) break;
    const size_t length = (size_t{byte(pos)} << 8) | byte(pos + 1);
    pos += length;
    if (marker != 0xDA) continue;
    ++scans;
    // Entropy-coded data runs to the next marker that is neither a stuffed 0xFF00 nor a restart.
    while (pos + 1 < data.size()) {
      if (byte(pos) == 0xFF && byte(pos + 1) != 0x00 &&
          !(byte(pos + 1) >= 0xD0 && byte(pos + 1) <= 0xD7)) {
        break;
      }
      ++pos;
    }
  }
  return scans;
}

absl::StatusOr<Image> DecodeJpeg(absl::string_view data, int min_decode_side,
                                 absl::string_view what, const ImageLimits& limits) {
  if (absl::Status size = CheckFileSize(data, limits, what); !size.ok()) return size;
  tjhandle handle = JpegHandle();
  if (handle == nullptr) {
    return absl::InternalError(absl::StrCat(what, ": cannot create a JPEG decompressor"));
  }
  const auto* buf = reinterpret_cast<const unsigned char*>(data.data());
  int width = 0, height = 0, subsamp = 0, colorspace = 0;
  if (tjDecompressHeader3(handle, buf, static_cast<unsigned long>(data.size()), &width, &height,
                          &subsamp, &colorspace) != 0) {
    return absl::DataLossError(
        absl::StrCat(what, ": not a decodable JPEG: ", tjGetErrorStr2(handle)));
  }
  if (absl::Status pixels = CheckPixels(width, height, limits, "JPEG", what); !pixels.ok()) {
    return pixels;
  }
  if (const int scans = CountJpegScans(data, limits.max_jpeg_scans + 1);
      scans > limits.max_jpeg_scans) {
    return absl::DataLossError(absl::StrCat(what, ": JPEG has more than ", limits.max_jpeg_scans,
                                            " scans (a scan bomb?)"));
  }
  int out_w = width, out_h = height;
  if (min_decode_side > 0) {
    int num_factors = 0;
    const tjscalingfactor* factors = tjGetScalingFactors(&num_factors);
    for (int i = 0; factors != nullptr && i < num_factors; ++i) {
      const tjscalingfactor f = factors[i];
      if (f.num > f.denom) continue;  // Only downscaling.
      const int w = TJSCALED(width, f), h = TJSCALED(height, f);
      if (std::min(w, h) >= min_decode_side && int64_t{w} * h < int64_t{out_w} * out_h) {
        out_w = w;
        out_h = h;
      }
    }
  }
  const bool grey = colorspace == TJCS_GRAY;
  Image image = Image::Zeros(out_h, out_w, grey ? 1 : 3);
  if (tjDecompress2(handle, buf, static_cast<unsigned long>(data.size()), image.pixels.data(),
                    out_w, /*pitch=*/0, out_h, grey ? TJPF_GRAY : TJPF_RGB, TJFLAG_FASTDCT) != 0) {
    // Warnings (e.g. premature end of data) still produce a usable image with libjpeg-turbo
    // >= 2.1 via tjGetErrorCode; treat anything else as corrupt.
    if (tjGetErrorCode(handle) != TJERR_WARNING) {
      return absl::DataLossError(
          absl::StrCat(what, ": JPEG decode failed: ", tjGetErrorStr2(handle)));
    }
  }
  return image;
}

absl::StatusOr<Image> DecodePng(absl::string_view data, absl::string_view what,
                                const ImageLimits& limits) {
  if (absl::Status size = CheckFileSize(data, limits, what); !size.ok()) return size;
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, data.data(), data.size())) {
    const std::string message = png.message;
    png_image_free(&png);
    return absl::DataLossError(absl::StrCat(what, ": not a decodable PNG: ", message));
  }
  if (absl::Status pixels = CheckPixels(png.width, png.height, limits, "PNG", what); !pixels.ok()) {
    png_image_free(&png);
    return pixels;
  }
  const bool color = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
  png.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  Image image =
      Image::Zeros(static_cast<int>(png.height), static_cast<int>(png.width), color ? 3 : 1);
  png_color background{0, 0, 0};
  if (!png_image_finish_read(&png, &background, image.pixels.data(), /*row_stride=*/0,
                             /*colormap=*/nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    return absl::DataLossError(absl::StrCat(what, ": PNG decode failed: ", message));
  }
  return image;
}

absl::StatusOr<Image> DecodeImage(absl::string_view data, int min_decode_side,
                                  absl::string_view what, const ImageLimits& limits) {
  if (data.size() >= 3 && static_cast<unsigned char>(data[0]) == 0xFF &&
      static_cast<unsigned char>(data[1]) == 0xD8 && static_cast<unsigned char>(data[2]) == 0xFF) {
    return DecodeJpeg(data, min_decode_side, what, limits);
  }
  static constexpr unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (data.size() >= 8 && std::memcmp(data.data(), kPngSignature, 8) == 0) {
    return DecodePng(data, what, limits);
  }
  return absl::DataLossError(absl::StrCat(what, ": neither a JPEG nor a PNG (", data.size(),
                                          " bytes, unrecognised signature)"));
}

absl::StatusOr<std::string> EncodePng(const Image& image) {
  if (image.empty() || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != static_cast<size_t>(image.height) * image.width * image.channels) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodePng: expected a non-empty 1- or 3-channel image, got ", image.height,
                     "x", image.width, "x", image.channels));
  }
  png_image png;
  std::memset(&png, 0, sizeof(png));
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = image.channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  // First call sizes the output, second writes it.
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&png, nullptr, &size, /*convert_to_8bit=*/0, image.pixels.data(),
                                 /*row_stride=*/0, /*colormap=*/nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    return absl::InternalError(absl::StrCat("EncodePng: ", message));
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&png, out.data(), &size, 0, image.pixels.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    return absl::InternalError(absl::StrCat("EncodePng: ", message));
  }
  out.resize(size);
  return out;
}

}  // namespace peco::trainer
