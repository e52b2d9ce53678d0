#include "coordinator/auth.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "common/file_util.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "primary-user-token-0123456789";
constexpr char kWorker[] = "primary-worker-token-0123456789";

class AuthTest : public ::testing::Test {
 protected:
  AuthTest() : path_(temp_.Join("issued_tokens")) {}
  TokenRegistry Registry() {
    return TokenRegistry(TokenRegistry::Options{kUser, kWorker, path_, &clock_});
  }

  ::peco::testing::ScopedTempDir temp_{"auth_test"};
  std::string path_;
  FakeClock clock_;
};

TEST_F(AuthTest, PrimaryTokensHaveTheirRoleOnly) {
  TokenRegistry registry = Registry();
  EXPECT_TRUE(registry.Check(kUser, Role::kUser).ok());
  EXPECT_TRUE(registry.Check(kWorker, Role::kWorker).ok());
  EXPECT_EQ(registry.Check(kWorker, Role::kUser).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Check(kUser, Role::kWorker).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(registry.Check("", Role::kUser).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(registry.Check(std::string(kUser) + "x", Role::kUser).code(),
            absl::StatusCode::kUnauthenticated);
}

// Who a token acts as: the primary user token is the admin; an issued token is its name, and
// an admin-role token calls JobService with the admin's reach.
TEST_F(AuthTest, CallersAreTheirTokensUserWithTheirRole) {
  absl::StatusOr<std::string> alice =
      IssueToken(path_, "alice", Role::kUser, absl::Hours(1), clock_);
  absl::StatusOr<std::string> carol =
      IssueToken(path_, "carol", Role::kAdmin, absl::Hours(1), clock_);
  ASSERT_TRUE(alice.ok() && carol.ok());
  TokenRegistry registry = Registry();
  absl::StatusOr<Caller> primary = registry.Identify(kUser, Role::kUser);
  ASSERT_TRUE(primary.ok());
  EXPECT_EQ(primary->user_name(), "admin");
  EXPECT_TRUE(primary->admin());
  absl::StatusOr<Caller> user = registry.Identify(*alice, Role::kUser);
  ASSERT_TRUE(user.ok());
  EXPECT_EQ(user->user_name(), "alice");
  EXPECT_FALSE(user->admin());
  absl::StatusOr<Caller> admin = registry.Identify(*carol, Role::kUser);
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->user_name(), "carol");
  EXPECT_TRUE(admin->admin());
  EXPECT_EQ(registry.Check(*carol, Role::kWorker).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(FormatIssuedTokens(*ReadIssuedTokens(path_)), HasSubstr("carol admin "));
}

TEST_F(AuthTest, IssuedTokenIsKeptOnlyAsItsDigestInAPrivateFile) {
  absl::StatusOr<std::string> token =
      IssueToken(path_, "ci-runner", Role::kWorker, absl::InfiniteDuration(), clock_);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 64u);
  const std::string text = ReadFileToString(path_).value_or("");
  EXPECT_THAT(text, Not(HasSubstr(*token)));
  EXPECT_THAT(text, HasSubstr("ci-runner worker never "));
  struct stat info;
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);
  TokenRegistry registry = Registry();
  EXPECT_TRUE(registry.Check(*token, Role::kWorker).ok());
}

TEST_F(AuthTest, ExpiryIsExactAndNamesTheToken) {
  TokenRegistry registry = Registry();
  absl::StatusOr<std::string> token =
      IssueToken(path_, "alice", Role::kUser, absl::Minutes(10), clock_);
  ASSERT_TRUE(token.ok());
  clock_.Advance(absl::Minutes(10) - absl::Seconds(1));
  EXPECT_TRUE(registry.Check(*token, Role::kUser).ok());
  clock_.Advance(absl::Seconds(1));
  absl::Status expired = registry.Check(*token, Role::kUser);
  EXPECT_EQ(expired.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.message(), HasSubstr("token 'alice' expired at 1970-01-02T00:10:00"));
}

TEST_F(AuthTest, IssueRefusesBadNamesDuplicatesAndNonPositiveLifetimes) {
  EXPECT_EQ(IssueToken(path_, "a b", Role::kUser, absl::Hours(1), clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(IssueToken(path_, "../x", Role::kUser, absl::Hours(1), clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status zero = IssueToken(path_, "bob", Role::kUser, absl::ZeroDuration(), clock_).status();
  EXPECT_THAT(zero.message(), HasSubstr("--ttl"));
  ASSERT_TRUE(IssueToken(path_, "bob", Role::kUser, absl::Hours(1), clock_).ok());
  EXPECT_EQ(IssueToken(path_, "bob", Role::kWorker, absl::Hours(1), clock_).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(RevokeToken(path_, "carol").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseRole("root").status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(ParseRole("admin").ok());
  EXPECT_EQ(*ParseRole("admin"), Role::kAdmin);
  // "admin" is the primary user token's user name: no issued token may take it.
  EXPECT_EQ(IssueToken(path_, "admin", Role::kAdmin, absl::Hours(1), clock_).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AuthTest, FormatAndParseRoundTrip) {
  std::vector<IssuedToken> tokens(2);
  tokens[0] = {"alice", Role::kUser, absl::FromUnixSeconds(1800000000), std::string(64, 'a')};
  tokens[1] = {"node-7", Role::kWorker, absl::InfiniteFuture(), std::string(64, '0')};
  absl::StatusOr<std::vector<IssuedToken>> parsed =
      ParseIssuedTokens(FormatIssuedTokens(tokens), "issued_tokens");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*parsed)[i].name, tokens[i].name);
    EXPECT_EQ((*parsed)[i].role, tokens[i].role);
    EXPECT_EQ((*parsed)[i].expires, tokens[i].expires);
    EXPECT_EQ((*parsed)[i].sha256, tokens[i].sha256);
  }
}

TEST_F(AuthTest, MalformedLinesAreNamedByPathAndLine) {
  const std::string digest(64, 'b');
  for (const auto& [text, why] : std::vector<std::pair<std::string, std::string>>{
           {"alice user never", "four fields"},
           {"alice root never " + digest, "a bad role"},
           {"admin user never " + digest, "a bad name"},
           {"alice user tomorrow " + digest, "a bad expiry"},
           {"alice user never ABC", "a bad digest"},
           {"alice user never " + digest + "\nalice worker never " + digest, "twice"}}) {
    absl::Status status = ParseIssuedTokens("# comment\n" + text, "/d/issued_tokens").status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(status.message(), HasSubstr("/d/issued_tokens:")) << status;
    EXPECT_THAT(status.message(), HasSubstr(why)) << status;
  }
}

TEST_F(AuthTest, ADamagedFileKeepsThePreviousTokens) {
  TokenRegistry registry = Registry();
  absl::StatusOr<std::string> token =
      IssueToken(path_, "alice", Role::kUser, absl::Hours(1), clock_);
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(registry.Check(*token, Role::kUser).ok());
  ASSERT_TRUE(WriteFileAtomic(path_, "garbage that does not parse\n").ok());
  EXPECT_TRUE(registry.Check(*token, Role::kUser).ok());
  ASSERT_TRUE(RevokeToken(path_, "alice").code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peco::coordinator
