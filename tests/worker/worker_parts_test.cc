// The worker agent's parts, each alone: the trainer-event relay (worker/event_relay.h: what each
// kind of event becomes), the coordinator session (worker/coordinator_session.h: registration,
// backoff, heartbeat schedule), the device ledger (worker/device_ledger.h) and the attempt result
// (worker/attempt_result.h: outcome and exits -> result and cause).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <optional>
#include <string>
#include <vector>

#include "common/trainer_protocol.h"
#include "worker/attempt_result.h"
#include "worker/coordinator_session.h"
#include "worker/device_ledger.h"
#include "worker/event_relay.h"
#include "worker/host_address.h"

namespace peco::worker {
namespace {

using ::testing::HasSubstr;

const absl::Time kReceived = absl::FromUnixMicros(1'000'000);

TrainerEvent Event(const std::string& line, int rank = 0) {
  std::optional<TrainerEvent> event =
      ParseTrainerEventLine(line, TrainerTag{"job-7", 2, rank, 0}, kReceived);
  EXPECT_TRUE(event.has_value()) << line;
  return event.value_or(TrainerEvent());
}

TEST(EventRelayTest, StepEventsBecomeMetricPointsOnly) {
  RelayedEvent relayed = RelayTrainerEvent(
      Event(R"({"event":"step","step":12,"loss":0.5,"lr":0.001,"note":"x","ok":true})"), 10,
      "/w/a");
  EXPECT_EQ(relayed.last_step, 12);
  ASSERT_EQ(relayed.reports.size(), 1u);
  const v1::MetricPoint& point = relayed.reports[0].metric_point();
  EXPECT_EQ(point.job_id(), "job-7");
  EXPECT_EQ(point.attempt(), 2);
  EXPECT_EQ(point.step(), 12);
  EXPECT_EQ(point.time_us(), 1'000'000);
  EXPECT_EQ(point.values().size(), 2u);  // loss and lr: strings and booleans are not metrics
  EXPECT_EQ(point.values().at("loss"), 0.5);
  EXPECT_EQ(relayed.rank_values.at("step"), 12.0);
  EXPECT_FALSE(relayed.checkpoint.has_value());
  // A step below the last one (a resumed rank re-reaching it) does not move the last step back.
  EXPECT_EQ(RelayTrainerEvent(Event(R"({"event":"step","step":5})"), 10, "/w/a").last_step, 10);
}

TEST(EventRelayTest, EvalEventsAreMetricsAndTrainerEventsOthersOnlyTrainerEvents) {
  RelayedEvent eval =
      RelayTrainerEvent(Event(R"({"event":"eval","step":40,"eval_top1":0.83})"), 40, "/w/a");
  ASSERT_EQ(eval.reports.size(), 2u);
  EXPECT_EQ(eval.reports[0].metric_point().values().at("eval_top1"), 0.83);
  EXPECT_EQ(eval.reports[1].trainer_event().type(), "eval");

  const std::string line = R"({"event":"start","max_steps":100})";
  RelayedEvent start = RelayTrainerEvent(Event(line), 33, "/w/a");
  ASSERT_EQ(start.reports.size(), 1u);
  const v1::TrainerEvent& relayed = start.reports[0].trainer_event();
  EXPECT_EQ(relayed.type(), "start");
  EXPECT_EQ(relayed.message(), line);  // verbatim
  EXPECT_EQ(relayed.step(), 33);       // stamped with the rank's last step
  EXPECT_EQ(start.last_step, 33);
  EXPECT_TRUE(start.rank_values.empty());

  RelayedEvent heartbeat = RelayTrainerEvent(Event(R"({"event":"heartbeat"})"), 3, "/w/a");
  EXPECT_TRUE(heartbeat.reports.empty());
  EXPECT_EQ(heartbeat.last_step, 3);
}

TEST(EventRelayTest, RankZerosCheckpointEventNamesTheCheckpointToUpload) {
  RelayedEvent relayed = RelayTrainerEvent(
      Event(R"({"event":"checkpoint","step":50,"path":"ckpt/step-50","final":true,)"
            R"("bytes":1024,"seconds":0.25})"),
      50, "/w/job-7/attempt-2");
  ASSERT_TRUE(relayed.checkpoint.has_value());
  EXPECT_EQ(relayed.checkpoint->job_id(), "job-7");
  EXPECT_EQ(relayed.checkpoint->attempt(), 2);
  EXPECT_EQ(relayed.checkpoint->step(), 50);
  EXPECT_TRUE(relayed.checkpoint->final());
  EXPECT_EQ(relayed.checkpoint_dir, "/w/job-7/attempt-2/ckpt/step-50");  // relative to the cwd
  EXPECT_EQ(relayed.rank_values.at("checkpoint_bytes"), 1024.0);
  EXPECT_EQ(relayed.reports.size(), 1u);  // and the event itself, for the history

  RelayedEvent absolute =
      RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1,"path":"/abs/c"})"), 0, "/w");
  EXPECT_EQ(absolute.checkpoint_dir, "/abs/c");
  EXPECT_FALSE(absolute.checkpoint->final());

