// Drives TrainerSupervisor with /bin/sh scripts as fake trainers and a FakeClock: every timeout
// fires because the test advances the clock, never because real time passed. Real-time waits
// below only bound how long a broken build may hang (30 s), they decide nothing.
#include "worker/trainer_supervisor.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/json_writer.h"
#include "common/process_launcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/files.h"
#include "worker/trainer_environment.h"

namespace peco::worker {
namespace {

using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Result = AttemptOutcome::Result;

constexpr absl::Duration kHangLimit = absl::Seconds(30);

// Records what the supervisor forwards.
class RecordingSink : public TrainerEventSink {
 public:
  void OnEvent(const TrainerEvent& event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  void OnUnparsedLine(const TrainerTag& tag, absl::string_view line) override {
    absl::MutexLock lock(&mu_);
    unparsed_.emplace_back(line);
  }
  // Blocks until `n` events arrived; false after kHangLimit.
  bool WaitForEvents(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return events_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kHangLimit);
  }
  // Blocks until `n` non-JSON lines arrived; false after kHangLimit.
  bool WaitForUnparsed(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&] { return unparsed_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kHangLimit);
  }
  std::vector<TrainerEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  // Types of the events of one global rank, in arrival order.
  std::vector<std::string> TypesOf(int rank) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> types;
    for (const auto& e : events_) {
      if (e.tag.rank == rank) types.push_back(e.type);
    }
    return types;
  }
  std::vector<std::string> unparsed() const {
    absl::MutexLock lock(&mu_);
    return unparsed_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<TrainerEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> unparsed_ ABSL_GUARDED_BY(mu_);
};

// Wraps the real launcher; records specs and fails the call numbered `fail_call` (0-based).
class FakeLauncher : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) override {
    specs.push_back(spec);
    if (static_cast<int>(specs.size()) - 1 == fail_call) {
      return absl::NotFoundError("no such program (injected)");
    }
    return real_.Launch(spec);
  }
  int fail_call = -1;
  std::vector<LaunchSpec> specs;

 private:
  PosixProcessLauncher real_;
};

class TrainerSupervisorTest : public ::testing::Test {
 protected:
  TrainerSupervisorOptions Options(const std::string& script, int world_size = 1,
                                   std::vector<int> ranks = {0}) {
    TrainerSupervisorOptions options;
    options.trainer_command = {"/bin/sh", "-c", script, "peco-train"};
    options.job_id = "job-7";
    options.attempt = 3;
    options.kind = "tokenizer";
    options.config_path = "/jobs/job-7/config.yaml";
    options.output_dir = "/jobs/job-7/run";
    options.world_size = world_size;
    options.ranks = std::move(ranks);
    options.master_port = 23456;
    options.startup_timeout = absl::Minutes(10);
    options.stall_timeout_floor = absl::Minutes(5);
    options.stall_timeout_factor = 10;
    return options;
  }

  std::unique_ptr<TrainerSupervisor> Make(TrainerSupervisorOptions options) {
    return std::make_unique<TrainerSupervisor>(std::move(options), &launcher_, &clock_, &sink_);
  }

  // Calls Poll() until the outcome is known (without advancing the fake clock).
  static AttemptOutcome PollUntilDone(TrainerSupervisor& supervisor) {
    const absl::Time limit = absl::Now() + kHangLimit;
    while (!supervisor.Poll()) {
      if (absl::Now() > limit) {
        ADD_FAILURE() << "supervisor did not finish";
        return AttemptOutcome{};
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return *supervisor.outcome();
  }

  FakeClock clock_;
  RecordingSink sink_;
  FakeLauncher launcher_;
};

constexpr char kCompletes[] = R"(
echo '{"event":"start","kind":"'$1'"}'
echo '{"event":"step","step":1,"loss":0.5,"images_per_second":12.5}'
echo '{"event":"step","step":2,"loss":0.25,"images_per_second":13}'
echo '{"event":"checkpoint","step":2,"path":"/run/checkpoints/step-2","bytes":100,"final":true}'
echo '{"event":"completed","step":2,"checkpoint":"/run/checkpoints/step-2"}'
)";

TEST_F(TrainerSupervisorTest, SuccessForwardsEventsInOrderWithTags) {
  auto supervisor = Make(Options(kCompletes, /*world_size=*/4, /*ranks=*/{2, 3}));
  ASSERT_TRUE(supervisor->Start().ok());
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kSucceeded) << outcome.reason;
  EXPECT_FALSE(outcome.retryable);
  EXPECT_EQ(outcome.failed_rank, -1);

