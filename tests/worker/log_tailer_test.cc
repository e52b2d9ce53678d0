// LogTailer: whole lines only, offsets that follow the file, long lines cut, the last partial
// line sent at the end, a missing file tolerated.
#include "worker/log_tailer.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/test_util/files.h"

namespace peco::worker {
namespace {

class LogTailerTest : public ::testing::Test {
 protected:
  LogTailerTest() : path_(temp_.Join("attempt-1-rank-0.log")) {}
  void Append(const std::string& text) {
    std::ofstream(path_, std::ios::app | std::ios::binary) << text;
  }
  static std::string Joined(const std::vector<v1::LogChunk>& chunks) {
    std::string all;
    for (const v1::LogChunk& chunk : chunks) all += chunk.data();
    return all;
  }
  ::peco::testing::ScopedTempDir temp_{"log_tailer_test"};
  std::string path_;
};

TEST_F(LogTailerTest, SendsWholeLinesWithTheirOffsets) {
  LogTailer tailer(path_, "job-1", 2, 3);
  EXPECT_TRUE(tailer.Poll(false).empty());  // not created yet
  Append("first line\nsecond ");
  std::vector<v1::LogChunk> chunks = tailer.Poll(false);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "first line\n");
  EXPECT_EQ(chunks[0].offset(), 0);
  EXPECT_EQ(chunks[0].job_id(), "job-1");
  EXPECT_EQ(chunks[0].attempt(), 2);
  EXPECT_EQ(chunks[0].rank(), 3);
  EXPECT_TRUE(tailer.Poll(false).empty());  // "second " waits for its newline
  Append("half\nthird\nno newline");
  chunks = tailer.Poll(false);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "second half\nthird\n");
  EXPECT_EQ(chunks[0].offset(), 11);
  chunks = tailer.Poll(true);  // the rank has exited: the rest goes too
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].data(), "no newline");
  EXPECT_EQ(chunks[0].offset(), 29);
  EXPECT_EQ(tailer.offset(), 39);
  EXPECT_TRUE(tailer.Poll(true).empty());
}

TEST_F(LogTailerTest, LongLinesAreCutAndPollsAreBounded) {
  LogTailer tailer(path_, "job-1", 1, 0, /*max_chunk_bytes=*/8, /*max_poll_bytes=*/20);
  Append(std::string(30, 'a') + "\nbb\n");
  std::vector<v1::LogChunk> first = tailer.Poll(false);
  ASSERT_EQ(first.size(), 2u);  // 20 bytes read: two full 8-byte pieces, 4 bytes wait
  EXPECT_EQ(Joined(first), std::string(16, 'a'));
  std::vector<v1::LogChunk> rest = tailer.Poll(false);
  EXPECT_EQ(Joined(rest), std::string(14, 'a') + "\nbb\n");
  for (const v1::LogChunk& chunk : rest) EXPECT_LE(chunk.data().size(), 8u);
  EXPECT_EQ(rest.front().offset(), 16);
  EXPECT_EQ(tailer.offset(), 34);
}

}  // namespace
}  // namespace peco::worker