  // Other ranks do not upload; a checkpoint event without a path is a problem, not an upload.
  EXPECT_FALSE(RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1,"path":"c"})", 1), 0, "/w")
                   .checkpoint.has_value());
  RelayedEvent no_path = RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1})"), 0, "/w");
  EXPECT_FALSE(no_path.checkpoint.has_value());
  EXPECT_THAT(no_path.problem, HasSubstr("without a path"));
}

// ---------------------------------------------------------------------------------------------
// CoordinatorSession

const absl::Time kT0 = absl::FromUnixSeconds(5000);

CoordinatorSession Session(absl::Duration heartbeat_interval = absl::ZeroDuration()) {
  CoordinatorSession::Options options;
  options.register_initial_backoff = absl::Seconds(1);
  options.register_max_backoff = absl::Seconds(8);
  options.heartbeat_interval = heartbeat_interval;
  return CoordinatorSession(options, "worker-a");
}

TEST(CoordinatorSessionTest, RegisterBacksOffDoublingUpToTheMaximum) {
  CoordinatorSession session = Session();
  EXPECT_TRUE(session.RegisterDue(kT0));
  std::vector<int64_t> backoffs;
  std::vector<bool> logged;
  absl::Time now = kT0;
  for (int i = 0; i < 12; ++i) {
    CoordinatorSession::RegisterRetry retry = session.OnRegisterFailed(now);
    EXPECT_EQ(retry.failures, i + 1);
    backoffs.push_back(absl::ToInt64Seconds(retry.backoff));
    logged.push_back(retry.worth_logging);
    EXPECT_FALSE(session.RegisterDue(now + retry.backoff - absl::Milliseconds(1)));
    now += retry.backoff;
    EXPECT_TRUE(session.RegisterDue(now));
  }
  EXPECT_EQ(backoffs, (std::vector<int64_t>{1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8}));
  EXPECT_EQ(logged, (std::vector<bool>{true, true, true, false, false, false, false, false, false,
                                       true, false, false}));
  EXPECT_FALSE(session.registered());
}

TEST(CoordinatorSessionTest, RegistrationTakesTheAnswersIdAndInterval) {
  CoordinatorSession session = Session();
  session.OnRegisterFailed(kT0);
  v1::RegisterResponse response;
  response.set_worker_id("worker-a");
  response.set_heartbeat_interval_ms(2000);
  EXPECT_FALSE(session.OnRegistered(response, kT0));  // same id
  EXPECT_TRUE(session.registered());
  EXPECT_FALSE(session.RegisterDue(kT0));
  EXPECT_EQ(session.heartbeat_interval(), absl::Seconds(2));
  response.set_worker_id("worker-b");
  EXPECT_TRUE(session.OnRegistered(response, kT0));
  EXPECT_EQ(session.worker_id(), "worker-b");
  // A configured interval wins over the coordinator's; none at all is 5 s.
  CoordinatorSession fixed = Session(absl::Milliseconds(300));
  fixed.OnRegistered(response, kT0);
  EXPECT_EQ(fixed.heartbeat_interval(), absl::Milliseconds(300));
  CoordinatorSession bare = Session();
  bare.OnRegistered(v1::RegisterResponse(), kT0);
  EXPECT_EQ(bare.heartbeat_interval(), absl::Seconds(5));
  EXPECT_EQ(bare.worker_id(), "worker-a");
}

