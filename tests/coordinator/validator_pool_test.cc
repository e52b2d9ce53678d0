// ValidatorPool against a scripted stand-in for `peco-train validate --serve` that can crash,
// hang or answer garbage on demand (the config text of a request says which).
#include "coordinator/validator_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::HasSubstr;

// Answers every request as valid unless its config names a misbehaviour.
constexpr char kFakeValidator[] = R"(#!/bin/sh
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/^{"id":\([0-9]*\),.*/\1/p')
  case "$line" in
    *crash*) exit 3 ;;
    *hang*) sleep 1000 ;;
    *garbage*) echo 'this is not json' ;;
    *wrong-id*) echo '{"id":999999,"ok":true,"kind":"tokenizer","max_steps":1,"inputs":[],"device":"cpu"}' ;;
    *invalid*) echo "{\"id\":$id,\"ok\":false,\"code\":\"INVALID_ARGUMENT\",\"message\":\"config: x: bad\"}" ;;
    *) echo "{\"id\":$id,\"ok\":true,\"kind\":\"tokenizer\",\"max_steps\":1,\"inputs\":[\"data.path=/d\"],\"device\":\"cpu\"}" ;;
  esac
done
)";

class ValidatorPoolTest : public ::testing::Test {
 protected:
  ValidatorPoolTest() {
    const std::string script = temp_.Join("fake-validator.sh");
    EXPECT_TRUE(WriteFileAtomic(script, kFakeValidator).ok());
    options_.argv = {"/bin/sh", script};
    options_.env = {};
    // Generous: a loaded machine must not turn a healthy answer into a timeout.
    options_.request_timeout = absl::Seconds(30);
  }

  static ValidationRequest Request(const std::string& config) {
    ValidationRequest request;
    request.config = config;
    return request;
  }

  ::peco::testing::ScopedTempDir temp_{"validator_pool_test"};
  ValidatorPool::Options options_;
};

TEST_F(ValidatorPoolTest, ReturnsTheVerdict) {
  ValidatorPool pool(options_);
  absl::StatusOr<ValidationResponse> valid = pool.Check(Request("kind: tokenizer"));
  ASSERT_TRUE(valid.ok()) << valid.status();
  EXPECT_TRUE(valid->status.ok());
  EXPECT_EQ(valid->kind, "tokenizer");
  EXPECT_EQ(valid->inputs.size(), 1u);
  absl::StatusOr<ValidationResponse> invalid = pool.Check(Request("invalid"));
  ASSERT_TRUE(invalid.ok()) << invalid.status();
  EXPECT_EQ(invalid->status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(pool.PidsForTest().size(), 1u) << "one process, started on demand, answered both";
}

TEST_F(ValidatorPoolTest, StartsLazily) {
  ValidatorPool pool(options_);
  EXPECT_TRUE(pool.PidsForTest().empty());
}

TEST_F(ValidatorPoolTest, MisbehavingValidatorIsUnavailableAndReplaced) {
  options_.pool_size = 1;
  ValidatorPool pool(options_);
  for (const char* misbehaviour : {"crash", "garbage", "wrong-id"}) {
    ASSERT_TRUE(pool.Check(Request("fine")).ok());
    const std::vector<pid_t> before = pool.PidsForTest();
    absl::StatusOr<ValidationResponse> failed = pool.Check(Request(misbehaviour));
    EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable) << misbehaviour;
    EXPECT_THAT(failed.status().message(), HasSubstr("validator"));
    EXPECT_THAT(failed.status().message(), HasSubstr("fake-validator.sh"));
    EXPECT_TRUE(pool.PidsForTest().empty()) << misbehaviour << ": the process was stopped";
    absl::StatusOr<ValidationResponse> next = pool.Check(Request("fine"));
    ASSERT_TRUE(next.ok()) << misbehaviour << ": " << next.status();
    EXPECT_TRUE(next->status.ok());
    ASSERT_EQ(pool.PidsForTest().size(), 1u);
    EXPECT_NE(pool.PidsForTest(), before) << misbehaviour << ": a fresh process answered";
  }
}

TEST_F(ValidatorPoolTest, HungRequestTimesOutAsUnavailable) {
  options_.pool_size = 1;
  options_.request_timeout = absl::Milliseconds(300);
  options_.startup_timeout = absl::Seconds(30);
  ValidatorPool pool(options_);
  ASSERT_TRUE(pool.Check(Request("fine")).ok());  // started: the next request gets 300 ms
  absl::StatusOr<ValidationResponse> hung = pool.Check(Request("hang"));
  EXPECT_EQ(hung.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(hung.status().message(), HasSubstr("did not answer within"));
  EXPECT_TRUE(pool.PidsForTest().empty());
}

TEST_F(ValidatorPoolTest, MissingProgramIsUnavailable) {
  options_.argv = {"/nonexistent/peco-train", "validate", "--serve"};
  ValidatorPool pool(options_);
  absl::StatusOr<ValidationResponse> result = pool.Check(Request("fine"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(result.status().message(), HasSubstr("/nonexistent/peco-train"));
  // The slot was given back: a later request may try again.
  EXPECT_EQ(pool.Check(Request("fine")).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ValidatorPoolTest, ThreadsShareAtMostPoolSizeProcesses) {
  options_.pool_size = 2;
  ValidatorPool pool(options_);
  constexpr int kThreads = 6;
  constexpr int kRequests = 20;
  absl::Mutex mu;
  std::set<pid_t> seen;
  int answered = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRequests; ++i) {
        absl::StatusOr<ValidationResponse> result = pool.Check(Request("fine"));
        std::vector<pid_t> pids = pool.PidsForTest();
        absl::MutexLock lock(&mu);
        if (result.ok() && result->status.ok()) ++answered;
        seen.insert(pids.begin(), pids.end());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(answered, kThreads * kRequests);
  EXPECT_LE(seen.size(), 2u) << "no process was replaced, none beyond the pool size started";
}

TEST(ValidatorPoolOptionsTest, ValidateNamesTheField) {
  ValidatorPool::Options options;
  options.pool_size = 0;
  EXPECT_THAT(options.Validate().message(), HasSubstr("pool_size"));
  options = {};
  options.request_timeout = absl::ZeroDuration();
  EXPECT_THAT(options.Validate().message(), HasSubstr("request_timeout"));
  options = {};
  options.argv.clear();
  EXPECT_THAT(options.Validate().message(), HasSubstr("argv"));
}

}  // namespace
}  // namespace peco::coordinator