  for (int rank : {2, 3}) {
    EXPECT_THAT(sink_.TypesOf(rank),
                ElementsAre("start", "step", "step", "checkpoint", "completed"));
  }
  for (const TrainerEvent& e : sink_.events()) {
    EXPECT_EQ(e.tag.job_id, "job-7");
    EXPECT_EQ(e.tag.attempt, 3);
    EXPECT_EQ(e.tag.local_rank, e.tag.rank - 2);
    EXPECT_EQ(e.received, clock_.Now());
    if (e.type == "start") EXPECT_EQ(e.String("kind"), "tokenizer");
    if (e.type == "step" && e.Int("step") == 1) {
      EXPECT_EQ(e.Number("loss"), 0.5);
      EXPECT_EQ(e.Number("images_per_second"), 12.5);
    }
    if (e.type == "checkpoint") {
      EXPECT_EQ(e.Int("bytes"), 100);
      EXPECT_EQ(e.Bool("final"), true);
      EXPECT_EQ(e.String("path"), "/run/checkpoints/step-2");
    }
  }
  std::vector<RankStatus> ranks = supervisor->GetRankStatuses();
  ASSERT_EQ(ranks.size(), 2u);
  for (const RankStatus& r : ranks) {
    EXPECT_FALSE(r.running);
    ASSERT_TRUE(r.exit.has_value());
    EXPECT_TRUE(r.exit->success());
    EXPECT_EQ(r.last_step, 2);
    EXPECT_EQ(r.last_event, "completed");
    EXPECT_EQ(r.events, 5);
    EXPECT_EQ(r.unparsed_lines, 0);
  }
}

TEST_F(TrainerSupervisorTest, PassesArgumentsAndTorchrunEnvironment) {
  const std::string script = R"(
echo "{\"event\":\"env\",\"rank\":\"$RANK\",\"world_size\":\"$WORLD_SIZE\",\"local_rank\":\"$LOCAL_RANK\",\"local_world_size\":\"$LOCAL_WORLD_SIZE\",\"master_addr\":\"$MASTER_ADDR\",\"master_port\":\"$MASTER_PORT\",\"job\":\"$PECO_JOB_ID\",\"attempt\":\"$PECO_ATTEMPT\",\"extra\":\"$PECO_EXTRA\",\"secret\":\"$PECO_TOKEN_FOR_TEST\",\"faults\":\"$PECO_FAULTS\",\"omp\":\"$OMP_TEST_SETTING\",\"args\":\"$*\"}"
echo '{"event":"completed","step":0}'
)";
  // What the worker's environment holds reaches a trainer only when a trainer needs it
  // (worker/trainer_environment.h): no token, no fault plan; library settings pass.
  ::setenv("PECO_TOKEN_FOR_TEST", "s3cret", 1);
  ::setenv("PECO_FAULTS", "crash_at_step:1", 1);
  ::setenv("OMP_TEST_SETTING", "kept", 1);
  TrainerSupervisorOptions options = Options(script, /*world_size=*/3, /*ranks=*/{1, 2});
  options.master_addr = "10.0.0.5";
  options.resume_dir = "/jobs/job-7/previous";
  options.extra_env = {"PECO_EXTRA=yes"};
  options.allowed_roots = {"/data", "/work/w"};
  auto supervisor = Make(options);
  ASSERT_TRUE(supervisor->Start().ok());
  EXPECT_EQ(PollUntilDone(*supervisor).result, Result::kSucceeded);

  int seen = 0;
  for (const TrainerEvent& e : sink_.events()) {
    if (e.type != "env") continue;
    ++seen;
    EXPECT_EQ(e.Int("rank"), e.tag.rank);
    EXPECT_EQ(e.Int("local_rank"), e.tag.local_rank);
    EXPECT_EQ(e.Int("world_size"), 3);
    EXPECT_EQ(e.Int("local_world_size"), 2);
    EXPECT_EQ(e.String("master_addr"), "10.0.0.5");
    EXPECT_EQ(e.Int("master_port"), 23456);
    EXPECT_EQ(e.String("job"), "job-7");
    EXPECT_EQ(e.Int("attempt"), 3);
    EXPECT_EQ(e.String("extra"), "yes");
    EXPECT_EQ(e.String("secret"), "");
    EXPECT_EQ(e.String("faults"), "");
    EXPECT_EQ(e.String("omp"), "kept");
    EXPECT_EQ(e.String("args"),
              "tokenizer --config /jobs/job-7/config.yaml --output_dir /jobs/job-7/run "
              "--resume /jobs/job-7/previous --allowed_roots /data,/work/w");
  }
  EXPECT_EQ(seen, 2);
  ::unsetenv("PECO_TOKEN_FOR_TEST");
  ::unsetenv("PECO_FAULTS");
  ::unsetenv("OMP_TEST_SETTING");
}