TEST(CoordinatorSessionTest, HeartbeatsAreDueEveryIntervalAndNotFoundEndsTheRegistration) {
  CoordinatorSession session = Session(absl::Seconds(2));
  EXPECT_FALSE(session.TakeHeartbeatTurn(kT0));  // not registered
  session.OnRegistered(v1::RegisterResponse(), kT0);
  EXPECT_TRUE(session.TakeHeartbeatTurn(kT0));  // at once after registering
  EXPECT_FALSE(session.TakeHeartbeatTurn(kT0 + absl::Seconds(1)));
  EXPECT_TRUE(session.TakeHeartbeatTurn(kT0 + absl::Seconds(2)));

  EXPECT_TRUE(session.OnHeartbeatFailed(absl::UnavailableError("down")));
  EXPECT_FALSE(session.OnHeartbeatFailed(absl::UnavailableError("down")));  // not the first
  EXPECT_TRUE(session.registered());  // trainers keep running; retried next interval
  EXPECT_TRUE(session.OnHeartbeatSucceeded());
  EXPECT_FALSE(session.OnHeartbeatSucceeded());

  session.OnHeartbeatFailed(absl::NotFoundError("unknown worker"));
  EXPECT_FALSE(session.registered());
  EXPECT_TRUE(session.RegisterDue(kT0 + absl::Seconds(2)));  // at once, no backoff
  EXPECT_FALSE(session.TakeHeartbeatTurn(kT0 + absl::Seconds(10)));
}

TEST(BackoffTest, DoublesFromTheInitialValueAndStopsAtTheMaximum) {
  EXPECT_EQ(Backoff(absl::Seconds(1), absl::Minutes(1), 1), absl::Seconds(1));
  EXPECT_EQ(Backoff(absl::Seconds(1), absl::Minutes(1), 4), absl::Seconds(8));
  EXPECT_EQ(Backoff(absl::Seconds(1), absl::Minutes(1), 40), absl::Minutes(1));
  EXPECT_EQ(Backoff(absl::Seconds(1), absl::Minutes(1), 0), absl::Seconds(1));
}

// ---------------------------------------------------------------------------------------------
// DeviceLedger

v1::DeviceRequest PerRank(int gpus, int cpu_slots) {
  v1::DeviceRequest request;
  request.set_gpus(gpus);
  request.set_cpu_slots(cpu_slots);
  return request;
}

TEST(DeviceLedgerTest, AcquiresTheLowestFreeGpusAndGivesThemBack) {
  DeviceLedger ledger(/*gpus=*/4, /*cpu_slots=*/8);
  absl::StatusOr<HeldDevices> first = ledger.Acquire(PerRank(1, 2), 2);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->gpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(first->cpu_slots, 4);
  absl::StatusOr<HeldDevices> second = ledger.Acquire(PerRank(1, 0), 1);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->gpus, (std::vector<int>{2}));
  EXPECT_EQ(second->cpu_slots, 0);
  ledger.Release(*first);
  absl::StatusOr<HeldDevices> third = ledger.Acquire(PerRank(1, 0), 2);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->gpus, (std::vector<int>{0, 1}));
  EXPECT_EQ(ledger.Free().gpus(), 1);
  EXPECT_EQ(ledger.Free().cpu_slots(), 8);
}

TEST(DeviceLedgerTest, CpuRanksTakeAtLeastOneSlotAndShortfallsTakeNothing) {
  DeviceLedger ledger(/*gpus=*/1, /*cpu_slots=*/3);
  EXPECT_EQ(DeviceLedger::Need(PerRank(0, 0), 2).cpu_slots, 2);
  absl::StatusOr<HeldDevices> cpu = ledger.Acquire(PerRank(0, 0), 2);
  ASSERT_TRUE(cpu.ok());
  absl::Status short_of_slots = ledger.Acquire(PerRank(0, 2), 1).status();
  EXPECT_EQ(short_of_slots.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(short_of_slots.message(), HasSubstr("need 0 gpus and 2 cpu slots, free 1 and 1"));
  EXPECT_EQ(ledger.Acquire(PerRank(2, 0), 1).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ledger.Free().gpus(), 1);  // the refusals took nothing
  EXPECT_EQ(ledger.Free().cpu_slots(), 1);
}

// ---------------------------------------------------------------------------------------------
// BuildAttemptResult

RankStatus Rank(int rank, int64_t last_step, std::optional<ExitStatus> exit, bool stalled = false) {
  RankStatus status;
  status.tag.rank = rank;
  status.last_step = last_step;
  status.exit = exit;
  status.stalled = stalled;
  return status;
}

AttemptOutcome Failed(int rank, const std::string& reason, bool cancel_requested = false) {
  AttemptOutcome outcome;
  outcome.result = AttemptOutcome::Result::kFailed;
  outcome.reason = reason;
  outcome.retryable = true;
  outcome.failed_rank = rank;
  outcome.cancel_requested = cancel_requested;
  return outcome;
}

std::string CauseOf(const AttemptOutcome& outcome, const std::vector<RankStatus>& ranks,
                    AttemptEnding ending = {}) {
  return BuildAttemptResult("job-1", 3, outcome, ranks, ending).cause();
}

TEST(AttemptResultTest, SuccessCarriesTheLastStepOfAnyRank) {
  AttemptOutcome ok;
  ok.result = AttemptOutcome::Result::kSucceeded;
  v1::AttemptResult result = BuildAttemptResult(
      "job-1", 3, ok, {Rank(0, 90, ExitStatus::Exited(0)), Rank(1, 100, ExitStatus::Exited(0))},
      {});
  EXPECT_EQ(result.job_id(), "job-1");
  EXPECT_EQ(result.attempt(), 3);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED);
  EXPECT_EQ(result.cause(), "exit");
  EXPECT_EQ(result.last_step(), 100);
}

