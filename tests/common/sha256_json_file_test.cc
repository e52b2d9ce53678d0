#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "tests/test_util/files.h"

namespace peco {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::ScopedTempDir;
using ::testing::HasSubstr;

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, BinaryDataWithNulBytes) {
  const std::string a("a\0b", 3);
  const std::string b("a\0c", 3);
  EXPECT_NE(Sha256Hex(a), Sha256Hex(b));
  EXPECT_NE(Sha256Hex(a), Sha256Hex("a"));
  EXPECT_EQ(Sha256Hex(a).size(), 64u);
}

TEST(Sha256Test, ChunkedEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data.push_back(static_cast<char>((i * 131 + 7) % 256));
  const std::string expected = Sha256Hex(data);
  for (size_t chunk :
       {size_t{1}, size_t{63}, size_t{64}, size_t{65}, size_t{4096}, size_t{99999}}) {
    Sha256Hasher hasher;
    if (chunk == 1) {
      // Byte-by-byte on a prefix only (keeps the test fast), checked against the prefix digest.
      const std::string prefix = data.substr(0, 1000);
      for (char c : prefix) hasher.Update(absl::string_view(&c, 1));
      EXPECT_EQ(hasher.FinishHex(), Sha256Hex(prefix));
      continue;
    }
    for (size_t pos = 0; pos < data.size(); pos += chunk)
      hasher.Update(absl::string_view(data).substr(pos, chunk));
    EXPECT_EQ(hasher.FinishHex(), expected) << "chunk " << chunk;
  }
  Sha256Hasher with_empty;
  with_empty.Update("");
  with_empty.Update("ab");
  with_empty.Update("");
  with_empty.Update("c");
  EXPECT_EQ(with_empty.FinishHex(), Sha256Hex("abc"));
}

TEST(Sha256Test, FileDigestEqualsContentDigest) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string dir = temp.path();
  std::string data;
  // Larger than the 64 KiB read block so several reads are combined.
  for (int i = 0; i < 300000; ++i) data.push_back(static_cast<char>(i % 251));
  const std::string path = dir + "/blob.bin";
  ASSERT_TRUE(WriteFileSynced(path, data).ok());
  absl::StatusOr<std::string> digest = Sha256FileHex(path);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Hex(data));

  const std::string empty = dir + "/empty.bin";
  ASSERT_TRUE(WriteFileSynced(empty, "").ok());
  digest = Sha256FileHex(empty);
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(*digest, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(Sha256Test, MissingFileIsNotFoundNamingPath) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string path = temp.Join("does_not_exist.bin");
  absl::StatusOr<std::string> digest = Sha256FileHex(path);
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(digest.status().message(), HasSubstr(path));
}

TEST(JsonWriterTest, BuildsObjectInOrder) {
  JsonWriter w;
  w.Add("event", "step")
      .Add("step", 10)
      .Add("loss", 0.5)
      .Add("ok", true)
      .Add("big", uint64_t{18446744073709551615ULL});
  w.Add("ids", std::vector<int64_t>{1, -2, 3}).Add("empty", std::vector<int64_t>{});
  JsonWriter inner;
  inner.Add("a", int64_t{-5});
  w.AddRaw("inner", inner.str());
  EXPECT_EQ(w.str(),
            "{\"event\":\"step\",\"step\":10,\"loss\":0.5,\"ok\":true,"
            "\"big\":18446744073709551615,\"ids\":[1,-2,3],\"empty\":[],\"inner\":{\"a\":-5}}");
  EXPECT_EQ(JsonWriter().str(), "{}");
}

TEST(JsonWriterTest, WritesDoubleArraysWithNullForNonFinite) {
  JsonWriter w;
  w.Add("seconds", std::vector<double>{0.25, -1.5e-9, std::nan(""), 3})
      .Add("none", std::vector<double>{});
  EXPECT_EQ(w.str(), "{\"seconds\":[0.25,-1.5e-09,null,3],\"none\":[]}");
}