TEST(TrainerEnvironmentTest, PassesOnlyWhatTrainersNeed) {
  const char* const environment[] = {
      "PATH=/usr/bin",       "HOME=/home/w",   "PECO_TOKEN=abc", "AWS_SECRET_ACCESS_KEY=x",
      "NCCL_DEBUG=INFO",     "LC_ALL=C.UTF-8", "PECO_FAULTS=x",  "=odd",
      "CUDA_HOME=/usr/cuda", nullptr};
  EXPECT_THAT(InheritedTrainerEnvironment(environment),
              ::testing::ElementsAre("PATH=/usr/bin", "HOME=/home/w", "NCCL_DEBUG=INFO",
                                     "LC_ALL=C.UTF-8", "CUDA_HOME=/usr/cuda"));
  EXPECT_FALSE(PassedToTrainers("PECO_RPC_FAULTS"));
  EXPECT_FALSE(PassedToTrainers("PATHX"));
  EXPECT_TRUE(PassedToTrainers("OMP_NUM_THREADS"));
  EXPECT_TRUE(InheritedTrainerEnvironment(nullptr).empty());
}

TEST_F(TrainerSupervisorTest, NonJsonLinesAreCountedAndLoggedNotFatal) {
  const std::string script = std::string(R"(
echo 'loading data...'
echo '{not json'
echo '["a list"]'
echo '{"no_event_field":1}'
echo ''
echo 'partial line without newline' >&2
)") + kCompletes + "printf 'trailing text'";
  ScopedTempDir temp("peco_supervisor");
  TrainerSupervisorOptions options = Options(script);
  options.log_dir = temp.Join("logs");
  auto supervisor = Make(options);
  ASSERT_TRUE(supervisor->Start().ok());
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kSucceeded) << outcome.reason;
  EXPECT_THAT(sink_.TypesOf(0), ElementsAre("start", "step", "step", "checkpoint", "completed"));
  EXPECT_THAT(sink_.unparsed(), ElementsAre("loading data...", "{not json", "[\"a list\"]",
                                            "{\"no_event_field\":1}", "trailing text"));
  EXPECT_EQ(supervisor->GetRankStatuses()[0].unparsed_lines, 5);

  const std::string text = ReadFileForTest(options.log_dir + "/attempt-3-rank-0.log");
  EXPECT_THAT(text, HasSubstr("partial line without newline"));  // the child's stderr
  EXPECT_THAT(text, HasSubstr("non-JSON stdout line: loading data..."));
}

TEST_F(TrainerSupervisorTest, RankFailureFailsTheGangAndKillsTheOthers) {
  const std::string script = R"(
if [ "$RANK" = 1 ]; then
  echo '{"event":"error","code":"INTERNAL","message":"boom"}'
  exit 1
fi
echo '{"event":"start"}'
exec sleep 1000
)";
  auto supervisor = Make(Options(script, /*world_size=*/2, /*ranks=*/{0, 1}));
  ASSERT_TRUE(supervisor->Start().ok());
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_EQ(outcome.failed_rank, 1);
  EXPECT_TRUE(outcome.retryable);
  EXPECT_THAT(outcome.reason, HasSubstr("rank 1 exited with exit code 1"));
  EXPECT_THAT(outcome.reason, HasSubstr("boom"));
  std::vector<RankStatus> ranks = supervisor->GetRankStatuses();
  ASSERT_TRUE(ranks[0].exit.has_value());
  EXPECT_EQ(ranks[0].exit->signal, SIGKILL);  // killed by the supervisor, not by itself
  EXPECT_EQ(ranks[1].exit->exit_code, 1);
  EXPECT_EQ(ranks[1].error_message, "boom");
}

struct ExitCase {
  std::string script;
  bool retryable;
  std::string reason;
};

// Readable ctest names: the expected reason instead of the struct's bytes.
void PrintTo(const ExitCase& c, std::ostream* os) { *os << c.reason; }

class ExitCodeTest : public TrainerSupervisorTest,
                     public ::testing::WithParamInterface<ExitCase> {};

