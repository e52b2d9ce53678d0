// JobLogStore: chunks applied by offset (resent bytes skipped, lost bytes marked), truncation,
// the index rebuilt by a reopened store, listing, reading and waiting for changes.
#include "coordinator/job_log_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>

#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::LogChunk Chunk(int64_t offset, const std::string& data, int64_t attempt = 1, int32_t rank = 0) {
  v1::LogChunk chunk;
  chunk.set_job_id("job-000001");
  chunk.set_attempt(attempt);
  chunk.set_rank(rank);
  chunk.set_offset(offset);
  chunk.set_data(data);
  return chunk;
}

class JobLogStoreTest : public ::testing::Test {
 protected:
  JobLogStoreTest() {
    options_.dir = temp_.Join("logs");
    Reopen();
  }
  void Reopen() {
    absl::StatusOr<std::unique_ptr<JobLogStore>> store = JobLogStore::Open(options_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  std::string Whole(int64_t attempt = 1, int32_t rank = 0) {
    absl::StatusOr<std::string> data = store_->Read("job-000001", attempt, rank, 0, 1 << 20);
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? *data : "";
  }
  ::peco::testing::ScopedTempDir temp_{"job_log_store_test"};
  JobLogStoreOptions options_;
  std::unique_ptr<JobLogStore> store_;
};

TEST_F(JobLogStoreTest, ResentBytesAreSkippedAndLostBytesMarked) {
  ASSERT_TRUE(store_->Append(Chunk(0, "one\ntwo\n")).ok());
  ASSERT_TRUE(store_->Append(Chunk(0, "one\ntwo\n")).ok());    // resent whole
  ASSERT_TRUE(store_->Append(Chunk(4, "two\nthree\n")).ok());  // resent, overlapping
  EXPECT_EQ(Whole(), "one\ntwo\nthree\n");
  ASSERT_TRUE(store_->Append(Chunk(20, "six\n")).ok());  // bytes 14..19 never came
  EXPECT_EQ(Whole(), "one\ntwo\nthree\n\n[peco: 6 bytes of this log were lost]\nsix\n");
  ASSERT_TRUE(store_->Append(Chunk(20, "six\n")).ok());  // worker offsets still map
  ASSERT_TRUE(store_->Append(Chunk(24, "seven\n")).ok());
  const std::string expected =
      "one\ntwo\nthree\n\n[peco: 6 bytes of this log were lost]\nsix\nseven\n";
  EXPECT_EQ(Whole(), expected);

  // A reopened store maps worker offsets the same way (the marks file).
  Reopen();
  ASSERT_TRUE(store_->Append(Chunk(24, "seven\n")).ok());
  ASSERT_TRUE(store_->Append(Chunk(30, "eight\n")).ok());
  EXPECT_EQ(Whole(), expected + "eight\n");
}

TEST_F(JobLogStoreTest, SyncMakesAppendedLogsDurableAndReportsWhatItCouldNot) {
  EXPECT_TRUE(store_->Sync().ok());  // nothing written yet
  ASSERT_TRUE(store_->Append(Chunk(0, "one\n")).ok());
  ASSERT_TRUE(store_->Append(Chunk(0, "r1\n", 1, 1)).ok());
  EXPECT_TRUE(store_->Sync().ok());
  // A file that cannot be synced fails the Sync, naming it, and stays due for the next one.
  ASSERT_TRUE(store_->Append(Chunk(4, "two\n")).ok());
  std::string path;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(options_.dir)) {
    if (entry.is_regular_file() && entry.path().string().find("marks") == std::string::npos &&
        ::peco::testing::ReadFileForTest(entry.path()) == "one\ntwo\n") {
      path = entry.path().string();
    }
  }
  ASSERT_FALSE(path.empty());
  const std::string aside = path + ".aside";
  std::filesystem::rename(path, aside);
  absl::Status failed = store_->Sync();
  EXPECT_FALSE(failed.ok());
  EXPECT_THAT(failed.message(), HasSubstr(path));
  std::filesystem::rename(aside, path);
  EXPECT_TRUE(store_->Sync().ok());
  EXPECT_EQ(Whole(), "one\ntwo\n");
}

TEST_F(JobLogStoreTest, LogsListedByAttemptAndRankAndReadInPieces) {
  ASSERT_TRUE(store_->Append(Chunk(0, "b\n", 2, 0)).ok());
  ASSERT_TRUE(store_->Append(Chunk(0, "a1\n", 1, 1)).ok());
  ASSERT_TRUE(store_->Append(Chunk(0, "a0\n", 1, 0)).ok());
  absl::StatusOr<std::vector<StoredLog>> logs = store_->List("job-000001");
  ASSERT_TRUE(logs.ok()) << logs.status();
  EXPECT_THAT(*logs, ElementsAre(StoredLog{1, 0, 3}, StoredLog{1, 1, 3}, StoredLog{2, 0, 2}));
  EXPECT_EQ(*store_->Read("job-000001", 1, 1, 1, 10), "1\n");
  EXPECT_EQ(*store_->Read("job-000001", 1, 1, 3, 10), "");
  EXPECT_EQ(store_->Read("job-000001", 3, 0, 0, 10).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->List("job-000002")->empty());
}

TEST_F(JobLogStoreTest, LongLogsAreTruncatedWithANote) {
  options_.max_bytes_per_log = 4096;
  Reopen();
  const std::string line(1000, 'x');
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_->Append(Chunk(i * 1000, line)).ok());
  const std::string whole = Whole();
  EXPECT_EQ(whole.substr(0, 4096), std::string(4096, 'x'));
  EXPECT_THAT(whole.substr(4096), HasSubstr("[peco: log truncated at 4096 bytes"));
  ASSERT_TRUE(store_->Append(Chunk(5000, "more\n")).ok());  // dropped
  EXPECT_EQ(Whole(), whole);
  Reopen();
  ASSERT_TRUE(store_->Append(Chunk(5005, "more\n")).ok());  // still truncated after a restart
  EXPECT_EQ(Whole(), whole);
}

TEST_F(JobLogStoreTest, BadChunksAreRefusedNamingTheField) {
  v1::LogChunk escape = Chunk(0, "x");
  escape.set_job_id("../etc");
  EXPECT_THAT(std::string(store_->Append(escape).message()), HasSubstr("job_id"));
  EXPECT_THAT(std::string(store_->Append(Chunk(0, "x", 0)).message()), HasSubstr("attempt >= 1"));
  EXPECT_THAT(std::string(store_->Append(Chunk(-1, "x")).message()), HasSubstr("offset >= 0"));
  EXPECT_EQ(JobLogStore::Open({"", 1 << 20}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(JobLogStoreTest, WaitersWakeOnAppendAndShutdown) {
  const uint64_t seen = store_->Version("job-000001");
  EXPECT_FALSE(store_->WaitForChange("job-000001", seen, absl::Now()));  // past deadline
  std::thread writer([&] { ASSERT_TRUE(store_->Append(Chunk(0, "line\n")).ok()); });
  EXPECT_TRUE(store_->WaitForChange("job-000001", seen, absl::InfiniteFuture()));
  writer.join();
  EXPECT_NE(store_->Version("job-000001"), seen);
  const uint64_t now_seen = store_->Version("job-000001");
  std::thread stopper([&] { store_->Shutdown(); });
  EXPECT_FALSE(store_->WaitForChange("job-000001", now_seen, absl::InfiniteFuture()));
  stopper.join();
  EXPECT_TRUE(store_->shut_down());
}

}  // namespace
}  // namespace peco::coordinator
