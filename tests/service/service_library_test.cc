// The service library (service/): the receiving end of a checkpoint stream shared by the
// worker's fetch and the CLI's download and the one conversion between Manifest and the proto
// (checkpoint_transfer.h), and the job kind table (job_kinds.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "service/checkpoint_transfer.h"
#include "service/job_kinds.h"
#include "tests/test_util/files.h"

namespace peco::service {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::peco::testing::WriteFileForTest;
using ::testing::HasSubstr;

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
  CheckpointDownloadTest() : dir_(temp_.Join("ckpt")) {
    model_.resize(3000);
    for (size_t i = 0; i < model_.size(); ++i) model_[i] = static_cast<char>(i * 7 % 251);
    info_.set_id("step-000000000100");
    AddFile(&info_, "trainer_state.json", state_);
    AddFile(&info_, "model.pt", model_);
    AddFile(&info_, "empty.bin", "");
  }

  ScopedTempDir temp_{"transfer"};
  const std::string dir_;
  std::string model_;
  const std::string state_ = R"({"step":100})";
  v1::CheckpointInfo info_;
};

TEST_F(CheckpointDownloadTest, WritesVerifiedFilesAndASortedManifest) {
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = StartDownload(info_, dir_);
  ASSERT_TRUE(download.ok()) << download.status();
  ASSERT_TRUE(AppendChunk(**download, Chunk("model.pt", 0, model_.substr(0, 1000))).ok());
  ASSERT_TRUE(AppendChunk(**download, Chunk("trainer_state.json", 0, state_)).ok());
  ASSERT_TRUE(AppendChunk(**download, Chunk("model.pt", 1000, model_.substr(1000))).ok());
  EXPECT_FALSE(fs::exists(dir_));  // staged until verified
  ASSERT_TRUE(FinishDownload(**download, dir_).ok());
  download->reset();

  EXPECT_EQ(ReadFileForTest(fs::path(dir_) / "model.pt"), model_);
  EXPECT_EQ(ReadFileForTest(fs::path(dir_) / "empty.bin"), "");
  EXPECT_EQ(ReadFileForTest(fs::path(dir_) / "MANIFEST"),
            absl::StrCat(Sha256Hex(""), " 0 empty.bin\n", Sha256Hex(model_), " 3000 model.pt\n",
                         Sha256Hex(state_), " ", state_.size(), " trainer_state.json\n"));
  EXPECT_FALSE(fs::exists(StagingDirFor(dir_)));
}

TEST_F(CheckpointDownloadTest, CorruptedOrShortBytesLeaveNothing) {
  std::string corrupted = model_;
  corrupted[1234] ^= 0x01;  // same size, one bit flipped
  for (const std::string& model : {corrupted, model_.substr(0, 2999)}) {
    absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = StartDownload(info_, dir_);
    ASSERT_TRUE(download.ok());
    ASSERT_TRUE(AppendChunk(**download, Chunk("model.pt", 0, model)).ok());
    ASSERT_TRUE(AppendChunk(**download, Chunk("trainer_state.json", 0, state_)).ok());
    absl::Status status = FinishDownload(**download, dir_);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(status.message(), HasSubstr("checkpoint step-000000000100: file model.pt has"));
    download->reset();
    EXPECT_FALSE(fs::exists(dir_));
    EXPECT_FALSE(fs::exists(StagingDirFor(dir_)));
  }
}

TEST_F(CheckpointDownloadTest, UnsafeOrRepeatedNamesAreRefusedBeforeAnythingIsCreated) {
  for (const std::string name : {"../escape", "sub/file", "MANIFEST", ".partial", "..", ""}) {
    v1::CheckpointInfo info;
    AddFile(&info, name, "x");
    EXPECT_EQ(StartDownload(info, dir_).status().code(), absl::StatusCode::kInvalidArgument)
        << name;
    EXPECT_FALSE(fs::exists(dir_)) << name;
    EXPECT_FALSE(fs::exists(StagingDirFor(dir_))) << name;
  }
  v1::CheckpointInfo twice;
  AddFile(&twice, "a", "x");
  AddFile(&twice, "a", "x");
  EXPECT_THAT(StartDownload(twice, dir_).status().message(), HasSubstr("listed twice"));
  EXPECT_THAT(StartDownload(v1::CheckpointInfo(), dir_).status().message(),
              HasSubstr("lists no files"));
}

