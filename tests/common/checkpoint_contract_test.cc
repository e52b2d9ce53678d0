// The checkpoint contract (common/checkpoint_manifest.h) and its one chunked receiver
// (common/checkpoint_receiver.h), which the trainer, the worker, the coordinator and the CLI share.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_manifest.h"
#include "common/checkpoint_receiver.h"
#include "common/sha256.h"
#include "tests/test_util/files.h"

namespace peco {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::peco::testing::WriteFileForTest;
using ::testing::HasSubstr;

std::string Line(const std::string& name, const std::string& content) {
  return absl::StrCat(Sha256Hex(content), " ", content.size(), " ", name, "\n");
}

ManifestEntry Entry(const std::string& name, const std::string& content) {
  return {name, static_cast<int64_t>(content.size()), Sha256Hex(content)};
}

// ---------------------------------------------------------------------------------------------
// File names: one rule for every side.

TEST(CheckpointFileNameTest, AcceptsPlainNames) {
  for (const std::string& name :
       {std::string("model.pt"), std::string("optimizer.pt"), std::string("trainer_state.json"),
        std::string("a..b"), std::string("x-1_2.bin"), std::string(255, 'n')}) {
    EXPECT_TRUE(ValidateCheckpointFileName(name).ok()) << name;
  }
}

TEST(CheckpointFileNameTest, RefusesEverythingThatIsNotOnePlainComponent) {
  const std::string nul("a\0b", 3);
  for (const std::string& name :
       {std::string(""), std::string("."), std::string(".."), std::string("MANIFEST"),
        std::string(".partial"), std::string(".hidden"), std::string("../escape"),
        std::string("sub/file"), std::string("/abs"), std::string("with space"),
        std::string("tab\there"), std::string("new\nline"), std::string("del\x7f"), nul,
        std::string(256, 'n')}) {
    absl::Status status = ValidateCheckpointFileName(name);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(status.message(), HasSubstr("checkpoint file name")) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// MANIFEST text.

TEST(ManifestTextTest, ParsesSortsAndFormatsRoundTrip) {
  const std::string text = Line("b.pt", "bb") + "\n" + Line("a.pt", "a");
  absl::StatusOr<Manifest> entries = ParseManifest(text, "ck/MANIFEST");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0], Entry("a.pt", "a"));
  EXPECT_EQ((*entries)[1], Entry("b.pt", "bb"));
  EXPECT_EQ(FormatManifest(*entries), Line("a.pt", "a") + Line("b.pt", "bb"));
  EXPECT_EQ(ManifestBytes(*entries), 3);
}

TEST(ManifestTextTest, RefusesDamageNamingTheSourceAndLine) {
  const std::string digest(64, 'a');
  const std::map<std::string, std::string> damaged = {
      {"", "lists no files"},
      {digest + " 1\n", "line 1 is not"},
      {Line("a", "x") + "zz 1 b\n", "line 2 is not"},
      {digest + " -1 a\n", "line 1 is not"},
      {digest + " x a\n", "line 1 is not"},
      {std::string(64, 'A') + " 1 a\n", "line 1 is not"},  // digests are lower-case
      {digest + " 1 ../a\n", "line 1: checkpoint file name"},
      {digest + " 1 MANIFEST\n", "reserved"},
      {Line("a", "x") + Line("a", "y"), "listed twice"},
  };
  for (const auto& [text, expected] : damaged) {
    absl::Status status = ParseManifest(text, "ck/MANIFEST").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << text;
    EXPECT_THAT(status.message(), HasSubstr("ck/MANIFEST")) << text;
    EXPECT_THAT(status.message(), HasSubstr(expected)) << text;
  }
}

TEST(ManifestTextTest, ValidateManifestChecksWireEntriesAndNormalisesDigests) {
  Manifest upper = {{"b", 1, std::string(64, 'A')}, {"a", 0, Sha256Hex("")}};
  absl::StatusOr<Manifest> ok = ValidateManifest(upper, "request");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)[0].name, "a");
  EXPECT_EQ((*ok)[1].sha256, std::string(64, 'a'));

  const std::map<std::string, Manifest> bad = {
      {"lists no files", {}},
      {"negative size", {{"a", -1, std::string(64, '0')}}},
      {"not 64 hex digits", {{"a", 1, "abc"}}},
      {"checkpoint file name", {{"a/b", 1, std::string(64, '0')}}},
      {"listed twice", {{"a", 1, std::string(64, '0')}, {"a", 1, std::string(64, '0')}}},
  };
  for (const auto& [expected, entries] : bad) {
    absl::Status status = ValidateManifest(entries, "request").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << expected;
    EXPECT_THAT(status.message(), HasSubstr("request")) << expected;
    EXPECT_THAT(status.message(), HasSubstr(expected));
  }
}