TEST_P(ExitCodeTest, DecidesRetryability) {
  auto supervisor = Make(Options(GetParam().script));
  ASSERT_TRUE(supervisor->Start().ok());
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_EQ(outcome.failed_rank, 0);
  EXPECT_EQ(outcome.retryable, GetParam().retryable) << outcome.reason;
  EXPECT_THAT(outcome.reason, HasSubstr(GetParam().reason));
}

INSTANTIATE_TEST_SUITE_P(
    Codes, ExitCodeTest,
    ::testing::Values(
        ExitCase{
            R"(echo '{"event":"error","code":"INVALID_ARGUMENT","message":"model.x: unknown field"}'; exit 2)",
            false, "exit code 2 (invalid configuration): model.x: unknown field"},
        ExitCase{"exit 3", false, "exit code 3 (non-finite loss)"},
        ExitCase{"exit 1", true, "rank 0 exited with exit code 1"},
        ExitCase{"kill -SEGV $$", true, "rank 0 was killed by signal 11"},
        ExitCase{R"(echo '{"event":"start"}'; exit 0)", true,
                 "exit code 0 without a completed or stopped event"}));

TEST_F(TrainerSupervisorTest, StallAfterProgressIsDetectedWithTheFakeClock) {
  // The fake trainer answers SIGQUIT as peco-train does (a stack dump, then on as before).
  auto supervisor = Make(Options(R"(
trap 'echo stacks-requested' QUIT
echo '{"event":"step","step":1}'
while :; do sleep 1000 & wait $!; done
)"));
  ASSERT_TRUE(supervisor->Start().ok());
  ASSERT_TRUE(sink_.WaitForEvents(1));
  EXPECT_FALSE(supervisor->Poll());
  EXPECT_EQ(supervisor->CurrentStallTimeout(), absl::Minutes(5));  // floor: no interval yet
  clock_.Advance(absl::Minutes(5));
  EXPECT_FALSE(supervisor->Poll());  // exactly at the timeout: not yet
  EXPECT_FALSE(supervisor->GetRankStatuses()[0].stalled);
  clock_.Advance(absl::Seconds(1));
  // Stalled: asked for its stacks, and given the grace period to write them.
  EXPECT_FALSE(supervisor->Poll());
  EXPECT_TRUE(supervisor->GetRankStatuses()[0].stalled);
  ASSERT_TRUE(sink_.WaitForUnparsed(1));
  EXPECT_EQ(sink_.unparsed()[0], "stacks-requested");
  EXPECT_FALSE(supervisor->Poll());
  EXPECT_TRUE(supervisor->GetRankStatuses()[0].running);
  clock_.Advance(absl::Seconds(3));  // TrainerSupervisorOptions::stack_dump_grace
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_TRUE(outcome.retryable);
  EXPECT_THAT(outcome.reason, HasSubstr("rank 0 stalled"));
  RankStatus rank = supervisor->GetRankStatuses()[0];
  EXPECT_TRUE(rank.stalled);
  ASSERT_TRUE(rank.exit.has_value());
  EXPECT_EQ(rank.exit->signal, SIGKILL);
}

TEST_F(TrainerSupervisorTest, NoFirstStepWithinStartupTimeoutIsAStall) {
  auto supervisor = Make(Options(R"(echo '{"event":"start"}'; exec sleep 1000)"));
  ASSERT_TRUE(supervisor->Start().ok());
  ASSERT_TRUE(sink_.WaitForEvents(1));
  clock_.Advance(absl::Minutes(9));  // past the stall floor, within the startup timeout
  EXPECT_FALSE(supervisor->Poll());
  clock_.Advance(absl::Minutes(2));
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_THAT(outcome.reason, HasSubstr("startup timeout"));
}

TEST_F(TrainerSupervisorTest, StallTimeoutScalesWithTheMedianStepInterval) {
  // The fake trainer prints whatever the test writes into a fifo, so the test decides when
  // each step event arrives relative to the fake clock.
  ScopedTempDir temp("peco_supervisor");
  const std::string fifo = temp.Join("steps");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto supervisor = Make(Options("while read line; do echo \"$line\"; done < " + fifo));
  ASSERT_TRUE(supervisor->Start().ok());
  const int fd = ::open(fifo.c_str(), O_WRONLY);  // blocks until the script opens it
  ASSERT_GE(fd, 0);
  for (int step = 1; step <= 3; ++step) {
    const std::string line = JsonWriter().Add("event", "step").Add("step", step).str() + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    ASSERT_TRUE(sink_.WaitForEvents(step));
    EXPECT_FALSE(supervisor->Poll());
    clock_.Advance(absl::Minutes(1));
  }
  // Intervals of 1 minute, factor 10: 10 minutes, above the 5 minute floor.
  EXPECT_EQ(supervisor->CurrentStallTimeout(), absl::Minutes(10));
  clock_.Advance(absl::Minutes(8));  // 9 minutes since the last step
  EXPECT_FALSE(supervisor->Poll());
  clock_.Advance(absl::Minutes(2));
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  ::close(fd);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_THAT(outcome.reason, HasSubstr("stall timeout 10m"));
  EXPECT_EQ(supervisor->GetRankStatuses()[0].last_step, 3);
}

TEST_F(TrainerSupervisorTest, HeartbeatsOfALongEvaluationKeepTheStallClockMoving) {
  ScopedTempDir temp("peco_supervisor");
  const std::string fifo = temp.Join("events");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto supervisor = Make(Options("while read line; do echo \"$line\"; done < " + fifo));
  ASSERT_TRUE(supervisor->Start().ok());
  const int fd = ::open(fifo.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  auto send = [&](const JsonWriter& event, int events) {
    const std::string line = event.str() + "\n";
    ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    ASSERT_TRUE(sink_.WaitForEvents(events));
  };
  send(JsonWriter().Add("event", "step").Add("step", 1), 1);
  // An evaluation of 12 minutes, with a heartbeat every 3: never 5 minutes (the floor) without.
  for (int beat = 1; beat <= 4; ++beat) {
    clock_.Advance(absl::Minutes(3));
    EXPECT_FALSE(supervisor->Poll()) << "heartbeat " << beat;
    send(JsonWriter().Add("event", "heartbeat").Add("phase", "eval").Add("done", beat * 100),
         1 + beat);
  }
  EXPECT_EQ(supervisor->CurrentStallTimeout(), absl::Minutes(5)) << "heartbeats are not steps";
  clock_.Advance(absl::Minutes(4));
  EXPECT_FALSE(supervisor->Poll());
  clock_.Advance(absl::Minutes(2));  // 6 minutes after the last heartbeat
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  ::close(fd);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_THAT(outcome.reason, HasSubstr("stalled"));
}

TEST_F(TrainerSupervisorTest, CancelHonouredBySigtermIsStopped) {
  auto supervisor = Make(Options(R"(
trap 'echo "{\"event\":\"checkpoint\",\"step\":4,\"path\":\"p\",\"bytes\":1,\"final\":true}"; echo "{\"event\":\"stopped\",\"step\":4}"; exit 0' TERM
echo '{"event":"start"}'
sleep 1000 &
wait
)",
                                 /*world_size=*/2, /*ranks=*/{0, 1}));
  ASSERT_TRUE(supervisor->Start().ok());
  ASSERT_TRUE(sink_.WaitForEvents(2));  // both traps are installed
  supervisor->Cancel(absl::Seconds(30));
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kStopped) << outcome.reason;
  EXPECT_TRUE(outcome.cancel_requested);
  EXPECT_FALSE(outcome.retryable);
  for (int rank : {0, 1}) {
    EXPECT_THAT(sink_.TypesOf(rank), ElementsAre("start", "checkpoint", "stopped"));
  }
}