TEST(AttemptResultTest, TheDecidingRanksExitNamesTheCause) {
  const std::vector<RankStatus> exit1 = {Rank(0, 5, ExitStatus::Exited(1))};
  EXPECT_EQ(CauseOf(Failed(0, "exit 1"), exit1), "exit");
  EXPECT_EQ(CauseOf(Failed(0, "nan"),
                    {Rank(0, 5, ExitStatus::Exited(trainer_protocol::kExitNonFiniteLoss))}),
            "nonfinite_loss");
  EXPECT_EQ(CauseOf(Failed(0, "segv"), {Rank(0, 5, ExitStatus::Signaled(SIGSEGV))}), "signal");
  EXPECT_EQ(CauseOf(Failed(0, "stalled"), {Rank(0, 5, ExitStatus::Signaled(SIGKILL), true)}),
            "stall");
  EXPECT_EQ(CauseOf(Failed(0, "x", /*cancel_requested=*/true), exit1), "cancel");
  AttemptEnding launch;
  launch.launch_failed = true;
  EXPECT_EQ(CauseOf(Failed(-1, "no such file"), {}, launch), "launch");

  // A SIGKILL the worker did not send: the out-of-memory killer, said in the reason.
  v1::AttemptResult oom = BuildAttemptResult(
      "job-1", 3, Failed(1, "rank 1 killed"),
      {Rank(0, 5, ExitStatus::Exited(0)), Rank(1, 5, ExitStatus::Signaled(SIGKILL))}, {});
  EXPECT_EQ(oom.cause(), "oom");
  EXPECT_THAT(oom.reason(), HasSubstr("probably the out-of-memory killer"));
  EXPECT_TRUE(oom.retryable());
}

TEST(AttemptResultTest, TheWorkersOwnShutdownIsARetryableFailureNotAStop) {
  AttemptOutcome stopped;
  stopped.result = AttemptOutcome::Result::kStopped;
  AttemptEnding shutdown;
  shutdown.shutdown_cancelled = true;
  v1::AttemptResult result = BuildAttemptResult("job-1", 3, stopped, {}, shutdown);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_TRUE(result.retryable());
  EXPECT_EQ(result.cause(), "cancel");
  EXPECT_EQ(result.reason(), "peco-worker shut down");
  // When the coordinator cancelled it too, the stop is the user's.
  shutdown.coordinator_cancelled = true;
  EXPECT_EQ(BuildAttemptResult("job-1", 3, stopped, {}, shutdown).result(),
            v1::AttemptResult::RESULT_STOPPED);
}

// Where other ranks reach this machine: loopback is recognised in every spelling, the host of a
// gRPC target is found, and the address on the route to a host is this machine's (for loopback,
// loopback itself).
TEST(HostAddressTest, LoopbackTargetsAndTheRouteToTheCoordinator) {
  for (const char* host : {"localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"10.0.0.7", "128.0.0.1", "coordinator.example", "::2", ""}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
  EXPECT_EQ(HostOfTarget("10.0.0.2:7450"), "10.0.0.2");
  EXPECT_EQ(HostOfTarget("dns:///coord.example:7450"), "coord.example");
  EXPECT_EQ(HostOfTarget("[fd00::1]:7450"), "[fd00::1]");
  EXPECT_EQ(HostOfTarget("ipv4:127.0.0.1:41000"), "127.0.0.1");
  absl::StatusOr<std::string> local = LocalAddressToward("127.0.0.1");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(*local, "127.0.0.1");
}

}  // namespace
}  // namespace peco::worker
