#include "cli/checkpoint_download.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"

namespace peco::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string pattern = absl::StrCat(::testing::TempDir(), "/checkpoint_download_test_XXXXXX");
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  return pattern;
}

void AddFile(v1::CheckpointInfo* info, const std::string& name, const std::string& data) {
  v1::ManifestEntry* entry = info->add_manifest();
  entry->set_name(name);
  entry->set_size(static_cast<int64_t>(data.size()));
  entry->set_sha256(Sha256Hex(data));
  info->set_bytes(info->bytes() + static_cast<int64_t>(data.size()));
}

v1::CheckpointChunk Chunk(const std::string& name, int64_t offset, const std::string& data) {
  v1::CheckpointChunk chunk;
  chunk.set_file_name(name);
  chunk.set_offset(offset);
  chunk.set_data(data);
  return chunk;
}

class CheckpointDownloadTest : public ::testing::Test {
 protected:
  CheckpointDownloadTest() : root_(MakeTempDir()), dir_(root_ + "/ckpt") {
    model_ = std::string(3000, 'm');
    for (size_t i = 0; i < model_.size(); ++i) model_[i] = static_cast<char>(i * 7 % 251);
    state_ = R"({"step":100})";
    AddFile(&info_, "trainer_state.json", state_);
    AddFile(&info_, "model.pt", model_);
    AddFile(&info_, "empty.bin", "");
  }

  const std::string root_;
  const std::string dir_;
  std::string model_;
  std::string state_;
  v1::CheckpointInfo info_;
};

TEST_F(CheckpointDownloadTest, WritesVerifiedFilesAndASortedManifest) {
  absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
      CheckpointDownload::Begin(dir_, info_);
  ASSERT_TRUE(download.ok()) << download.status();
  ASSERT_TRUE((*download)->Write(Chunk("model.pt", 0, model_.substr(0, 1000))).ok());
  ASSERT_TRUE((*download)->Write(Chunk("trainer_state.json", 0, state_)).ok());
  ASSERT_TRUE((*download)->Write(Chunk("model.pt", 1000, model_.substr(1000))).ok());
  EXPECT_FALSE(fs::exists(dir_ + "/model.pt"));  // staged until verified
  EXPECT_TRUE(fs::exists(dir_ + "/.partial/model.pt"));
  ASSERT_TRUE((*download)->Commit().ok());
  EXPECT_EQ((*download)->bytes_received(), static_cast<int64_t>(model_.size() + state_.size()));
  download->reset();

  EXPECT_EQ(*ReadFileToString(dir_ + "/model.pt"), model_);
  EXPECT_EQ(*ReadFileToString(dir_ + "/trainer_state.json"), state_);
  EXPECT_EQ(*ReadFileToString(dir_ + "/empty.bin"), "");
  EXPECT_FALSE(fs::exists(dir_ + "/.partial"));
  EXPECT_EQ(*ReadFileToString(dir_ + "/MANIFEST"),
            absl::StrCat(Sha256Hex(""), " 0 empty.bin\n", Sha256Hex(model_), " 3000 model.pt\n",
                         Sha256Hex(state_), " ", state_.size(), " trainer_state.json\n"));
}

TEST_F(CheckpointDownloadTest, CorruptedBytesLeaveNothing) {
  absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
      CheckpointDownload::Begin(dir_, info_);
  ASSERT_TRUE(download.ok());
  std::string corrupted = model_;
  corrupted[1234] ^= 0x01;  // same size, one bit flipped
  ASSERT_TRUE((*download)->Write(Chunk("model.pt", 0, corrupted)).ok());
  ASSERT_TRUE((*download)->Write(Chunk("trainer_state.json", 0, state_)).ok());
  absl::Status status = (*download)->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("model.pt: SHA-256"));
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(CheckpointDownloadTest, ShortFileIsRefused) {
  absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
      CheckpointDownload::Begin(dir_, info_);
  ASSERT_TRUE(download.ok());
  ASSERT_TRUE((*download)->Write(Chunk("model.pt", 0, model_.substr(0, 2999))).ok());
  ASSERT_TRUE((*download)->Write(Chunk("trainer_state.json", 0, state_)).ok());
  absl::Status status = (*download)->Commit();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("model.pt: received 2999 bytes, the manifest says 3000"));
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(CheckpointDownloadTest, ChunksOutOfPlaceAreRefused) {
  absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
      CheckpointDownload::Begin(dir_, info_);
  ASSERT_TRUE(download.ok());
  absl::Status unknown = (*download)->Write(Chunk("optimizer.pt", 0, "x"));
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.message(), HasSubstr("optimizer.pt"));

  absl::Status gap = (*download)->Write(Chunk("model.pt", 10, "x"));
  EXPECT_EQ(gap.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gap.message(), HasSubstr("model.pt at offset 10, expected offset 0"));

  absl::Status too_long = (*download)->Write(Chunk("trainer_state.json", 0, state_ + "!"));
  EXPECT_EQ(too_long.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(too_long.message(), HasSubstr("trainer_state.json"));

  // Dropping the download without Commit removes what it created.
  download->reset();
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(CheckpointDownloadTest, UnsafeNamesAreRefusedBeforeAnythingIsCreated) {
  for (const std::string name : {"../escape", "sub/file", "MANIFEST", ".partial", "..", ""}) {
    v1::CheckpointInfo info;
    AddFile(&info, name, "x");
    absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
        CheckpointDownload::Begin(dir_, info);
    EXPECT_EQ(download.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_FALSE(fs::exists(dir_)) << name;
  }
  v1::CheckpointInfo twice;
  AddFile(&twice, "a", "x");
  AddFile(&twice, "a", "x");
  EXPECT_THAT(CheckpointDownload::Begin(dir_, twice).status().message(), HasSubstr("listed twice"));
}

TEST_F(CheckpointDownloadTest, NonEmptyDirectoryIsRefusedAndKept) {
  ASSERT_TRUE(fs::create_directory(dir_));
  ASSERT_TRUE(WriteFileSynced(dir_ + "/mine.txt", "keep me").ok());
  absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
      CheckpointDownload::Begin(dir_, info_);
  EXPECT_EQ(download.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(download.status().message(), HasSubstr(dir_));
  EXPECT_EQ(*ReadFileToString(dir_ + "/mine.txt"), "keep me");
}

TEST_F(CheckpointDownloadTest, ExistingEmptyDirectoryIsUsedAndKeptOnFailure) {
  ASSERT_TRUE(fs::create_directory(dir_));
  ASSERT_TRUE(fs::create_directory(dir_ + "/.partial"));  // an interrupted earlier download
  ASSERT_TRUE(WriteFileSynced(dir_ + "/.partial/junk", "junk").ok());
  {
    absl::StatusOr<std::unique_ptr<CheckpointDownload>> download =
        CheckpointDownload::Begin(dir_, info_);
    ASSERT_TRUE(download.ok()) << download.status();
    EXPECT_FALSE(fs::exists(dir_ + "/.partial/junk"));
    EXPECT_FALSE((*download)->Commit().ok());  // nothing received
  }
  EXPECT_TRUE(fs::exists(dir_));
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST(ManifestTextTest, SortedByName) {
  v1::CheckpointInfo info;
  AddFile(&info, "b", "2");
  AddFile(&info, "a", "1");
  EXPECT_EQ(ManifestText(info), absl::StrCat(Sha256Hex("1"), " 1 a\n", Sha256Hex("2"), " 1 b\n"));
}

}  // namespace
}  // namespace peco::cli
