#include "common/tensorboard_events.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/crc32c.h"

namespace peco::tensorboard {
namespace {

// Protocol buffer wire types.
constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kFixed32 = 5;

// TensorFlow's DataType DT_STRING, the dtype of a text summary's tensor.
constexpr int kDtString = 7;

// Appends protocol buffer fields to a message. Not thread-safe.
class WireWriter {
 public:
  WireWriter& Varint(int field, uint64_t value) {
    Key(field, kVarint);
    PutVarint(value);
    return *this;
  }
  WireWriter& Double(int field, double value) {
    Key(field, kFixed64);
    uint64_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    PutLittleEndian(bits, 8);
    return *this;
  }
  WireWriter& Float(int field, float value) {
    Key(field, kFixed32);
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    PutLittleEndian(bits, 4);
    return *this;
  }
  // A string, bytes or embedded message field.
  WireWriter& Bytes(int field, absl::string_view bytes) {
    Key(field, kLengthDelimited);
    PutVarint(bytes.size());
    out_.append(bytes.data(), bytes.size());
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  void Key(int field, int wire_type) {
    PutVarint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
  }
  void PutVarint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7F) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  void PutLittleEndian(uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) out_.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  }
  std::string out_;
};

// Event { double wall_time = 1; int64 step = 2; Summary summary = 5; } with one Summary.Value.
std::string SummaryEvent(double wall_time, int64_t step, const std::string& value) {
  const std::string summary = WireWriter().Bytes(1, value).str();  // Summary.value = 1
  return WireWriter()
      .Double(1, wall_time)
      .Varint(2, static_cast<uint64_t>(step))
      .Bytes(5, summary)
      .str();
}

uint32_t ReadBigEndian32(absl::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

}  // namespace

std::string FileVersionEvent(double wall_time) {
  return WireWriter().Double(1, wall_time).Bytes(3, kFileVersion).str();
}

std::string ScalarEvent(double wall_time, int64_t step, absl::string_view tag, float value) {
  // Summary.Value { string tag = 1; float simple_value = 2; }
  return SummaryEvent(wall_time, step, WireWriter().Bytes(1, tag).Float(2, value).str());
}

absl::StatusOr<std::string> ImageEvent(double wall_time, int64_t step, absl::string_view tag,
                                       absl::string_view png) {
  absl::StatusOr<PngHeader> header = ReadPngHeader(png);
  if (!header.ok()) return header.status();
  // Summary.Image { int32 height = 1; int32 width = 2; int32 colorspace = 3;
  //                 bytes encoded_image_string = 4; }
  const std::string image = WireWriter()
                                .Varint(1, static_cast<uint64_t>(header->height))
                                .Varint(2, static_cast<uint64_t>(header->width))
                                .Varint(3, static_cast<uint64_t>(header->colorspace))
                                .Bytes(4, png)
                                .str();
  // Summary.Value { string tag = 1; Image image = 4; }
  return SummaryEvent(wall_time, step, WireWriter().Bytes(1, tag).Bytes(4, image).str());
}

std::string TextEvent(double wall_time, int64_t step, absl::string_view tag,
                      absl::string_view text) {
  // TensorProto { DataType dtype = 1; repeated bytes string_val = 8; }: a scalar string.
  const std::string tensor = WireWriter().Varint(1, kDtString).Bytes(8, text).str();
  // SummaryMetadata { PluginData plugin_data = 1 { string plugin_name = 1; } }
  const std::string plugin = WireWriter().Bytes(1, "text").str();
  const std::string metadata = WireWriter().Bytes(1, plugin).str();
  // Summary.Value { string tag = 1; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
  return SummaryEvent(wall_time, step,
                      WireWriter().Bytes(1, tag).Bytes(8, tensor).Bytes(9, metadata).str());
}

std::string FrameRecord(absl::string_view event) {
  std::string length(8, '\0');
  const uint64_t size = event.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<char>((size >> (8 * i)) & 0xFF);
  std::string record = length;
  const uint32_t checks[2] = {MaskedCrc32c(length), MaskedCrc32c(event)};
  auto put32 = [&record](uint32_t value) {
    for (int i = 0; i < 4; ++i) record.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  };
  put32(checks[0]);
  record.append(event.data(), event.size());
  put32(checks[1]);
  return record;
}

absl::StatusOr<PngHeader> ReadPngHeader(absl::string_view png) {
  static constexpr char kSignature[] = "\x89PNG\r\n\x1a\n";
  // Signature (8), IHDR length (4) and type (4), width (4), height (4), bit depth, colour type.
  if (png.size() < 26 || png.substr(0, 8) != absl::string_view(kSignature, 8) ||
      png.substr(12, 4) != "IHDR") {
    return absl::InvalidArgumentError("image: expected a PNG (signature and IHDR chunk)");
  }
  PngHeader header;
  const uint32_t width = ReadBigEndian32(png.substr(16, 4));
  const uint32_t height = ReadBigEndian32(png.substr(20, 4));
  if (width == 0 || height == 0 || width > (1u << 30) || height > (1u << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image: PNG size ", width, "x", height, " is out of range"));
  }
  header.width = static_cast<int>(width);
  header.height = static_cast<int>(height);
  switch (static_cast<unsigned char>(png[25])) {
    case 0:
      header.colorspace = 1;
      break;
    case 4:
      header.colorspace = 2;
      break;
    case 2:
    case 3:  // palette: decoded to RGB
      header.colorspace = 3;
      break;
    case 6:
      header.colorspace = 4;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "image: PNG colour type ", static_cast<int>(static_cast<unsigned char>(png[25])),
          " is not one of 0, 2, 3, 4, 6"));
  }
  return header;
}

std::string EventFileName(absl::Time created, absl::string_view host, int64_t pid) {
  return absl::StrFormat("events.out.tfevents.%010d.%s.%d.peco", absl::ToUnixSeconds(created), host,
                         pid);
}

std::string MetricTag(absl::string_view metric) {
  if (absl::ConsumePrefix(&metric, "eval_")) return absl::StrCat("eval/", metric);
  if (absl::StartsWith(metric, "validation_")) return absl::StrCat("eval/", metric);
  return absl::StrCat("train/", metric);
}

}  // namespace peco::tensorboard
