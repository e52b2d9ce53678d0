#include "coordinator/checkpoint_file_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::peco::testing::ScopedTempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Deterministic, non-repeating bytes so that a misplaced chunk changes the content.
std::string Bytes(size_t n, int seed) {
  std::string out(n, '\0');
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

ManifestEntry Entry(const std::string& name, const std::string& data) {
  return {name, static_cast<int64_t>(data.size()), Sha256Hex(data)};
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class CheckpointFileStoreTest : public ::testing::Test {
 protected:
  CheckpointFileStoreTest() {
    CheckpointFileStore::Options options;
    options.data_dir = temp_.path();
    options.max_chunk_bytes = 1000;
    options.max_file_bytes = 100000;
    auto store = CheckpointFileStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  // Uploads `files` in chunks of `chunk` bytes; returns the session.
  uint64_t Upload(const std::string& job, const std::string& id,
                  const std::map<std::string, std::string>& files, size_t chunk = 300) {
    absl::StatusOr<uint64_t> session = store_->BeginUpload(job, 1, id, 100);
    EXPECT_TRUE(session.ok()) << session.status();
    for (const auto& [name, data] : files) {
      size_t offset = 0;
      do {
        const std::string piece = data.substr(offset, chunk);
        EXPECT_TRUE(store_->AppendChunk(*session, name, offset, piece).ok());
        offset += piece.size();
      } while (offset < data.size());
    }
    return *session;
  }

  Manifest ManifestOf(const std::map<std::string, std::string>& files) {
    Manifest manifest;
    for (const auto& [name, data] : files) manifest.push_back(Entry(name, data));
    return manifest;
  }

  absl::Status UploadAndCommit(const std::string& job, const std::string& id,
                               const std::map<std::string, std::string>& files) {
    return store_->Commit(Upload(job, id, files), ManifestOf(files)).status();
  }

  std::string ReadAll(const std::string& job, const std::string& id, const std::string& name) {
    std::string out;
    for (;;) {
      absl::StatusOr<std::string> chunk = store_->ReadChunk(job, id, name, out.size(), 700);
      EXPECT_TRUE(chunk.ok()) << chunk.status();
      if (!chunk.ok() || chunk->empty()) return out;
      out += *chunk;
    }
  }

  // Files under the job's directory, staging included.
  std::vector<std::string> JobDirEntries(const std::string& job) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(temp_.path() + "/checkpoints/" + job, ec)) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  ScopedTempDir temp_{"checkpoint_file_store_test"};
  std::unique_ptr<CheckpointFileStore> store_;
};

TEST(CheckpointFileStoreOptionsTest, ValidateNamesBadField) {
  CheckpointFileStore::Options options;
  EXPECT_THAT(options.Validate().message(), HasSubstr("data_dir"));
  options.data_dir = "/tmp";
  EXPECT_TRUE(options.Validate().ok());
  EXPECT_EQ(options.max_chunk_bytes, 4 << 20);
  options.max_chunk_bytes = 0;
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(options.Validate().message(), HasSubstr("max_chunk_bytes"));
  options.max_chunk_bytes = 10;
  options.max_file_bytes = -1;
  EXPECT_THAT(options.Validate().message(), HasSubstr("max_file_bytes"));
}

TEST_F(CheckpointFileStoreTest, ChunkedUploadCommitsAndReadsBackBytewise) {
  const std::map<std::string, std::string> files = {
      {"model.pt", Bytes(2500, 1)}, {"optimizer.pt", Bytes(999, 2)}, {"state.json", "{}"}};
  const uint64_t session = Upload("job-1", "step-000000000100", files);
  absl::StatusOr<v1::CheckpointInfo> info = store_->Commit(session, ManifestOf(files));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id(), "step-000000000100");
  EXPECT_EQ(info->job_id(), "job-1");
  EXPECT_EQ(info->attempt(), 1);
  EXPECT_EQ(info->step(), 100);
  EXPECT_EQ(info->bytes(), 2500 + 999 + 2);
  ASSERT_EQ(info->manifest_size(), 3);
  EXPECT_EQ(info->manifest(0).name(), "model.pt");

  absl::StatusOr<Manifest> entries = store_->OpenForRead("job-1", "step-000000000100");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  for (const ManifestEntry& e : *entries) {
    EXPECT_EQ(e.sha256, Sha256Hex(files.at(e.name))) << e.name;
    EXPECT_EQ(ReadAll("job-1", "step-000000000100", e.name), files.at(e.name)) << e.name;
  }
  // The MANIFEST is in the trainer's format, sorted by name; no staging directory is left.
  absl::StatusOr<std::string> manifest =
      ReadFileToString(store_->CheckpointDir("job-1", "step-000000000100") + "/MANIFEST");
  ASSERT_TRUE(manifest.ok());
  EXPECT_EQ(*manifest, absl::StrCat(Sha256Hex(files.at("model.pt")), " 2500 model.pt\n",
                                    Sha256Hex(files.at("optimizer.pt")), " 999 optimizer.pt\n",
                                    Sha256Hex("{}"), " 2 state.json\n"));
  EXPECT_THAT(JobDirEntries("job-1"), ElementsAre("step-000000000100"));
  // ReadChunk is bounded by max_chunk_bytes, is empty at the end and OutOfRange past it.
  EXPECT_EQ(store_->ReadChunk("job-1", "step-000000000100", "model.pt", 0, 1 << 20)->size(), 1000u);
  EXPECT_EQ(*store_->ReadChunk("job-1", "step-000000000100", "model.pt", 2500, 10), "");
  EXPECT_EQ(store_->ReadChunk("job-1", "step-000000000100", "model.pt", 2501, 10).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->ReadChunk("job-1", "step-000000000100", "nope.pt", 0, 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->OpenForRead("job-1", "step-000000000200").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CheckpointFileStoreTest, RetriedChunkIsIdempotentAndMismatchRefused) {
  const std::string data = Bytes(900, 3);
  absl::StatusOr<uint64_t> session = store_->BeginUpload("job-1", 1, "ckpt", 5);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 0, data.substr(0, 400)).ok());
  // The same chunk again (a retry after a lost acknowledgement) is accepted and not appended.
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 0, data.substr(0, 400)).ok());
  // A retried chunk with different bytes is refused.
  std::string changed = data.substr(0, 400);
  changed[10] ^= 1;
  absl::Status status = store_->AppendChunk(*session, "w.pt", 0, changed);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("w.pt"));
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 400, data.substr(400)).ok());
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 400, data.substr(400)).ok());
  absl::StatusOr<v1::CheckpointInfo> info = store_->Commit(*session, {Entry("w.pt", data)});
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->bytes(), 900);
  EXPECT_EQ(ReadAll("job-1", "ckpt", "w.pt"), data);
}