TEST(JsonWriterTest, EscapesStrings) {
  EXPECT_EQ(JsonWriter::Quote("say \"hi\""), "\"say \\\"hi\\\"\"");
  EXPECT_EQ(JsonWriter::Quote("a\\b"), "\"a\\\\b\"");
  EXPECT_EQ(JsonWriter::Quote("line1\nline2\r\tend"), "\"line1\\nline2\\r\\tend\"");
  EXPECT_EQ(JsonWriter::Quote(std::string("\x01\x1f", 2)), "\"\\u0001\\u001f\"");
  EXPECT_EQ(JsonWriter::Quote(std::string("a\0b", 3)), "\"a\\u0000b\"");
  // Non-ASCII UTF-8 passes through unchanged.
  EXPECT_EQ(JsonWriter::Quote("\xc3\xa9"), "\"\xc3\xa9\"");
  JsonWriter w;
  w.Add("k\"ey", "v\nal");
  EXPECT_EQ(w.str(), "{\"k\\\"ey\":\"v\\nal\"}");
  // No raw control characters survive in the output.
  std::string all;
  for (int c = 0; c < 0x20; ++c) all.push_back(static_cast<char>(c));
  for (char c : JsonWriter::Quote(all)) EXPECT_GE(static_cast<unsigned char>(c), 0x20);
}

TEST(JsonWriterTest, NonFiniteDoublesAreNull) {
  JsonWriter w;
  w.Add("nan", std::numeric_limits<double>::quiet_NaN())
      .Add("inf", std::numeric_limits<double>::infinity())
      .Add("ninf", -std::numeric_limits<double>::infinity())
      .Add("x", 1.25e-7);
  EXPECT_EQ(w.str(), "{\"nan\":null,\"inf\":null,\"ninf\":null,\"x\":1.25e-07}");
}

TEST(JsonWriterTest, DoublesKeepNinePrecisionDigits) {
  JsonWriter w;
  w.Add("v", 0.123456789012);
  EXPECT_EQ(w.str(), "{\"v\":0.123456789}");
}

TEST(FileUtilTest, WriteFileAtomicCreatesAndReplaces) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string dir = temp.path();
  const std::string path = dir + "/state.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first version, fairly long").ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, "first version, fairly long");

  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  read = ReadFileToString(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "second");
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"state.json"}) << "temporary files left behind";
}

TEST(FileUtilTest, WriteFileAtomicGivesTheNewFileItsModeEvenOverAStaleTemporary) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string dir = temp.path();
  const std::string path = dir + "/secret.token";
  // A world-readable temporary left by a crashed process with this pid.
  const std::string stale = absl::StrCat(path, ".tmp.", ::getpid());
  ASSERT_TRUE(WriteFileSynced(stale, "old", 0644).ok());
  ASSERT_EQ(::chmod(stale.c_str(), 0644), 0);
  ASSERT_TRUE(WriteFileAtomic(path, "s3cret\n", 0600).ok());
  struct stat info;
  ASSERT_EQ(::stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  EXPECT_EQ(*ReadFileToString(path), "s3cret\n");
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"secret.token"});
  // The default stays readable by others (0644 before the umask).
  ASSERT_TRUE(WriteFileAtomic(dir + "/public.json", "{}").ok());
  ASSERT_EQ(::stat((dir + "/public.json").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0600, 0600u);
}

TEST(FileUtilTest, WriteFileAtomicIntoMissingDirectoryFailsCleanly) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string dir = temp.path();
  const std::string path = dir + "/missing_sub/state.json";
  absl::Status status = WriteFileAtomic(path, "x");
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("missing_sub"));
  EXPECT_TRUE(ListDir(dir).empty());
}

TEST(FileUtilTest, BinaryRoundTrip) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string dir = temp.path();
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i % 256));
  const std::string path = dir + "/bin";
  ASSERT_TRUE(WriteFileSynced(path, data).ok());
  absl::StatusOr<std::string> read = ReadFileToString(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, data);
  // WriteFileSynced truncates.
  ASSERT_TRUE(WriteFileSynced(path, "ab").ok());
  read = ReadFileToString(path);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, "ab");
  EXPECT_TRUE(FsyncFile(path).ok());
  EXPECT_TRUE(FsyncDirectory(dir).ok());
}

TEST(FileUtilTest, ReadMissingFileIsNotFoundNamingPath) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string path = temp.Join("nope.txt");
  absl::StatusOr<std::string> read = ReadFileToString(path);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

TEST(FileUtilTest, FsyncMissingPathIsAnErrorNamingPath) {
  ScopedTempDir temp("sha256_json_file_test");
  const std::string path = temp.Join("nope");
  absl::Status status = FsyncFile(path);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(path));
  status = FsyncDirectory(path);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr(path));
}

}  // namespace
}  // namespace peco