TEST_F(CheckpointDownloadTest, NonEmptyDirectoryIsRefusedAndKept) {
  WriteFileForTest(fs::path(dir_) / "mine.txt", "keep me");
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = StartDownload(info_, dir_);
  EXPECT_EQ(download.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(download.status().message(), HasSubstr(dir_));
  EXPECT_EQ(ReadFileForTest(fs::path(dir_) / "mine.txt"), "keep me");
}

TEST_F(CheckpointDownloadTest, ExistingEmptyDirectoryIsFilledOrKeptEmptyOnFailure) {
  ASSERT_TRUE(fs::create_directory(dir_));
  {
    absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = StartDownload(info_, dir_);
    ASSERT_TRUE(download.ok()) << download.status();
    EXPECT_FALSE(FinishDownload(**download, dir_).ok());  // nothing received
  }
  EXPECT_TRUE(fs::is_directory(dir_));
  EXPECT_TRUE(fs::is_empty(dir_));
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = StartDownload(info_, dir_);
  ASSERT_TRUE(download.ok());
  ASSERT_TRUE(AppendChunk(**download, Chunk("model.pt", 0, model_)).ok());
  ASSERT_TRUE(AppendChunk(**download, Chunk("trainer_state.json", 0, state_)).ok());
  ASSERT_TRUE(FinishDownload(**download, dir_).ok());
  EXPECT_TRUE(VerifyCheckpointDir(dir_).ok());
}

TEST(ManifestProtoTest, RoundTripsInOrder) {
  const Manifest manifest = {{"b", 2, Sha256Hex("22")}, {"a", 1, Sha256Hex("1")}};
  v1::CheckpointInfo info;
  ManifestToProto(manifest, info.mutable_manifest());
  ASSERT_EQ(info.manifest_size(), 2);
  EXPECT_EQ(info.manifest(0).name(), "b");
  EXPECT_EQ(info.manifest(1).size(), 1);
  EXPECT_EQ(ManifestFromProto(info.manifest()), manifest);
  ManifestToProto({}, info.mutable_manifest());
  EXPECT_EQ(info.manifest_size(), 0);
}

TEST(JobKindsTest, EveryProtoKindHasOneRowAndItsNameRoundTrips) {
  int rows = 0;
  for (int value = v1::JobKind_MIN; value <= v1::JobKind_MAX; ++value) {
    if (!v1::JobKind_IsValid(value) || value == v1::JOB_KIND_UNSPECIFIED) continue;
    const auto kind = static_cast<v1::JobKind>(value);
    const JobKindInfo* info = FindJobKind(kind);
    ASSERT_NE(info, nullptr) << v1::JobKind_Name(kind) << " has no row in service/job_kinds.cc";
    ++rows;
    EXPECT_EQ(JobKindFromName(JobKindName(kind)), kind);
    // The name is the enum's suffix in lower case: JOB_KIND_LINEAR_PROBE -> linear_probe.
    std::string expected = v1::JobKind_Name(kind).substr(sizeof("JOB_KIND_") - 1);
    for (char& c : expected) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(JobKindName(kind), expected);
  }
  EXPECT_EQ(rows, static_cast<int>(AllJobKinds().size()));
  EXPECT_EQ(JobKindName(v1::JOB_KIND_UNSPECIFIED), "");
  EXPECT_EQ(JobKindName(static_cast<v1::JobKind>(99)), "");
  EXPECT_EQ(JobKindFromName("unspecified"), std::nullopt);
  EXPECT_EQ(JobKindFromName("Tokenizer"), std::nullopt);
  EXPECT_EQ(KnownJobKindNames(), "tokenizer, pretrain, finetune, linear_probe, contrastive");
}

TEST(JobKindsTest, DependencyHandOverFields) {
  using v1::JobKind;
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_PRETRAIN, v1::JOB_KIND_TOKENIZER),
            "tokenizer.checkpoint");
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_FINETUNE, v1::JOB_KIND_PRETRAIN),
            "backbone.checkpoint");
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_LINEAR_PROBE, v1::JOB_KIND_PRETRAIN),
            "backbone.checkpoint");
  for (JobKind network : {v1::JOB_KIND_CONTRASTIVE, v1::JOB_KIND_PRETRAIN, v1::JOB_KIND_FINETUNE}) {
    EXPECT_EQ(DependencyInputField(v1::JOB_KIND_TOKENIZER, network), "loss.perceptual.checkpoint")
        << JobKindName(network);
  }
  // Pairs that only order the jobs.
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_PRETRAIN, v1::JOB_KIND_FINETUNE), std::nullopt);
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_CONTRASTIVE, v1::JOB_KIND_TOKENIZER), std::nullopt);
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_FINETUNE, v1::JOB_KIND_LINEAR_PROBE), std::nullopt);
  EXPECT_EQ(DependencyInputField(v1::JOB_KIND_UNSPECIFIED, v1::JOB_KIND_TOKENIZER), std::nullopt);
}

}  // namespace
}  // namespace peco::service