TEST_F(CheckpointFileStoreTest, OutOfOrderChunkRefused) {
  const std::string data = Bytes(600, 4);
  absl::StatusOr<uint64_t> session = store_->BeginUpload("job-1", 1, "ckpt", 5);
  ASSERT_TRUE(session.ok());
  // A new file must start at offset 0.
  absl::Status status = store_->AppendChunk(*session, "w.pt", 300, data.substr(300));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("expected offset 0"));
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 0, data.substr(0, 200)).ok());
  // A gap is refused and changes nothing.
  status = store_->AppendChunk(*session, "w.pt", 300, data.substr(300));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("expected offset 200"));
  ASSERT_TRUE(store_->AppendChunk(*session, "w.pt", 200, data.substr(200)).ok());
  EXPECT_TRUE(store_->Commit(*session, {Entry("w.pt", data)}).ok());
  EXPECT_EQ(ReadAll("job-1", "ckpt", "w.pt"), data);
}

TEST_F(CheckpointFileStoreTest, ChunkLimitsAndFileNamesValidated) {
  absl::StatusOr<uint64_t> session = store_->BeginUpload("job-1", 1, "ckpt", 5);
  ASSERT_TRUE(session.ok());
  EXPECT_EQ(store_->AppendChunk(*session, "w.pt", 0, Bytes(1001, 5)).code(),
            absl::StatusCode::kInvalidArgument);
  for (const char* bad : {"", "MANIFEST", "a/b", "..", "../x", "a b"}) {
    absl::Status status = store_->AppendChunk(*session, bad, 0, "x");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), HasSubstr("file_name")) << bad;
  }
  EXPECT_EQ(store_->AppendChunk(*session + 99, "w.pt", 0, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->Abort(*session).ok());
  EXPECT_EQ(store_->AppendChunk(*session, "w.pt", 0, "x").code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());
}

