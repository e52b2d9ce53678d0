// Discovery of the coordinator (connection.h) and command-line parsing (args.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/connection.h"
#include "common/file_util.h"
#include "tests/test_util/files.h"

namespace peco::cli {
namespace {

using ::peco::testing::ScopedTempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ResolveEndpointTest, FlagsBeatEnvironmentBeatFiles) {
  ScopedTempDir temp("connection_test");
  const std::string data_dir = temp.path();
  ASSERT_TRUE(WriteFileSynced(data_dir + "/coordinator.addr", "127.0.0.1:7450\n").ok());
  ASSERT_TRUE(WriteFileSynced(data_dir + "/user.token", "  file-token\n").ok());
  Environment env;
  env.data_dir = data_dir;

  absl::StatusOr<Endpoint> files = ResolveEndpoint({}, env);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->address, "127.0.0.1:7450");
  EXPECT_EQ(files->token, "file-token");
  EXPECT_EQ(files->token_source, data_dir + "/user.token");

  env.coordinator = "10.0.0.1:1";
  env.token = "env-token";
  absl::StatusOr<Endpoint> from_env = ResolveEndpoint({}, env);
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->address, "10.0.0.1:1");
  EXPECT_EQ(from_env->address_source, "$PECO_COORDINATOR");
  EXPECT_EQ(from_env->token, "env-token");

  absl::StatusOr<Endpoint> from_flags = ResolveEndpoint({"host:2", "flag-token", ""}, env);
  ASSERT_TRUE(from_flags.ok());
  EXPECT_EQ(from_flags->address, "host:2");
  EXPECT_EQ(from_flags->token, "flag-token");
  EXPECT_EQ(from_flags->token_source, "--token");
}

TEST(ResolveEndpointTest, DataDirFlagBeatsEnvironmentAndHome) {
  Environment env;
  env.data_dir = "/env/dir";
  env.home = "/home/u";
  EXPECT_EQ(ResolveDataDir({"", "", "/flag/dir"}, env), "/flag/dir");
  EXPECT_EQ(ResolveDataDir({}, env), "/env/dir");
  env.data_dir.clear();
  EXPECT_EQ(ResolveDataDir({}, env), "/home/u/.local/share/peco");
}

TEST(ResolveEndpointTest, MissingFilesNameWhatWasTried) {
  ScopedTempDir temp("connection_test");
  Environment env;
  env.data_dir = temp.path();
  absl::StatusOr<Endpoint> endpoint = ResolveEndpoint({}, env);
  ASSERT_FALSE(endpoint.ok());
  EXPECT_EQ(endpoint.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(endpoint.status().message(), HasSubstr("--coordinator"));
  EXPECT_THAT(endpoint.status().message(), HasSubstr(env.data_dir + "/coordinator.addr"));

  endpoint = ResolveEndpoint({"host:1", "", ""}, env);
  ASSERT_FALSE(endpoint.ok());
  EXPECT_THAT(endpoint.status().message(), HasSubstr(env.data_dir + "/user.token"));
}

TEST(FromGrpcStatusTest, KeepsTheCodeAndPrefixesTheCall) {
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK, "GetJob x").ok());
  absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::NOT_FOUND, "no job job-9"), "GetJob job-9");
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), "GetJob job-9: no job job-9");
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, ""), "x").code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ConnectionTest, RefusesEmptyTokenAndBadTimeout) {
  EXPECT_FALSE(Connection::Create({"host:1", "", "", ""}, absl::Seconds(1)).ok());
  absl::StatusOr<std::unique_ptr<Connection>> bad_timeout =
      Connection::Create({"host:1", "", "t", ""}, absl::ZeroDuration());
  ASSERT_FALSE(bad_timeout.ok());
  EXPECT_THAT(bad_timeout.status().message(), HasSubstr("--timeout"));
}

const std::vector<FlagSpec> kSpecs = {
    {"output", 'o', "FORMAT", ""}, {"set", 0, "K=V", ""}, {"watch", 0, "", ""}};

TEST(ParseArgsTest, Spellings) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(
      {"file.yaml", "--set", "a=1", "--set=b=2", "-o", "json", "--watch", "--", "--x"}, kSpecs);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_THAT(parsed->positional, ElementsAre("file.yaml", "--x"));
  EXPECT_THAT(parsed->All("set"), ElementsAre("a=1", "b=2"));
  EXPECT_EQ(parsed->Last("output"), "json");
  EXPECT_TRUE(parsed->Has("watch"));
  EXPECT_FALSE(parsed->help);

  EXPECT_EQ(ParseArgs({"-ojson"}, kSpecs)->Last("output"), "json");
  EXPECT_EQ(ParseArgs({"-o=table"}, kSpecs)->Last("output"), "table");
  EXPECT_TRUE(ParseArgs({"x", "--help"}, kSpecs)->help);
}

// Flags are dashed, as kubectl's and ray's are; the underscore spelling is the same flag.
TEST(ParseArgsTest, DashedAndUnderscoreSpellingsAreOneFlag) {
  const std::vector<FlagSpec> specs = {{"dry_run", 0, "", "print the request"},
                                       {"request_id", 0, "ID", "idempotency key"}};
  absl::StatusOr<ParsedArgs> dashed = ParseArgs({"--dry-run", "--request-id=r1"}, specs);
  ASSERT_TRUE(dashed.ok()) << dashed.status();
  EXPECT_TRUE(dashed->Has("dry_run"));
  EXPECT_EQ(dashed->Last("request_id"), "r1");
  absl::StatusOr<ParsedArgs> underscored = ParseArgs({"--dry_run", "--request_id", "r2"}, specs);
  ASSERT_TRUE(underscored.ok()) << underscored.status();
  EXPECT_TRUE(underscored->Has("dry_run"));
  EXPECT_EQ(underscored->Last("request_id"), "r2");
  const std::string help = FlagHelp(specs);
  EXPECT_THAT(help, HasSubstr("--dry-run"));
  EXPECT_THAT(help, HasSubstr("--request-id ID"));
  EXPECT_THAT(ParseArgs({"--dry-runs"}, specs).status().message(),
              HasSubstr("unknown flag --dry-runs"));
}

TEST(ParseArgsTest, ErrorsNameTheFlag) {
  EXPECT_THAT(ParseArgs({"--sett", "a=1"}, kSpecs).status().message(),
              HasSubstr("unknown flag --sett"));
  EXPECT_THAT(ParseArgs({"-x"}, kSpecs).status().message(), HasSubstr("unknown flag -x"));
  EXPECT_THAT(ParseArgs({"--set"}, kSpecs).status().message(), HasSubstr("--set: missing value"));
  EXPECT_THAT(ParseArgs({"--watch=yes"}, kSpecs).status().message(),
              HasSubstr("--watch takes no value"));
}

TEST(ParseArgsTest, Values) {
  EXPECT_EQ(*ParseDurationFlag("--timeout", "90"), absl::Seconds(90));
  EXPECT_EQ(*ParseDurationFlag("--timeout", "1m30s"), absl::Seconds(90));
  EXPECT_THAT(ParseDurationFlag("--timeout", "soon").status().message(), HasSubstr("--timeout"));
  EXPECT_FALSE(ParseDurationFlag("--timeout", "0s").ok());
  EXPECT_EQ(*ParseIntFlag("--limit", "20", 1, 100), 20);
  EXPECT_THAT(ParseIntFlag("--limit", "0", 1, 100).status().message(),
              HasSubstr("--limit: expected an integer in [1, 100], got '0'"));
}

}  // namespace
}  // namespace peco::cli
