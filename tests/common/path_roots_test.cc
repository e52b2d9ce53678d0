#include "common/path_roots.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/test_util/files.h"

namespace peco {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::ScopedTempDir;
using ::peco::testing::WriteFileForTest;
using ::testing::HasSubstr;

TEST(PathIsUnderTest, ComparesWholeComponentsAfterNormalising) {
  EXPECT_TRUE(PathIsUnder("/usr/share/datasets/fashion-mnist", "/usr/share/datasets"));
  EXPECT_TRUE(PathIsUnder("/usr/share/datasets", "/usr/share/datasets/"));
  EXPECT_FALSE(PathIsUnder("/usr/share/datasets2/x", "/usr/share/datasets"));
  EXPECT_FALSE(PathIsUnder("/usr/share/datasets/../../../etc/passwd", "/usr/share/datasets"));
  EXPECT_FALSE(PathIsUnder("relative/path", "/usr"));
}

// What the lexical check cannot see: a symlink under a root that leads outside it, a loop, and a
// root that is itself reached through a symlink.
class ResolvePathUnderRootsTest : public ::testing::Test {
 protected:
  ResolvePathUnderRootsTest() {
    fs::create_directories(root_ + "/images/cats");
    fs::create_directories(outside_);
    WriteFileForTest(outside_ + "/secret", "x");
    fs::create_directory_symlink(outside_, root_ + "/escape");
    fs::create_directory_symlink(root_ + "/images", root_ + "/alias");
    fs::create_symlink(root_ + "/loop-b", root_ + "/loop-a");
    fs::create_symlink(root_ + "/loop-a", root_ + "/loop-b");
    fs::create_directory_symlink(root_, temp_.Join("root-link"));
  }

  ScopedTempDir temp_{"path_roots"};
  const std::string root_ = temp_.Join("root");
  const std::string outside_ = temp_.Join("outside");
};

TEST_F(ResolvePathUnderRootsTest, ResolvesInsideAndRefusesEscapesLoopsAndMissingPaths) {
  absl::StatusOr<std::string> inside =
      ResolvePathUnderRoots("data.path", root_ + "/alias/cats", {root_});
  ASSERT_TRUE(inside.ok()) << inside.status();
  EXPECT_EQ(*inside, fs::canonical(root_ + "/images/cats").string());

  // Lexically under the root, really outside it.
  ASSERT_TRUE(PathIsUnder(root_ + "/escape/secret", root_));
  absl::StatusOr<std::string> escape =
      ResolvePathUnderRoots("eval.path", root_ + "/escape/secret", {root_});
  EXPECT_EQ(escape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(escape.status().message(), HasSubstr("eval.path"));
  EXPECT_THAT(escape.status().message(),
              HasSubstr("resolves to '" + fs::canonical(outside_).string()));
  EXPECT_THAT(escape.status().message(), HasSubstr("outside the allowed roots"));

  absl::StatusOr<std::string> loop = ResolvePathUnderRoots("data.path", root_ + "/loop-a", {root_});
  EXPECT_EQ(loop.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(loop.status().message(), HasSubstr("loop"));

  EXPECT_EQ(ResolvePathUnderRoots("data.path", root_ + "/none", {root_}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ResolvePathUnderRoots("data.path", "images/cats", {root_}).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Through ".." out of the root.
  EXPECT_FALSE(ResolvePathUnderRoots("data.path", root_ + "/images/../../outside", {root_}).ok());
}

TEST_F(ResolvePathUnderRootsTest, RootsAreResolvedToo) {
  // The root given through a symlink still contains the real directory's files.
  absl::StatusOr<std::string> via_link =
      ResolvePathUnderRoots("data.path", root_ + "/images", {temp_.Join("root-link")});
  ASSERT_TRUE(via_link.ok()) << via_link.status();
  // A root that does not exist allows nothing, and does not stop the others.
  EXPECT_FALSE(ResolvePathUnderRoots("data.path", root_ + "/images", {"/nonexistent/root"}).ok());
  EXPECT_TRUE(
      ResolvePathUnderRoots("data.path", root_ + "/images", {"/nonexistent/root", root_}).ok());
}

}  // namespace
}  // namespace peco
