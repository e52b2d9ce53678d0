// File helpers for tests, once: a temporary directory removed with its owner, and whole-file
// reads and writes that fail the test (not throw) on error.
//
// Temporary directories live under $TEST_TMPDIR when set (ctest, bazel), else under
// ::testing::TempDir(); each has a unique name starting with the given prefix.
//
// Header-only. A ScopedTempDir belongs to one test; the functions are thread-compatible.
#ifndef PECO_TESTS_TEST_UTIL_FILES_H_
#define PECO_TESTS_TEST_UTIL_FILES_H_

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

#include "gtest/gtest.h"

namespace peco::testing {

// A fresh, empty directory, removed (with everything under it) when the object is destroyed.
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix = "peco_test") {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string root = base != nullptr && *base != '\0' ? base : ::testing::TempDir();
    while (root.size() > 1 && root.back() == '/') root.pop_back();
    std::string pattern = root + "/" + prefix + "_XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp(" << pattern << ") failed";
    }
    path_ = pattern;
  }
  ~ScopedTempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // `path()/name`.
  std::string Join(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

// Whole content of `path` ("" with a test failure when it cannot be read).
inline std::string ReadFileForTest(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Creates or replaces `path` with `data`, creating missing parent directories.
inline void WriteFileForTest(const std::filesystem::path& path, const std::string& data) {
  std::error_code ignored;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ignored);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  if (!out) ADD_FAILURE() << "cannot write " << path;
}

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_FILES_H_
