#include "trainer/data/fashion_mnist.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace {

constexpr uint32_t kImagesMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions.
constexpr uint32_t kLabelsMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension.
constexpr int kSide = 28;
constexpr int kClasses = 10;

// Owns a gzFile handle.
class GzReader {
 public:
  explicit GzReader(std::string path) : path_(std::move(path)) {}
  ~GzReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  absl::Status Open() {
    file_ = gzopen(path_.c_str(), "rb");
    if (file_ == nullptr) return absl::NotFoundError(absl::StrCat(path_, ": cannot open"));
    gzbuffer(file_, 1 << 18);
    return absl::OkStatus();
  }

  // Reads exactly `size` bytes; `what` describes them for the error message.
  absl::Status ReadExact(void* dst, size_t size, const char* what) {
    auto* out = static_cast<uint8_t*>(dst);
    while (size > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size, 1u << 30));
      const int got = gzread(file_, out, chunk);
      if (got <= 0) {
        int errnum = 0;
        const char* msg = gzerror(file_, &errnum);
        return absl::DataLossError(absl::StrCat(path_, ": truncated or corrupt while reading ",
                                                what, errnum != Z_OK ? ": " : "",
                                                errnum != Z_OK ? msg : ""));
      }
      out += got;
      size -= static_cast<size_t>(got);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint32_t> ReadBigEndian32(const char* what) {
    uint8_t b[4];
    RETURN_IF_ERROR(ReadExact(b, 4, what));
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

absl::Status Expect(const std::string& path, const char* field, uint32_t got, uint32_t want) {
  if (got == want) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat(path, ": expected ", field, " ", want, ", found ", got));
}

absl::StatusOr<std::vector<uint8_t>> ReadImages(const std::string& path, uint32_t count) {
  GzReader reader(path);
  RETURN_IF_ERROR(reader.Open());
  ASSIGN_OR_RETURN(uint32_t magic, reader.ReadBigEndian32("magic number"));
  RETURN_IF_ERROR(Expect(path, "IDX image magic number", magic, kImagesMagic));
  ASSIGN_OR_RETURN(uint32_t n, reader.ReadBigEndian32("image count"));
  RETURN_IF_ERROR(Expect(path, "image count", n, count));
  ASSIGN_OR_RETURN(uint32_t rows, reader.ReadBigEndian32("row count"));
  RETURN_IF_ERROR(Expect(path, "rows", rows, kSide));
  ASSIGN_OR_RETURN(uint32_t cols, reader.ReadBigEndian32("column count"));
  RETURN_IF_ERROR(Expect(path, "columns", cols, kSide));
  std::vector<uint8_t> pixels(static_cast<size_t>(count) * kSide * kSide);
  RETURN_IF_ERROR(reader.ReadExact(pixels.data(), pixels.size(), "pixel data"));
  return pixels;
}

absl::StatusOr<std::vector<uint8_t>> ReadLabels(const std::string& path, uint32_t count) {
  GzReader reader(path);
  RETURN_IF_ERROR(reader.Open());
  ASSIGN_OR_RETURN(uint32_t magic, reader.ReadBigEndian32("magic number"));
  RETURN_IF_ERROR(Expect(path, "IDX label magic number", magic, kLabelsMagic));
  ASSIGN_OR_RETURN(uint32_t n, reader.ReadBigEndian32("label count"));
  RETURN_IF_ERROR(Expect(path, "label count", n, count));
  std::vector<uint8_t> labels(count);
  RETURN_IF_ERROR(reader.ReadExact(labels.data(), labels.size(), "labels"));
  for (uint32_t i = 0; i < count; ++i) {
    if (labels[i] >= kClasses) {
      return absl::DataLossError(
          absl::StrCat(path, ": label ", i, " is ", labels[i], ", expected < ", kClasses));
    }
  }
  return labels;
}

class FashionMnistDataset : public Dataset {
 public:
  FashionMnistDataset(std::string split, std::vector<uint8_t> pixels, std::vector<uint8_t> labels)
      : split_(std::move(split)), pixels_(std::move(pixels)), labels_(std::move(labels)) {}

  int64_t size() const override { return static_cast<int64_t>(labels_.size()); }
  int64_t num_classes() const override { return kClasses; }
  std::string name() const override { return absl::StrCat("fashion-mnist/", split_); }

  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    constexpr size_t kPixels = kSide * kSide;
    Example example;
    example.image.height = kSide;
    example.image.width = kSide;
    example.image.channels = 1;
    const uint8_t* src = pixels_.data() + static_cast<size_t>(index) * kPixels;
    example.image.pixels.assign(src, src + kPixels);
    example.label = labels_[static_cast<size_t>(index)];
    return example;
  }

  absl::StatusOr<int64_t> Label(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    return labels_[static_cast<size_t>(index)];
  }

 private:
  std::string split_;
  std::vector<uint8_t> pixels_;
  std::vector<uint8_t> labels_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> OpenFashionMnist(const std::string& dir,
                                                          const std::string& split) {
  std::string prefix;
  uint32_t count = 0;
  if (split == "train") {
    prefix = "train";
    count = 60000;
  } else if (split == "test") {
    prefix = "t10k";
    count = 10000;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("fashion-mnist split: expected \"train\" or \"test\", got \"", split, "\""));
  }
  const std::string base = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  ASSIGN_OR_RETURN(std::vector<uint8_t> pixels,
                   ReadImages(absl::StrCat(base, prefix, "-images-idx3-ubyte.gz"), count));
  ASSIGN_OR_RETURN(std::vector<uint8_t> labels,
                   ReadLabels(absl::StrCat(base, prefix, "-labels-idx1-ubyte.gz"), count));
  return std::unique_ptr<Dataset>(
      new FashionMnistDataset(split, std::move(pixels), std::move(labels)));
}

}  // namespace peco::trainer
