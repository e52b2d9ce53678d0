// CRC-32C, TensorBoard's record framing and event encoding, and the run record's files.
// The encoded events are read back by an independent reader (protobuf, TensorBoard's schema) in
// tests/scripts/run_record_test.py; here the layout is checked byte by byte.
#include "common/run_record_writer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/time/time.h"
#include "common/crc32c.h"
#include "common/tensorboard_events.h"
#include "gtest/gtest.h"
#include "tests/test_util/tiny_jobs.h"

namespace peco {
namespace {

uint64_t LittleEndian(const std::string& bytes, size_t offset, int width) {
  uint64_t value = 0;
  for (int i = width - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[offset + i]);
  }
  return value;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A 3x2 RGB PNG header (signature, IHDR length, type, width, height, depth 8, colour type 2).
std::string PngHeaderBytes(uint32_t width, uint32_t height, char colour_type) {
  std::string png("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16);
  for (uint32_t v : {width, height}) {
    for (int shift = 24; shift >= 0; shift -= 8) png.push_back(static_cast<char>(v >> shift));
  }
  png.push_back(8);
  png.push_back(colour_type);
  png.append(7, '\0');
  return png;
}

TEST(Crc32cTest, MatchesTheCastagnoliCheckValuesAndMasks) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);    // RFC 3720 B.4: 32 zero bytes
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);  // 32 bytes of 0xFF
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
  const uint32_t crc = Crc32c("123456789");
  EXPECT_EQ(MaskedCrc32c("123456789"), ((crc >> 15) | (crc << 17)) + 0xA282EAD8u);
}

TEST(TensorBoardEventsTest, RecordsAreLengthCrcPayloadCrc) {
  const std::string event = tensorboard::ScalarEvent(1.5, 7, "train/loss", 0.25f);
  const std::string record = tensorboard::FrameRecord(event);
  ASSERT_EQ(record.size(), 8 + 4 + event.size() + 4);
  EXPECT_EQ(LittleEndian(record, 0, 8), event.size());
  EXPECT_EQ(LittleEndian(record, 8, 4), MaskedCrc32c(record.substr(0, 8)));
  EXPECT_EQ(record.substr(12, event.size()), event);
  EXPECT_EQ(LittleEndian(record, 12 + event.size(), 4), MaskedCrc32c(event));
}

TEST(TensorBoardEventsTest, ScalarEventIsTheWireEncodingOfEventAndSummary) {
  // Event{wall_time: 1.5 (field 1, fixed64), step: 7 (field 2, varint), summary (field 5)
  // {value (field 1) {tag (field 1): "a", simple_value (field 2, fixed32): 0.25}}}.
  // As protobuf's own serialiser writes the same message (python3-protobuf, TensorBoard's
  // schema in tests/data/tensorboard/event.proto).
  const std::string expected = absl::HexStringToBytes(
      "09000000000000f83f"  // wall_time 1.5
      "1007"                // step 7
      "2a0a"                // summary, 10 bytes
      "0a08"                //   value, 8 bytes
      "0a0161"              //     tag "a"
      "150000803e");        //     simple_value 0.25f
  EXPECT_EQ(tensorboard::ScalarEvent(1.5, 7, "a", 0.25f), expected);
  EXPECT_EQ(tensorboard::FileVersionEvent(0),
            std::string("\x09\0\0\0\0\0\0\0\0\x1a\x0d", 11) + "brain.Event:2");
}

TEST(TensorBoardEventsTest, PngHeadersGiveSizeAndColourspaceAndAnythingElseIsRefused) {
  absl::StatusOr<tensorboard::PngHeader> rgb = tensorboard::ReadPngHeader(PngHeaderBytes(3, 2, 2));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  EXPECT_EQ(rgb->width, 3);
  EXPECT_EQ(rgb->height, 2);
  EXPECT_EQ(rgb->colorspace, 3);
  EXPECT_EQ(tensorboard::ReadPngHeader(PngHeaderBytes(1, 1, 0))->colorspace, 1);
  EXPECT_EQ(tensorboard::ReadPngHeader(PngHeaderBytes(1, 1, 6))->colorspace, 4);
  EXPECT_FALSE(tensorboard::ReadPngHeader("GIF89a not a png at all..").ok());
  EXPECT_FALSE(tensorboard::ReadPngHeader(PngHeaderBytes(0, 2, 2)).ok());
  EXPECT_FALSE(tensorboard::ReadPngHeader(PngHeaderBytes(3, 2, 5)).ok());
  EXPECT_FALSE(tensorboard::ImageEvent(0, 0, "x", "not a png").ok());
}

TEST(TensorBoardEventsTest, MetricTagsGroupHeldOutMetricsUnderEval) {
  EXPECT_EQ(tensorboard::MetricTag("loss"), "train/loss");
  EXPECT_EQ(tensorboard::MetricTag("images_per_sec"), "train/images_per_sec");
  EXPECT_EQ(tensorboard::MetricTag("eval_top1"), "eval/top1");
  EXPECT_EQ(tensorboard::MetricTag("validation_knn_top1_block_4"),
            "eval/validation_knn_top1_block_4");
  EXPECT_EQ(tensorboard::EventFileName(absl::FromUnixSeconds(42), "host", 7),
            "events.out.tfevents.0000000042.host.7.peco");
}

TEST(RunRecordWriterTest, AppendsMetricsAcrossWritersAndGivesEachItsOwnEventFile) {
  const std::string dir = testing::TempDir("run_record_writer", "append") + "/run";
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  std::string first_events;
  {
    absl::StatusOr<std::unique_ptr<RunRecordWriter>> writer = RunRecordWriter::Open(dir, now);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->AppendJson(R"({"event":"step","step":1})").ok());
    ASSERT_TRUE((*writer)->AddScalar("train/loss", 1, 0.5, now).ok());
    EXPECT_FALSE((*writer)->AddImage("preview", 1, "not a png", now).ok());
    ASSERT_TRUE((*writer)->Flush().ok());
    first_events = (*writer)->event_path();
    const std::string bytes = ReadAll(first_events);
    // The file version record, then the scalar, nothing of the refused image.
    const std::string version = tensorboard::FrameRecord(tensorboard::FileVersionEvent(1.7e9));
    const std::string scalar =
        tensorboard::FrameRecord(tensorboard::ScalarEvent(1.7e9, 1, "train/loss", 0.5f));
    EXPECT_EQ(bytes, version + scalar);
  }
  absl::StatusOr<std::unique_ptr<RunRecordWriter>> second = RunRecordWriter::Open(dir, now);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE((*second)->event_path(), first_events);  // same second, same process: a new file
  ASSERT_TRUE((*second)->AppendJson(R"({"event":"step","step":2})").ok());
  ASSERT_TRUE((*second)->Flush().ok());
  EXPECT_EQ(ReadAll(dir + "/metrics.jsonl"),
            "{\"event\":\"step\",\"step\":1}\n{\"event\":\"step\",\"step\":2}\n");
}

TEST(RunRecordWriterTest, AnUnwritableDirectoryIsAnErrorNamingIt) {
  const std::string dir = testing::TempDir("run_record_writer", "unwritable");
  std::ofstream(dir + "/file") << "x";
  absl::StatusOr<std::unique_ptr<RunRecordWriter>> writer =
      RunRecordWriter::Open(dir + "/file/run", absl::Now());
  ASSERT_FALSE(writer.ok());
  EXPECT_NE(writer.status().message().find(dir + "/file"), std::string::npos) << writer.status();
}

}  // namespace
}  // namespace peco