TEST(ManifestTextTest, ManifestOfFilesHashesAndRefusesBadNames) {
  absl::StatusOr<Manifest> manifest = ManifestOfFiles({{"b", "22"}, {"a", ""}});
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(*manifest, (Manifest{Entry("a", ""), Entry("b", "22")}));
  EXPECT_EQ(ManifestOfFiles({{"MANIFEST", "x"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ManifestOfFiles({}).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Verifying a checkpoint directory.

class VerifyCheckpointDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = temp_.Join("step-1");
    WriteFileForTest(fs::path(dir_) / "model.pt", "weights");
    WriteFileForTest(fs::path(dir_) / "state.json", "{}");
    WriteFileForTest(fs::path(dir_) / kManifestFileName,
                     Line("model.pt", "weights") + Line("state.json", "{}"));
  }
  ScopedTempDir temp_{"contract"};
  std::string dir_;
};

TEST_F(VerifyCheckpointDirTest, AcceptsAnIntactCheckpoint) {
  absl::StatusOr<Manifest> manifest = VerifyCheckpointDir(dir_);
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  EXPECT_EQ(manifest->size(), 2u);
  std::string contents;
  ASSERT_TRUE(VerifyCheckpointFile(dir_, (*manifest)[0], &contents).ok());
  EXPECT_EQ(contents, "weights");
}

TEST_F(VerifyCheckpointDirTest, EachKindOfDamageIsDataLossNamingTheFile) {
  WriteFileForTest(fs::path(dir_) / "model.pt", "weightz");  // same size, other bytes
  EXPECT_THAT(VerifyCheckpointDir(dir_).status().message(), HasSubstr("model.pt does not match"));
  WriteFileForTest(fs::path(dir_) / "model.pt", "weight");
  EXPECT_THAT(VerifyCheckpointDir(dir_).status().message(), HasSubstr("model.pt has 6 bytes"));
  fs::remove(fs::path(dir_) / "model.pt");
  EXPECT_THAT(VerifyCheckpointDir(dir_).status().message(), HasSubstr("model.pt is listed"));
  WriteFileForTest(fs::path(dir_) / "model.pt", "weights");
  WriteFileForTest(fs::path(dir_) / "extra.bin", "x");
  absl::Status unlisted = VerifyCheckpointDir(dir_).status();
  EXPECT_EQ(unlisted.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(unlisted.message(), HasSubstr("extra.bin is not listed"));
  fs::remove(fs::path(dir_) / kManifestFileName);
  EXPECT_EQ(VerifyCheckpointDir(dir_).status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// The chunked receiver.

class CheckpointReceiverTest : public ::testing::Test {
 protected:
  CheckpointReceiverTest() : dest_(temp_.Join("ckpt")) {
    model_.resize(3000);
    for (size_t i = 0; i < model_.size(); ++i) model_[i] = static_cast<char>(i * 7 % 251);
    manifest_ = {Entry("empty.bin", ""), Entry("model.pt", model_), Entry("state.json", state_)};
  }

  std::unique_ptr<CheckpointReceiver> Start(bool expected) {
    CheckpointReceiver::Options options;
    options.staging_dir = StagingDirFor(dest_);
    options.label = "checkpoint step-7";
    if (expected) options.expected = manifest_;
    options.max_file_bytes = 4096;
    absl::StatusOr<std::unique_ptr<CheckpointReceiver>> receiver =
        CheckpointReceiver::Start(std::move(options));
    EXPECT_TRUE(receiver.ok()) << receiver.status();
    return receiver.ok() ? *std::move(receiver) : nullptr;
  }

  ScopedTempDir temp_{"receiver"};
  const std::string dest_;
  std::string model_;
  const std::string state_ = R"({"step":7})";
  Manifest manifest_;
};

TEST_F(CheckpointReceiverTest, StagingDirIsAHiddenSibling) {
  EXPECT_EQ(StagingDirFor("/w/a/resume"), "/w/a/.resume.partial");
  EXPECT_EQ(StagingDirFor("/w/a/resume/"), "/w/a/.resume.partial");
  EXPECT_EQ(StagingDirFor("out"), ".out.partial");
}

TEST_F(CheckpointReceiverTest, InterleavedChunksBecomeAVerifiedCheckpointOnlyAtPublish) {
  std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/true);
  ASSERT_NE(receiver, nullptr);
  ASSERT_TRUE(receiver->Append("model.pt", 0, model_.substr(0, 1000)).ok());
  ASSERT_TRUE(receiver->Append("state.json", 0, state_).ok());
  ASSERT_TRUE(receiver->Append("model.pt", 1000, model_.substr(1000)).ok());
  EXPECT_FALSE(fs::exists(dest_));
  absl::StatusOr<Manifest> sealed = receiver->Seal();
  ASSERT_TRUE(sealed.ok()) << sealed.status();
  EXPECT_EQ(*sealed, manifest_);
  EXPECT_FALSE(fs::exists(dest_));
  ASSERT_TRUE(receiver->Publish(dest_).ok());
  EXPECT_EQ(receiver->bytes_received(), static_cast<int64_t>(model_.size() + state_.size()));
  receiver.reset();  // a published checkpoint outlives its receiver

  EXPECT_FALSE(fs::exists(StagingDirFor(dest_)));
  EXPECT_EQ(ReadFileForTest(fs::path(dest_) / "model.pt"), model_);
  EXPECT_EQ(ReadFileForTest(fs::path(dest_) / "empty.bin"), "");  // listed empty: no chunk
  EXPECT_EQ(ReadFileForTest(fs::path(dest_) / kManifestFileName), FormatManifest(manifest_));
  EXPECT_TRUE(VerifyCheckpointDir(dest_).ok());
}

TEST_F(CheckpointReceiverTest, RetriedChunksAreAcceptedOnlyWithTheSameBytes) {
  std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/false);
  ASSERT_NE(receiver, nullptr);
  ASSERT_TRUE(receiver->Append("model.pt", 0, model_.substr(0, 2000)).ok());
  // Overlapping retry: the first 1000 bytes repeat, 1000 new ones follow.
  ASSERT_TRUE(receiver->Append("model.pt", 1000, model_.substr(1000, 2000)).ok());
  EXPECT_EQ(receiver->bytes_received(), 3000);
  std::string other = model_.substr(0, 10);
  other[3] ^= 1;
  absl::Status conflict = receiver->Append("model.pt", 0, other);
  EXPECT_EQ(conflict.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(conflict.message(), HasSubstr("differs from the bytes already received"));
  absl::Status gap = receiver->Append("model.pt", 3001, "x");
  EXPECT_EQ(gap.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(gap.message(), HasSubstr("model.pt at offset 3001 out of order"));
  EXPECT_EQ(receiver->Append("new.bin", 5, "x").code(), absl::StatusCode::kFailedPrecondition);
  // The refused chunks wrote nothing: the checkpoint still seals against the real bytes.
  ASSERT_TRUE(receiver->Append("state.json", 0, state_).ok());
  ASSERT_TRUE(receiver->Seal(&manifest_).ok());
}

TEST_F(CheckpointReceiverTest, ChunksOutsideTheExpectedManifestOrLimitsAreRefused) {
  std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/true);
  ASSERT_NE(receiver, nullptr);
  absl::Status unknown = receiver->Append("optimizer.pt", 0, "x");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.message(), HasSubstr("checkpoint step-7: chunk of 'optimizer.pt'"));
  absl::Status too_long = receiver->Append("state.json", 0, state_ + "!");
  EXPECT_EQ(too_long.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(too_long.message(), HasSubstr("state.json is longer than its manifest size"));
  EXPECT_EQ(receiver->Append("../x", 0, "x").code(), absl::StatusCode::kInvalidArgument);

  std::unique_ptr<CheckpointReceiver> open = Start(/*expected=*/false);
  ASSERT_NE(open, nullptr);
  absl::Status big = open->Append("huge.bin", 0, std::string(4097, 'h'));
  EXPECT_EQ(big.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(big.message(), HasSubstr("max_file_bytes 4096"));
}

// A sender cannot make a receiver hold more files or bytes than its limits, nor fill the disk:
// each refusal is ResourceExhausted naming the limit, and what was accepted before still seals.
TEST_F(CheckpointReceiverTest, FileCountTotalBytesAndFreeDiskAreBounded) {
  CheckpointReceiver::Options options;
  options.staging_dir = StagingDirFor(dest_);
  options.label = "checkpoint step-7";
  options.max_files = 2;
  options.max_total_bytes = static_cast<int64_t>(model_.size() + state_.size());
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> receiver = CheckpointReceiver::Start(options);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  ASSERT_TRUE((*receiver)->Append("model.pt", 0, model_).ok());
  absl::Status over_total = (*receiver)->Append("state.json", 0, state_ + "!");
  EXPECT_EQ(over_total.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(over_total.message(), HasSubstr("max_total_bytes"));
  ASSERT_TRUE((*receiver)->Append("state.json", 0, state_).ok());
  absl::Status third = (*receiver)->Append("empty.bin", 0, "");
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.message(), HasSubstr("max_files 2"));
  const Manifest two = {manifest_[1], manifest_[2]};
  EXPECT_TRUE((*receiver)->Seal(&two).ok());

  // More free space than any disk has: the first chunk is refused and nothing is written.
  CheckpointReceiver::Options full = options;
  full.staging_dir = StagingDirFor(temp_.Join("other"));
  full.min_free_bytes = std::numeric_limits<int64_t>::max() / 2;
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> no_room = CheckpointReceiver::Start(full);
  ASSERT_TRUE(no_room.ok()) << no_room.status();
  absl::Status refused = (*no_room)->Append("model.pt", 0, model_);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("min_free_bytes"));
  EXPECT_EQ((*no_room)->bytes_received(), 0);
  full.min_free_bytes = 1;  // any real disk has a byte free
  no_room = nullptr;        // (its destructor removes the staging directory)
  no_room = CheckpointReceiver::Start(full);
  ASSERT_TRUE(no_room.ok()) << no_room.status();
  EXPECT_TRUE((*no_room)->Append("model.pt", 0, model_).ok());

  options.max_files = 0;
  EXPECT_EQ(CheckpointReceiver::Start(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CheckpointReceiverTest, SealRefusesCorruptShortMissingAndExtraFilesAndLeavesNothing) {
  struct Case {
    std::string expected;
    std::map<std::string, std::string> sent;
  };
  std::string flipped = model_;
  flipped[1234] ^= 0x01;
  const std::vector<Case> cases = {
      {"model.pt has SHA-256", {{"model.pt", flipped}, {"state.json", state_}}},
      {"model.pt has 2999 bytes, the manifest says 3000",
       {{"model.pt", model_.substr(0, 2999)}, {"state.json", state_}}},
      {"file model.pt in the manifest was not received", {{"state.json", state_}}},
      {"received file extra.bin is not in the manifest",
       {{"model.pt", model_}, {"state.json", state_}, {"extra.bin", "x"}}},
  };
  for (const Case& c : cases) {
    std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/false);
    ASSERT_NE(receiver, nullptr);
    for (const auto& [name, data] : c.sent) ASSERT_TRUE(receiver->Append(name, 0, data).ok());
    absl::Status status = receiver->Seal(&manifest_).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << c.expected;
    EXPECT_THAT(status.message(), HasSubstr(c.expected));
    EXPECT_EQ(receiver->Publish(dest_).code(), absl::StatusCode::kFailedPrecondition);
    receiver.reset();
    EXPECT_FALSE(fs::exists(dest_)) << c.expected;
    EXPECT_FALSE(fs::exists(StagingDirFor(dest_))) << c.expected;
  }
}

TEST_F(CheckpointReceiverTest, PublishReplacesAnEmptyDirectoryButNeverANonEmptyOne) {
  ASSERT_TRUE(fs::create_directory(dest_));
  std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/true);
  ASSERT_NE(receiver, nullptr);
  ASSERT_TRUE(receiver->Append("model.pt", 0, model_).ok());
  ASSERT_TRUE(receiver->Append("state.json", 0, state_).ok());
  ASSERT_TRUE(receiver->Seal().ok());
  ASSERT_TRUE(receiver->Publish(dest_).ok());
  EXPECT_TRUE(VerifyCheckpointDir(dest_).ok());

  const std::string mine = temp_.Join("mine");
  WriteFileForTest(fs::path(mine) / "keep.txt", "keep me");
  std::unique_ptr<CheckpointReceiver> second = Start(/*expected=*/true);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(second->Append("model.pt", 0, model_).ok());
  ASSERT_TRUE(second->Append("state.json", 0, state_).ok());
  ASSERT_TRUE(second->Seal().ok());
  EXPECT_EQ(second->Publish(mine).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ReadFileForTest(fs::path(mine) / "keep.txt"), "keep me");
}

TEST_F(CheckpointReceiverTest, StartReplacesALeftoverStagingDirectory) {
  WriteFileForTest(fs::path(StagingDirFor(dest_)) / "junk", "junk");
  std::unique_ptr<CheckpointReceiver> receiver = Start(/*expected=*/true);
  ASSERT_NE(receiver, nullptr);
  EXPECT_FALSE(fs::exists(fs::path(StagingDirFor(dest_)) / "junk"));
  CheckpointReceiver::Options bad;
  bad.staging_dir = temp_.Join("s");
  bad.expected = Manifest{{"MANIFEST", 0, Sha256Hex("")}};
  EXPECT_EQ(CheckpointReceiver::Start(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(bad.staging_dir));
}

}  // namespace
}  // namespace peco