// A sender cannot hold uploads open for ever or open more than max_open_uploads: idle sessions
// are aborted (bytes removed, the next chunk NotFound), and a begin over the limit first reaps
// idle ones. Per-checkpoint file and byte limits reach the receiver.
TEST(CheckpointFileStoreLimitsTest, OpenUploadsAreBoundedAndIdleOnesAborted) {
  ScopedTempDir temp("checkpoint_file_store_limits");
  FakeClock clock;
  CheckpointFileStore::Options options;
  options.data_dir = temp.path();
  options.max_open_uploads = 2;
  options.upload_idle_timeout = absl::Minutes(1);
  options.max_files_per_checkpoint = 1;
  options.max_checkpoint_bytes = 100;
  options.min_free_bytes = 0;
  options.clock = &clock;
  absl::StatusOr<std::unique_ptr<CheckpointFileStore>> store = CheckpointFileStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<uint64_t> first = (*store)->BeginUpload("job-1", 1, "a", 1);
  absl::StatusOr<uint64_t> second = (*store)->BeginUpload("job-1", 1, "b", 2);
  ASSERT_TRUE(first.ok() && second.ok());
  absl::StatusOr<uint64_t> third = (*store)->BeginUpload("job-1", 1, "c", 3);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("max_open_uploads"));

  ASSERT_TRUE((*store)->AppendChunk(*first, "w.pt", 0, "xy").ok());
  absl::Status second_file = (*store)->AppendChunk(*first, "v.pt", 0, "z");
  EXPECT_EQ(second_file.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(second_file.message(), HasSubstr("max_files 1"));
  EXPECT_EQ((*store)->AppendChunk(*second, "w.pt", 0, std::string(101, 'b')).code(),
            absl::StatusCode::kResourceExhausted);

  clock.Advance(absl::Seconds(40));
  ASSERT_TRUE((*store)->AppendChunk(*first, "w.pt", 2, "z").ok());  // keeps `first` alive
  clock.Advance(absl::Seconds(30));                                 // `second` idle for 70 s
  EXPECT_EQ((*store)->AbortIdleUploads(), 1);
  EXPECT_EQ((*store)->AppendChunk(*second, "w.pt", 0, "b").code(), absl::StatusCode::kNotFound);
  third = (*store)->BeginUpload("job-1", 1, "c", 3);
  ASSERT_TRUE(third.ok()) << third.status();

  // Full again; `first` and `third` go idle, and the next begin reaps them itself.
  clock.Advance(absl::Minutes(2));
  absl::StatusOr<uint64_t> fourth = (*store)->BeginUpload("job-1", 1, "d", 4);
  ASSERT_TRUE(fourth.ok()) << fourth.status();
  EXPECT_EQ((*store)->Commit(*first, {}).status().code(), absl::StatusCode::kNotFound);
  std::vector<std::string> staging;
  for (const auto& e : std::filesystem::directory_iterator(temp.path() + "/checkpoints/job-1")) {
    staging.push_back(e.path().filename().string());
  }
  EXPECT_EQ(staging.size(), 1u);  // only `fourth`'s staging directory is left
}

TEST_F(CheckpointFileStoreTest, CorruptedBytesFailCommitWithDataLossNamingFile) {
  const std::map<std::string, std::string> files = {{"a.pt", Bytes(700, 6)},
                                                    {"b.pt", Bytes(800, 7)}};
  std::map<std::string, std::string> corrupted = files;
  corrupted["b.pt"][123] ^= 0x40;  // the bytes on the wire differ from what was hashed
  const uint64_t session = Upload("job-1", "ckpt", corrupted);
  absl::StatusOr<v1::CheckpointInfo> info = store_->Commit(session, ManifestOf(files));
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("b.pt"));
  EXPECT_EQ(store_->OpenForRead("job-1", "ckpt").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());  // staging removed
  // The session has ended.
  EXPECT_EQ(store_->Abort(session).code(), absl::StatusCode::kNotFound);

  // A wrong size is DataLoss too.
  Manifest manifest = ManifestOf(files);
  manifest[0].size = 699;
  info = store_->Commit(Upload("job-1", "ckpt", files), manifest);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("a.pt"));
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());
}

TEST_F(CheckpointFileStoreTest, ManifestMustListExactlyTheReceivedFiles) {
  const std::map<std::string, std::string> files = {{"a.pt", Bytes(10, 8)}, {"b.pt", Bytes(20, 9)}};
  // Manifest missing a received file.
  absl::StatusOr<v1::CheckpointInfo> info =
      store_->Commit(Upload("job-1", "ckpt", files), {Entry("a.pt", files.at("a.pt"))});
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("b.pt"));
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());

  // Manifest listing a file that was never sent.
  Manifest manifest = ManifestOf(files);
  manifest.push_back(Entry("c.pt", "extra"));
  info = store_->Commit(Upload("job-1", "ckpt", files), manifest);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("c.pt"));
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());

  // The right manifest commits.
  EXPECT_TRUE(UploadAndCommit("job-1", "ckpt", files).ok());
  EXPECT_THAT(JobDirEntries("job-1"), ElementsAre("ckpt"));
}