TEST_F(TrainerSupervisorTest, RankIgnoringSigtermIsKilledAfterTheGracePeriod) {
  auto supervisor = Make(Options(R"(
trap '' TERM
echo '{"event":"start"}'
exec sleep 1000
)"));
  ASSERT_TRUE(supervisor->Start().ok());
  ASSERT_TRUE(sink_.WaitForEvents(1));
  supervisor->Cancel(absl::Seconds(30));
  EXPECT_FALSE(supervisor->Poll());
  clock_.Advance(absl::Seconds(29));
  EXPECT_FALSE(supervisor->Poll());
  supervisor->Cancel(absl::Minutes(10));  // cannot push the deadline back
  clock_.Advance(absl::Seconds(1));
  AttemptOutcome outcome = PollUntilDone(*supervisor);
  EXPECT_EQ(outcome.result, Result::kFailed);
  EXPECT_TRUE(outcome.cancel_requested);
  EXPECT_FALSE(outcome.retryable);
  EXPECT_THAT(outcome.reason, HasSubstr("grace period"));
  RankStatus rank = supervisor->GetRankStatuses()[0];
  ASSERT_TRUE(rank.exit.has_value());
  EXPECT_EQ(rank.exit->signal, SIGKILL);
}

TEST_F(TrainerSupervisorTest, LaunchFailureKillsStartedRanksAndFails) {
  launcher_.fail_call = 1;
  auto supervisor = Make(Options("exec sleep 1000", /*world_size=*/2, /*ranks=*/{0, 1}));
  absl::Status status = supervisor->Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("launching rank 1"));
  EXPECT_TRUE(supervisor->Poll());
  EXPECT_EQ(supervisor->outcome()->result, Result::kFailed);
  EXPECT_EQ(supervisor->outcome()->failed_rank, 1);
  EXPECT_EQ(supervisor->Start().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(launcher_.specs.size(), 2u);
  EXPECT_THAT(launcher_.specs[1].env, ::testing::Contains("RANK=1"));
}

TEST_F(TrainerSupervisorTest, MissingTrainerBinaryIsNotFound) {
  TrainerSupervisorOptions options = Options("");
  options.trainer_command = {"/nonexistent/peco-train"};
  auto supervisor = Make(options);
  EXPECT_EQ(supervisor->Start().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(supervisor->Poll());
}

TEST_F(TrainerSupervisorTest, DestructorKillsRunningRanks) {
  auto supervisor = Make(Options(R"(echo '{"event":"start"}'; exec sleep 1000)"));
  ASSERT_TRUE(supervisor->Start().ok());
  ASSERT_TRUE(sink_.WaitForEvents(1));
  const pid_t pid = supervisor->GetRankStatuses()[0].pid;
  supervisor.reset();
  EXPECT_EQ(::kill(pid, 0), -1);
}

TEST(TrainerSupervisorOptionsTest, Validate) {
  TrainerSupervisorOptions good;
  good.job_id = "j";
  good.kind = "pretrain";
  good.config_path = "c";
  good.output_dir = "o";
  EXPECT_TRUE(good.Validate().ok());
  auto expect_bad = [&](auto mutate, const std::string& field) {
    TrainerSupervisorOptions o = good;
    mutate(o);
    absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(), HasSubstr(field));
  };
  expect_bad([](auto& o) { o.kind = "mim"; }, "kind");
  expect_bad([](auto& o) { o.job_id = ""; }, "job_id");
  expect_bad([](auto& o) { o.ranks = {1}; }, "ranks");
  expect_bad([](auto& o) { o.world_size = 2, o.ranks = {1, 1}; }, "ranks");
  expect_bad([](auto& o) { o.master_port = 0; }, "master_port");
  expect_bad([](auto& o) { o.extra_env = {"NOEQUALS"}; }, "extra_env");
  expect_bad([](auto& o) { o.stall_timeout_factor = 0.5; }, "stall_timeout_factor");
  expect_bad([](auto& o) { o.stall_timeout_floor = absl::ZeroDuration(); }, "stall_timeout_floor");
  expect_bad([](auto& o) { o.trainer_command = {}; }, "trainer_command");
}

TEST(ParseTrainerEventLineTest, ParsesJsonWriterOutput) {
  const std::string line = JsonWriter()
                               .Add("event", "step")
                               .Add("step", int64_t{12})
                               .Add("loss", 0.125)
                               .Add("note", "a \"quoted\" word")
                               .Add("nan", std::nan(""))
                               .AddRaw("nested", "{\"x\":1}")
                               .str();
  TrainerTag tag{"j", 1, 0, 0};
  auto event = ParseTrainerEventLine(line, tag, absl::UnixEpoch());
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->type, "step");
  EXPECT_EQ(event->Int("step"), 12);
  EXPECT_EQ(event->Number("loss"), 0.125);
  EXPECT_EQ(event->String("note"), "a \"quoted\" word");
  EXPECT_EQ(event->Number("nan"), std::nullopt);
  EXPECT_EQ(event->String("nested"), std::nullopt);
  EXPECT_EQ(event->json, line);
  EXPECT_FALSE(ParseTrainerEventLine("event: step", tag, absl::UnixEpoch()).has_value());
  EXPECT_FALSE(ParseTrainerEventLine("{\"step\":1}", tag, absl::UnixEpoch()).has_value());
  EXPECT_FALSE(ParseTrainerEventLine("{\"event\":", tag, absl::UnixEpoch()).has_value());
}

}  // namespace
}  // namespace peco::worker
