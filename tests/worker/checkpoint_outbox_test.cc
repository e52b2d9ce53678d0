// LinkCheckpoint and the outbox's queue with backoff.
#include "worker/checkpoint_outbox.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_manifest.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/files.h"
#include "worker/checkpoint_link.h"

namespace peco::worker {
namespace {
namespace fs = std::filesystem;

using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::testing::HasSubstr;

std::string Line(const std::string& name, const std::string& content) {
  return absl::StrCat(Sha256Hex(content), " ", content.size(), " ", name, "\n");
}

// Writes a checkpoint like the trainer: files and a MANIFEST.
void WriteCheckpoint(const std::string& dir, const std::map<std::string, std::string>& files) {
  fs::create_directories(dir);
  std::string manifest;
  for (const auto& [name, content] : files) {
    std::ofstream(fs::path(dir) / name) << content;
    manifest += Line(name, content);
  }
  std::ofstream(fs::path(dir) / kManifestFileName) << manifest;
}

TEST(LinkCheckpointTest, SurvivesTheOriginalsRemoval) {
  ScopedTempDir temp("link");
  const std::string& root = temp.path();
  WriteCheckpoint(root + "/src", {{"model.pt", "weights"}, {"empty", ""}});
  std::ofstream(root + "/src/unlisted.tmp") << "not part of it";
  ASSERT_TRUE(LinkCheckpoint(root + "/src", root + "/copy").ok());
  struct stat info;
  ASSERT_EQ(::stat((root + "/src/model.pt").c_str(), &info), 0);
  EXPECT_EQ(info.st_nlink, 2u);  // linked, not copied
  fs::remove_all(root + "/src");
  EXPECT_EQ(ReadFileForTest(root + "/copy/model.pt"), "weights");
  EXPECT_TRUE(ReadManifest(root + "/copy").ok());
  EXPECT_FALSE(fs::exists(root + "/copy/unlisted.tmp"));

  EXPECT_EQ(LinkCheckpoint(root + "/src", root + "/again").code(), absl::StatusCode::kNotFound);
  WriteCheckpoint(root + "/partial", {{"model.pt", "w"}});
  fs::remove(root + "/partial/model.pt");  // retention got there first
  EXPECT_EQ(LinkCheckpoint(root + "/partial", root + "/copy2").code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(root + "/copy2"));
}

class CheckpointOutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = temp_.path();
    WriteCheckpoint(root_ + "/run/step-5", {{"model.pt", "weights"}});
  }

  static v1::CheckpointHeader Header(const std::string& job, int64_t attempt, int64_t step) {
    v1::CheckpointHeader header;
    header.set_job_id(job);
    header.set_attempt(attempt);
    header.set_step(step);
    return header;
  }

  ScopedTempDir temp_{"outbox"};
  std::string root_;
  const absl::Time t0_ = absl::UnixEpoch() + absl::Hours(1);
};

TEST_F(CheckpointOutboxTest, RetriesWithDoublingBackoffThenRemovesTheCopy) {
  CheckpointOutbox outbox(root_ + "/outbox", absl::Seconds(1), absl::Seconds(3));
  ASSERT_TRUE(outbox.Add(Header("job-1", 2, 5), root_ + "/run/step-5").ok());
  EXPECT_EQ(outbox.Add(Header("job-1", 2, 5), root_ + "/run/step-5").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(outbox.Pending("job-1", 2), 1);
  EXPECT_EQ(outbox.Pending("job-1", 1), 0);

  std::optional<CheckpointOutbox::Entry> entry = outbox.NextDue(t0_);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->dir, root_ + "/outbox/job-1-a2-step-000000000005");
  EXPECT_EQ(ReadFileForTest(entry->dir + "/model.pt"), "weights");
  EXPECT_FALSE(outbox.NextDue(t0_).has_value());  // being uploaded

  absl::Time now = t0_;
  for (absl::Duration backoff :
       {absl::Seconds(1), absl::Seconds(2), absl::Seconds(3), absl::Seconds(3)}) {
    outbox.Finish(entry->id, /*retry=*/true, now, absl::UnavailableError("down"));
    EXPECT_FALSE(outbox.NextDue(now + backoff - absl::Milliseconds(1)).has_value());
    now += backoff;
    entry = outbox.NextDue(now);
    ASSERT_TRUE(entry.has_value());
  }
  EXPECT_EQ(entry->tries, 4);
  EXPECT_EQ(entry->last_error.code(), absl::StatusCode::kUnavailable);
  outbox.Finish(entry->id, /*retry=*/false, now, absl::OkStatus());
  EXPECT_EQ(outbox.Pending(), 0);
  EXPECT_FALSE(fs::exists(entry->dir));
}

TEST_F(CheckpointOutboxTest, DropAttemptRemovesQueuedEntriesAndEndsTheBusyOne) {
  WriteCheckpoint(root_ + "/run/step-6", {{"model.pt", "w6"}});
  CheckpointOutbox outbox(root_ + "/outbox", absl::Seconds(1), absl::Seconds(1));
  ASSERT_TRUE(outbox.Add(Header("job-1", 1, 5), root_ + "/run/step-5").ok());
  ASSERT_TRUE(outbox.Add(Header("job-1", 1, 6), root_ + "/run/step-6").ok());
  ASSERT_TRUE(outbox.Add(Header("job-2", 1, 5), root_ + "/run/step-5").ok());
  std::optional<CheckpointOutbox::Entry> busy = outbox.NextDue(t0_);
  ASSERT_TRUE(busy.has_value());
  outbox.DropAttempt("job-1", 1);
  EXPECT_EQ(outbox.Pending("job-1", 1), 1);  // the one being uploaded
  outbox.Finish(busy->id, /*retry=*/true, t0_, absl::UnavailableError("x"));  // not retried
  EXPECT_EQ(outbox.Pending("job-1", 1), 0);
  EXPECT_EQ(outbox.Pending(), 1);
  std::optional<CheckpointOutbox::Entry> next = outbox.NextDue(t0_);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->header.job_id(), "job-2");
}

}  // namespace
}  // namespace peco::worker