TEST_F(CheckpointFileStoreTest, FlippedByteOnDiskFailsOpenForRead) {
  const std::map<std::string, std::string> files = {{"a.pt", Bytes(500, 10)},
                                                    {"b.pt", Bytes(500, 11)}};
  ASSERT_TRUE(UploadAndCommit("job-1", "ckpt", files).ok());
  ASSERT_TRUE(store_->OpenForRead("job-1", "ckpt").ok());
  const std::string path = store_->CheckpointDir("job-1", "ckpt") + "/b.pt";
  std::string data = *ReadFileToString(path);
  data[250] ^= 0x01;
  ASSERT_TRUE(WriteFileSynced(path, data).ok());
  absl::StatusOr<Manifest> entries = store_->OpenForRead("job-1", "ckpt");
  EXPECT_EQ(entries.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(entries.status().message(), HasSubstr("b.pt"));
  EXPECT_THAT(entries.status().message(), Not(HasSubstr("a.pt")));
}

TEST_F(CheckpointFileStoreTest, PathTraversalIdsRefused) {
  for (const char* bad : {"../x", "a/b", "..", ".", "", "x y"}) {
    absl::StatusOr<uint64_t> session = store_->BeginUpload(bad, 1, "ckpt", 1);
    EXPECT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(session.status().message(), HasSubstr("job_id")) << bad;
    session = store_->BeginUpload("job-1", 1, bad, 1);
    EXPECT_EQ(session.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(session.status().message(), HasSubstr("checkpoint_id")) << bad;
    EXPECT_THAT(store_->OpenForRead("job-1", bad).status().message(), HasSubstr("checkpoint_id"));
    EXPECT_THAT(store_->OpenForRead(bad, "ckpt").status().message(), HasSubstr("job_id"));
    EXPECT_EQ(store_->ReadChunk(bad, "ckpt", "a.pt", 0, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->ReadChunk("job-1", "ckpt", bad, 0, 1).status().code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete("job-1", bad).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->Delete(bad, "ckpt").code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->ApplyRetention(bad, {}).code(), absl::StatusCode::kInvalidArgument);
  }
  // A file next to the data directory cannot be read through a traversal.
  ASSERT_TRUE(WriteFileSynced(temp_.path() + "/secret", "s").ok());
  EXPECT_EQ(store_->ReadChunk("..", "..", "secret", 0, 1).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Exists(temp_.path() + "/secret"));
}

TEST_F(CheckpointFileStoreTest, DeleteIsIdempotent) {
  ASSERT_TRUE(UploadAndCommit("job-1", "ckpt", {{"a.pt", "abc"}}).ok());
  ASSERT_TRUE(Exists(store_->CheckpointDir("job-1", "ckpt")));
  EXPECT_TRUE(store_->Delete("job-1", "ckpt").ok());
  EXPECT_FALSE(Exists(store_->CheckpointDir("job-1", "ckpt")));
  EXPECT_EQ(store_->OpenForRead("job-1", "ckpt").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->Delete("job-1", "ckpt").ok());
  EXPECT_TRUE(store_->Delete("job-never", "ckpt").ok());
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());
}

TEST_F(CheckpointFileStoreTest, RetentionKeepsOnlyListedIds) {
  for (const char* id : {"step-1", "step-2", "step-3", "step-4"}) {
    ASSERT_TRUE(UploadAndCommit("job-1", id, {{"a.pt", id}}).ok());
  }
  ASSERT_TRUE(UploadAndCommit("job-2", "step-1", {{"a.pt", "other job"}}).ok());
  // An upload in progress is not a committed checkpoint and survives retention.
  const uint64_t pending = Upload("job-1", "step-5", {{"a.pt", "five"}});

  ASSERT_TRUE(store_->ApplyRetention("job-1", {"step-3", "step-4", "step-9"}).ok());
  EXPECT_THAT(*store_->ListCheckpoints("job-1"), ElementsAre("step-3", "step-4"));
  ASSERT_TRUE(store_->ApplyRetention("job-1", {"step-3", "step-4"}).ok());  // idempotent
  EXPECT_THAT(*store_->ListCheckpoints("job-1"), ElementsAre("step-3", "step-4"));
  EXPECT_EQ(ReadAll("job-1", "step-4", "a.pt"), "step-4");
  EXPECT_THAT(*store_->ListCheckpoints("job-2"), ElementsAre("step-1"));

  EXPECT_TRUE(store_->Commit(pending, {Entry("a.pt", "five")}).ok());
  EXPECT_THAT(*store_->ListCheckpoints("job-1"), ElementsAre("step-3", "step-4", "step-5"));
  ASSERT_TRUE(store_->ApplyRetention("job-1", {}).ok());
  EXPECT_THAT(*store_->ListCheckpoints("job-1"), IsEmpty());
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());
}

TEST_F(CheckpointFileStoreTest, RecommitIdenticalIsIdempotentDifferentIsAlreadyExists) {
  const std::map<std::string, std::string> files = {{"a.pt", Bytes(1200, 12)}};
  ASSERT_TRUE(UploadAndCommit("job-1", "ckpt", files).ok());
  absl::StatusOr<v1::CheckpointInfo> again =
      store_->Commit(Upload("job-1", "ckpt", files), ManifestOf(files));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->bytes(), 1200);
  EXPECT_THAT(JobDirEntries("job-1"), ElementsAre("ckpt"));

  const std::map<std::string, std::string> other = {{"a.pt", Bytes(1200, 13)}};
  absl::StatusOr<v1::CheckpointInfo> conflict =
      store_->Commit(Upload("job-1", "ckpt", other), ManifestOf(other));
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(JobDirEntries("job-1"), ElementsAre("ckpt"));
  EXPECT_EQ(ReadAll("job-1", "ckpt", "a.pt"), files.at("a.pt"));
  EXPECT_TRUE(store_->OpenForRead("job-1", "ckpt").ok());
}

TEST_F(CheckpointFileStoreTest, ConcurrentSessionsForDifferentCheckpoints) {
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::map<std::string, std::string> files = {{"a.pt", Bytes(3000, 100 + t)},
                                                        {"b.pt", Bytes(1700, 200 + t)}};
      results[t] = UploadAndCommit("job-1", absl::StrCat("step-", t), files);
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_TRUE(results[t].ok()) << results[t];
    const std::string id = absl::StrCat("step-", t);
    ASSERT_TRUE(store_->OpenForRead("job-1", id).ok()) << id;
    EXPECT_EQ(ReadAll("job-1", id, "a.pt"), Bytes(3000, 100 + t)) << id;
    EXPECT_EQ(ReadAll("job-1", id, "b.pt"), Bytes(1700, 200 + t)) << id;
  }
  EXPECT_THAT(*store_->ListCheckpoints("job-1"),
              ElementsAre("step-0", "step-1", "step-2", "step-3"));
}

TEST_F(CheckpointFileStoreTest, ReopenRemovesStagingLeftovers) {
  const uint64_t session = Upload("job-1", "ckpt", {{"a.pt", "abc"}});
  (void)session;
  ASSERT_THAT(JobDirEntries("job-1"), ElementsAre(::testing::StartsWith(".staging-ckpt-")));
  CheckpointFileStore::Options options;
  options.data_dir = temp_.path();
  auto reopened = CheckpointFileStore::Open(options);
  ASSERT_TRUE(reopened.ok());
  EXPECT_THAT(JobDirEntries("job-1"), IsEmpty());
}

TEST(SelectCheckpointFilesTest, KeepsTheNamedFilesInManifestOrder) {
  v1::CheckpointInfo info;
  info.set_id("job-000001-a1-step-000000000010");
  info.set_bytes(111);
  for (const auto& [name, size] : std::vector<std::pair<std::string, int>>{
           {"config.yaml", 1}, {"model.pt", 100}, {"preview.png", 10}}) {
    v1::ManifestEntry* entry = info.add_manifest();
    entry->set_name(name);
    entry->set_size(size);
  }
  google::protobuf::RepeatedPtrField<std::string> names;
  names.Add("preview.png");
  names.Add("config.yaml");
  names.Add("preview.png");
  absl::StatusOr<v1::CheckpointInfo> selected = SelectCheckpointFiles(info, names);
  ASSERT_TRUE(selected.ok()) << selected.status();
  ASSERT_EQ(selected->manifest_size(), 2);
  EXPECT_EQ(selected->manifest(0).name(), "config.yaml");
  EXPECT_EQ(selected->manifest(1).name(), "preview.png");
  EXPECT_EQ(selected->bytes(), 11);
  EXPECT_EQ(selected->id(), info.id());

  names.Add("optimizer.pt");
  absl::Status missing = SelectCheckpointFiles(info, names).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("has no file 'optimizer.pt'"));
  EXPECT_THAT(missing.message(), HasSubstr("config.yaml, model.pt, preview.png"));
  EXPECT_EQ(SelectCheckpointFiles(info, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peco::coordinator
