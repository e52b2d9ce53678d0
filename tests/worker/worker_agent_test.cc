// Drives WorkerAgent with a FakeCoordinatorClient, a FakeClock and /bin/sh scripts as fake
// trainers. The agent never sleeps; the test calls Tick()/TransferOnce() and advances the clock.
// Real-time waits below only bound how long a broken build may hang (30 s), they decide nothing.
#include "worker/worker_agent.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/process_launcher.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/test_util/files.h"
#include "tests/worker/fake_coordinator_client.h"
#include "worker/worker_metrics.h"

namespace peco::worker {
namespace {
namespace fs = std::filesystem;

using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kHangLimit = absl::Seconds(30);

// Fake trainer pieces. Arguments: $1 kind, $3 config, $5 output dir, $7 resume dir.
constexpr char kPrintEnv[] = R"(
echo "{\"event\":\"env\",\"rank\":\"$RANK\",\"world_size\":\"$WORLD_SIZE\",\"local_rank\":\"$LOCAL_RANK\",\"local_world_size\":\"$LOCAL_WORLD_SIZE\",\"master_addr\":\"$MASTER_ADDR\",\"master_port\":\"$MASTER_PORT\",\"job\":\"$PECO_JOB_ID\",\"attempt\":\"$PECO_ATTEMPT\",\"cwd\":\"$(pwd)\",\"args\":\"$*\"}"
)";

// Rank 0 writes checkpoint step 2 under the (shared) output directory, like the trainer; every
// rank prints the event.
constexpr char kWriteCheckpoint[] = R"(
ck="$5/checkpoints/step-000000000002"
if [ "$RANK" = 0 ]; then
  mkdir -p "$ck"
  printf 'weights-%s' "$RANK" > "$ck/model.pt"
  printf '{"step":2}' > "$ck/trainer_state.json"
  : > "$ck/empty.bin"
  (cd "$ck" && for f in empty.bin model.pt trainer_state.json; do
    echo "$(sha256sum "$f" | cut -d' ' -f1) $(wc -c < "$f" | tr -d ' ') $f"; done) > "$ck/MANIFEST"
fi
echo '{"event":"checkpoint","step":2,"path":"'"$ck"'","bytes":18,"final":true}'
)";

class WorkerAgentTest : public ::testing::Test {
 protected:
  // The agent (and the trainers it runs) goes before the work directory.
  void TearDown() override { agent_.reset(); }

  WorkerAgentOptions Options(const std::string& script) {
    WorkerAgentOptions options;
    options.work_dir = temp_.path();
    options.host = "10.1.2.3";
    options.cpu_slots = 4;
    options.first_port = 29600;
    options.last_port = 29610;
    options.trainer_command = {"/bin/sh", "-c", script, "peco-train"};
    options.startup_timeout = absl::Hours(10);  // the pumps below advance the clock
    options.stall_timeout_floor = absl::Hours(10);
    options.log = [this](absl::string_view line) {
      absl::MutexLock lock(&log_mu_);
      log_.emplace_back(line);
    };
    return options;
  }

  WorkerAgent& Start(const std::string& script) { return Start(Options(script)); }
  WorkerAgent& Start(WorkerAgentOptions options) {
    agent_ =
        std::make_unique<WorkerAgent>(std::move(options), &client_, &launcher_, &clock_, &metrics_);
    EXPECT_TRUE(agent_->Init().ok());
    return *agent_;
  }

  static v1::Assignment MakeAssignment(const std::string& job, int64_t attempt,
                                       std::vector<int> ranks = {0}, int world_size = 1) {
    v1::Assignment assignment;
    assignment.set_job_id(job);
    assignment.set_attempt(attempt);
    assignment.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
    assignment.mutable_spec()->set_config_yaml("kind: tokenizer\ntrain: {max_steps: 2}\n");
    assignment.mutable_spec()->mutable_devices_per_rank()->set_cpu_slots(1);
    for (int rank : ranks) assignment.add_ranks(rank);
    assignment.set_world_size(world_size);
    assignment.set_master_addr("10.1.2.3");
    assignment.set_master_port(29605);
    return assignment;
  }

  // The next successful heartbeat answers with `response`.
  void QueueResponse(v1::HeartbeatResponse response) {
    absl::MutexLock lock(&client_.mu());
    client_.heartbeat_responses.push_back(std::move(response));
  }
  void QueueAssignment(v1::Assignment assignment) {
    v1::HeartbeatResponse response;
    *response.add_assignments() = std::move(assignment);
    QueueResponse(std::move(response));
  }

  // Ticks (advancing the fake clock by `step` each time, so heartbeats fall due) and transfers
  // until `done` holds. Fails the test after kHangLimit of real time.
  bool Pump(const std::function<bool()>& done, absl::Duration step = absl::Seconds(1),
            bool transfers = true) {
    const absl::Time limit = absl::Now() + kHangLimit;
    while (!done()) {
      if (absl::Now() > limit) {
        ADD_FAILURE() << "condition not reached; log:\n" << LogText();
        return false;
      }
      agent_->Tick();
      if (transfers) agent_->TransferOnce();
      clock_.Advance(step);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  std::vector<v1::AttemptResult> Results() {
    absl::MutexLock lock(&client_.mu());
    return client_.results;
  }
  // Metric points and trainer events that reached the coordinator (log chunks: LogText()).
  std::vector<v1::ReportProgressRequest> Reports() {
    absl::MutexLock lock(&client_.mu());
    std::vector<v1::ReportProgressRequest> reports;
    for (const v1::ReportProgressRequest& report : client_.reports) {
      if (!report.has_log_chunk()) reports.push_back(report);
    }
    return reports;
  }
  // What reached the coordinator of one rank's log, in order.
  std::string LogText(const std::string& job_id, int64_t attempt, int rank) {
    absl::MutexLock lock(&client_.mu());
    std::string text;
    for (const v1::ReportProgressRequest& report : client_.reports) {
      const v1::LogChunk& chunk = report.log_chunk();
      if (report.has_log_chunk() && chunk.job_id() == job_id && chunk.attempt() == attempt &&
          chunk.rank() == rank) {
        EXPECT_EQ(chunk.offset(), static_cast<int64_t>(text.size())) << "chunks in order";
        text += chunk.data();
      }
    }
    return text;
  }
  // Trainer events of one type that reached the coordinator, parsed back.
  std::vector<TrainerEvent> EventsOfType(const std::string& type) {
    std::vector<TrainerEvent> events;
    for (const auto& report : Reports()) {
      if (!report.has_trainer_event() || report.trainer_event().type() != type) continue;
      const v1::TrainerEvent& e = report.trainer_event();
      std::optional<TrainerEvent> parsed = ParseTrainerEventLine(
          e.message(), TrainerTag{e.job_id(), e.attempt(), e.rank(), 0}, absl::UnixEpoch());
      if (parsed) events.push_back(*parsed);
    }
    return events;
  }
  std::string LogText() {
    absl::MutexLock lock(&log_mu_);
    std::string text;
    for (const std::string& line : log_) absl::StrAppend(&text, line, "\n");
    return text;
  }
  std::string MetricsText() {
    return prometheus::TextSerializer().Serialize(metrics_.registry()->Collect());
  }
  std::optional<v1::AttemptResult> ResultOf(const std::string& job, int64_t attempt) {
    for (const v1::AttemptResult& result : Results()) {
      if (result.job_id() == job && result.attempt() == attempt) return result;
    }
    return std::nullopt;
  }
  v1::AttemptResult RunToResult(const std::string& job, int64_t attempt) {
    Pump([&] { return ResultOf(job, attempt).has_value(); });
    return ResultOf(job, attempt).value_or(v1::AttemptResult());
  }
  size_t HeartbeatCount() {
    absl::MutexLock lock(&client_.mu());
    return client_.heartbeats.size();
  }
  v1::HeartbeatRequest LastHeartbeat() {
    absl::MutexLock lock(&client_.mu());
    return client_.heartbeats.back();
  }
  std::string AttemptDir(const std::string& job, int64_t attempt) {
    return absl::StrCat(temp_.path(), "/jobs/", job, "/attempt-", attempt);
  }
  bool PhaseIs(const std::string& job, int64_t attempt, const std::string& phase) {
    for (const AgentAttemptStatus& status : agent_->attempts()) {
      if (status.job_id == job && status.attempt == attempt) return status.phase == phase;
    }
    return false;
  }

  ScopedTempDir temp_{"peco_agent"};
  FakeClock clock_;
  FakeCoordinatorClient client_;
  PosixProcessLauncher launcher_;
  WorkerMetrics metrics_;
  std::unique_ptr<WorkerAgent> agent_;
  absl::Mutex log_mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(log_mu_);
};

TEST_F(WorkerAgentTest, RegistersAdvertisesDevicesAndKeepsItsIdAcrossRestarts) {
  WorkerAgent& agent = Start("exit 0");
  agent.Tick();
  ASSERT_TRUE(agent.registered());
  // The worker chose its id before registering, and kept it.
  const std::string id = agent.worker_id();
  ASSERT_EQ(id.size(), 19u) << id;
  EXPECT_EQ(id.substr(0, 7), "worker-");
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 7), std::string::npos) << id;
  {
    absl::MutexLock lock(&client_.mu());
    ASSERT_EQ(client_.registers.size(), 1u);
    const v1::WorkerInfo& info = client_.registers[0].worker();
    EXPECT_EQ(info.id(), id);
    EXPECT_EQ(info.host(), "10.1.2.3");
    EXPECT_EQ(info.devices().cpu_slots(), 4);
    EXPECT_EQ(info.devices().gpus(), 0);
    EXPECT_EQ(info.free_devices().cpu_slots(), 4);
    EXPECT_EQ(info.ports().first(), 29600);
    EXPECT_EQ(info.ports().last(), 29610);
    ASSERT_EQ(client_.heartbeats.size(), 1u);  // right after registering
    EXPECT_EQ(client_.heartbeats[0].worker_id(), id);
  }
  EXPECT_EQ(ReadFileForTest(temp_.path() + "/worker.id"), id + "\n");

  // Heartbeats follow the coordinator's interval (1 s) on the fake clock.
  agent.Tick();
  EXPECT_EQ(HeartbeatCount(), 1u);
  clock_.Advance(absl::Milliseconds(999));
  agent.Tick();
  EXPECT_EQ(HeartbeatCount(), 1u);
  clock_.Advance(absl::Milliseconds(1));
  agent.Tick();
  EXPECT_EQ(HeartbeatCount(), 2u);

  // A restarted worker registers under the persisted id.
  client_.assigned_id = "worker-2";
  WorkerAgent& restarted = Start("exit 0");
  EXPECT_EQ(restarted.worker_id(), id);
  restarted.Tick();
  absl::MutexLock lock(&client_.mu());
  EXPECT_EQ(client_.registers.back().worker().id(), id);
}

TEST_F(WorkerAgentTest, WorkDirectoryIsPrivateToTheWorkersUser) {
  ASSERT_TRUE(std::filesystem::exists(temp_.path()));
  std::filesystem::permissions(temp_.path(), std::filesystem::perms::all);  // 0777 before
  Start("exit 0");
  EXPECT_EQ(std::filesystem::status(temp_.path()).permissions(), std::filesystem::perms::owner_all);
}

TEST_F(WorkerAgentTest, RegistrationFailuresBackOff) {
  client_.register_error = absl::UnavailableError("down");
  WorkerAgent& agent = Start("exit 0");
  agent.Tick();
  agent.Tick();
  EXPECT_EQ(client_.registers.size(), 1u);  // backing off for 1 s
  clock_.Advance(absl::Seconds(1));
  agent.Tick();
  EXPECT_EQ(client_.registers.size(), 2u);
  clock_.Advance(absl::Seconds(1));
  agent.Tick();
  EXPECT_EQ(client_.registers.size(), 2u);  // now 2 s
  clock_.Advance(absl::Seconds(1));
  client_.register_error = absl::OkStatus();
  agent.Tick();
  EXPECT_EQ(client_.registers.size(), 3u);
  EXPECT_TRUE(agent.registered());
}

TEST_F(WorkerAgentTest, AssignmentLaunchesRanksWithArgumentsEnvironmentAndDirectories) {
  WorkerAgent& agent = Start(std::string(kPrintEnv) + R"(echo '{"event":"completed","step":0}')");
  QueueAssignment(MakeAssignment("job-7", 3, /*ranks=*/{1, 2}, /*world_size=*/3));
  v1::AttemptResult result = RunToResult("job-7", 3);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED) << result.reason();
  EXPECT_EQ(result.cause(), "exit");

  const std::string dir = AttemptDir("job-7", 3);
  EXPECT_EQ(ReadFileForTest(dir + "/config.yaml"), "kind: tokenizer\ntrain: {max_steps: 2}\n");
  EXPECT_TRUE(fs::is_directory(dir + "/logs"));
  std::vector<TrainerEvent> envs = EventsOfType("env");
  ASSERT_EQ(envs.size(), 2u);
  for (const TrainerEvent& e : envs) {
    EXPECT_EQ(e.Int("rank"), e.tag.rank);
    EXPECT_EQ(e.Int("local_rank"), e.tag.rank - 1);
    EXPECT_EQ(e.Int("world_size"), 3);
    EXPECT_EQ(e.Int("local_world_size"), 2);
    EXPECT_EQ(e.String("master_addr"), "10.1.2.3");
    EXPECT_EQ(e.Int("master_port"), 29605);
    EXPECT_EQ(e.String("job"), "job-7");
    EXPECT_EQ(e.Int("attempt"), 3);
    EXPECT_EQ(e.String("cwd"), dir);
    EXPECT_EQ(e.String("args"),
              absl::StrCat("tokenizer --config ", dir, "/config.yaml --output_dir ", dir, "/run"));
  }
}

TEST_F(WorkerAgentTest, RunningAttemptHoldsDevicesAndIsListedInHeartbeats) {
  WorkerAgent& agent = Start(R"(echo '{"event":"start"}'; exec sleep 1000)");
  v1::Assignment assignment = MakeAssignment("job-1", 1, {0, 1}, 2);
  assignment.mutable_spec()->mutable_devices_per_rank()->set_cpu_slots(2);
  QueueAssignment(assignment);
  Pump([&] { return PhaseIs("job-1", 1, "running"); });
  EXPECT_EQ(agent.free_devices().cpu_slots(), 0);
  Pump([&] { return HeartbeatCount() >= 3; });
  v1::HeartbeatRequest heartbeat = LastHeartbeat();
  EXPECT_EQ(heartbeat.free_devices().cpu_slots(), 0);
  ASSERT_EQ(heartbeat.running_size(), 1);
  EXPECT_EQ(heartbeat.running(0).job_id(), "job-1");
  EXPECT_EQ(heartbeat.running(0).attempt(), 1);
  EXPECT_THAT(heartbeat.running(0).ranks(), ElementsAre(0, 1));

  // No room for a second job: it fails at once, retryably, without touching the first.
  QueueAssignment(MakeAssignment("job-2", 1));
  v1::AttemptResult result = RunToResult("job-2", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_EQ(result.cause(), "launch");
  EXPECT_TRUE(result.retryable());
  EXPECT_THAT(result.reason(), HasSubstr("not enough free devices"));
  EXPECT_TRUE(PhaseIs("job-1", 1, "running"));
}

TEST_F(WorkerAgentTest, StepEventsBecomeMetricPointsAndOtherEventsTrainerEvents) {
  WorkerAgent& agent = Start(R"(
echo '{"event":"start","kind":"tokenizer","step":0}'
echo '{"event":"step","step":1,"epoch":0,"loss":0.5,"lr":0.001,"images_per_second":12.5,"codes_used":7,"perplexity":3.5,"precision":"fp32"}'
echo 'not json'
echo '{"event":"step","step":2,"loss":0.25}'
echo '{"event":"phase","name":"eval"}'
exec sleep 1000
)");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] {
    return Reports().size() >= 4 && absl::StrContains(LogText("job-1", 1, 0), "not json");
  });
  // The line that is not an event went to the rank's log, which is relayed too.
  EXPECT_EQ(LogText("job-1", 1, 0), "peco-worker: non-JSON stdout line: not json\n");

  std::vector<v1::ReportProgressRequest> reports = Reports();
  ASSERT_EQ(reports.size(), 4u);
  ASSERT_TRUE(reports[0].has_trainer_event());
  EXPECT_EQ(reports[0].trainer_event().type(), "start");
  EXPECT_EQ(reports[0].trainer_event().message(),
            R"({"event":"start","kind":"tokenizer","step":0})");
  ASSERT_TRUE(reports[1].has_metric_point());
  const v1::MetricPoint& point = reports[1].metric_point();
  EXPECT_EQ(point.job_id(), "job-1");
  EXPECT_EQ(point.attempt(), 1);
  EXPECT_EQ(point.rank(), 0);
  EXPECT_EQ(point.step(), 1);
  EXPECT_GT(point.time_us(), absl::ToUnixMicros(absl::UnixEpoch()));
  std::map<std::string, double> values(point.values().begin(), point.values().end());
  EXPECT_EQ(values, (std::map<std::string, double>{{"epoch", 0},
                                                   {"loss", 0.5},
                                                   {"lr", 0.001},
                                                   {"images_per_second", 12.5},
                                                   {"codes_used", 7},
                                                   {"perplexity", 3.5}}));
  EXPECT_EQ(reports[2].metric_point().step(), 2);
  ASSERT_TRUE(reports[3].has_trainer_event());
  EXPECT_EQ(reports[3].trainer_event().type(), "phase");
  EXPECT_EQ(reports[3].trainer_event().step(), 2);  // the rank's latest step

  const std::string text = MetricsText();
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_loss{job_id="job-1",rank="0"} 0.25)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_step{job_id="job-1",rank="0"} 2)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_perplexity{job_id="job-1",rank="0"} 3.5)"));
  EXPECT_THAT(text, HasSubstr("peco_worker_trainers_running 1"));

  // The attempt ends (stale): its per-rank gauges go.
  v1::HeartbeatResponse response;
  v1::RunningRanks* stale = response.add_stale();
  stale->set_job_id("job-1");
  stale->set_attempt(1);
  QueueResponse(response);
  Pump([&] { return agent.attempts().empty(); });
  EXPECT_THAT(MetricsText(), Not(HasSubstr(R"(job_id="job-1")")));
}

// The coordinator takes no points of an attempt that has ended, so the result waits for every
// buffered report of the attempt to be acknowledged.
TEST_F(WorkerAgentTest, ResultWaitsUntilTheAttemptsReportsAreAcknowledged) {
  WorkerAgent& agent = Start(R"(echo '{"event":"step","step":1,"loss":0.5}'
echo '{"event":"completed","step":1}')");
  {
    absl::MutexLock lock(&client_.mu());
    client_.report_error = absl::UnavailableError("answer lost");
  }
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return PhaseIs("job-1", 1, "finishing") && client_.report_calls >= 1; },
       absl::Milliseconds(100));
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Milliseconds(300));  // heartbeats due, the report retry (2 s) not
    agent.Tick();
    agent.TransferOnce();
  }
  EXPECT_THAT(Results(), IsEmpty()) << "the result went out before the reports";
  EXPECT_EQ(LastHeartbeat().running_size(), 1);
  {
    absl::MutexLock lock(&client_.mu());
    client_.report_error = absl::OkStatus();
  }
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED) << result.reason();
  absl::MutexLock lock(&client_.mu());
  bool step_reported = false;
  for (const v1::ReportProgressRequest& report : client_.reports) {
    step_reported |= report.has_metric_point() && report.metric_point().step() == 1;
  }
  EXPECT_TRUE(step_reported);
}

TEST_F(WorkerAgentTest, FinalCheckpointIsUploadedBeforeTheSucceededResult) {
  WorkerAgent& agent =
      Start(std::string(kWriteCheckpoint) + R"(echo '{"event":"completed","step":2}')");
  client_.upload_error = absl::UnavailableError("coordinator restarting");
  QueueAssignment(MakeAssignment("job-1", 1, {0, 1}, 2));

  // The trainers finish; uploads fail, so the result must wait.
  Pump([&] { return PhaseIs("job-1", 1, "finishing") && client_.upload_calls >= 1; },
       absl::Milliseconds(100));
  const size_t heartbeats = HeartbeatCount();
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Milliseconds(300));  // heartbeats due, the upload's 1 s backoff not
    agent.Tick();
    agent.TransferOnce();
  }
  EXPECT_GT(HeartbeatCount(), heartbeats);
  EXPECT_THAT(Results(), IsEmpty());
  EXPECT_EQ(LastHeartbeat().running_size(), 1);  // still listed until the result goes out
  EXPECT_EQ(agent.pending_uploads(), 1);
  // The trainer's retention removes the checkpoint; the outbox's links keep its bytes.
  const std::string original = AttemptDir("job-1", 1) + "/run/checkpoints/step-000000000002";
  ASSERT_TRUE(fs::exists(original + "/model.pt"));
  fs::remove_all(original);

  client_.upload_error = absl::OkStatus();
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED) << result.reason();
  EXPECT_EQ(result.last_step(), -1);  // no step events, only the checkpoint
  absl::MutexLock lock(&client_.mu());
  ASSERT_EQ(client_.uploads.size(), 1u);  // rank 1's checkpoint event is not uploaded
  const FakeCoordinatorClient::Upload& upload = client_.uploads[0];
  EXPECT_EQ(upload.header.job_id(), "job-1");
  EXPECT_EQ(upload.header.attempt(), 1);
  EXPECT_EQ(upload.header.rank(), 0);
  EXPECT_EQ(upload.header.step(), 2);
  EXPECT_TRUE(upload.header.final());
  EXPECT_EQ(
      upload.files,
      (std::map<std::string, std::string>{
          {"empty.bin", ""}, {"model.pt", "weights-0"}, {"trainer_state.json", R"({"step":2})"}}));
  EXPECT_THAT(upload.manifest, HasSubstr(" 9 model.pt\n"));
  EXPECT_LT(upload.heartbeats_before, client_.heartbeats_ok);  // the result came after it
  EXPECT_TRUE(fs::is_empty(temp_.path() + "/outbox"));
}

TEST_F(WorkerAgentTest, StaleUploadIsDroppedAndTheResultStillReported) {
  WorkerAgent& agent =
      Start(std::string(kWriteCheckpoint) + R"(echo '{"event":"completed","step":2}')");
  client_.upload_errors = {absl::FailedPreconditionError("attempt 1 is stale")};
  QueueAssignment(MakeAssignment("job-1", 1));
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED);
  EXPECT_EQ(client_.upload_calls, 1);  // not retried
  EXPECT_EQ(agent.pending_uploads(), 0);
  EXPECT_THAT(MetricsText(),
              HasSubstr(R"(peco_worker_checkpoint_uploads_total{result="dropped"} 1)"));
}

TEST_F(WorkerAgentTest, IdsFromTheNetworkThatAreNotPlainNamesNeverNameADirectory) {
  Start("exit 0");
  const std::string outside = temp_.path() + "/../keep-" + std::to_string(::getpid());
  ASSERT_TRUE(std::filesystem::create_directories(outside));
  struct Case {
    std::string checkpoint_id;
    std::string field;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"../../keep-" + std::to_string(::getpid()), "tokenizer.checkpoint", "invalid checkpoint id"},
      {"..", "backbone.checkpoint", "invalid checkpoint id"},
      {"ck-1", "x=y --set other", "invalid input config field"},
  };
  int64_t attempt = 1;
  for (const Case& c : cases) {
    v1::Assignment assignment = MakeAssignment("job-1", attempt);
    v1::InputCheckpoint* input = assignment.add_inputs();
    input->set_checkpoint_id(c.checkpoint_id);
    input->set_config_field(c.field);
    QueueAssignment(assignment);
    v1::AttemptResult result = RunToResult("job-1", attempt);
    EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED) << c.checkpoint_id;
    EXPECT_FALSE(result.retryable());
    EXPECT_EQ(result.cause(), "launch");
    EXPECT_THAT(result.reason(), HasSubstr(c.expected));
    ++attempt;
  }
  {
    absl::MutexLock lock(&client_.mu());
    EXPECT_TRUE(client_.fetches.empty());  // nothing was fetched, nothing removed
  }
  EXPECT_TRUE(std::filesystem::exists(outside));
  std::filesystem::remove_all(outside);
}

TEST_F(WorkerAgentTest, AnUploadThatKeepsTimingOutIsDroppedAfterItsTriesAndTheResultGoesOut) {
  WorkerAgentOptions options =
      Options(std::string(kWriteCheckpoint) + R"(echo '{"event":"completed","step":2}')");
  options.upload_max_tries = 3;
  WorkerAgent& agent = Start(options);
  client_.upload_error = absl::DeadlineExceededError("transfer timed out");
  QueueAssignment(MakeAssignment("job-1", 1));
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(client_.upload_calls, 3);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_TRUE(result.retryable());
  EXPECT_EQ(result.cause(), "upload");
  EXPECT_THAT(result.reason(), HasSubstr("could not be uploaded in 3 tries"));
  EXPECT_EQ(agent.pending_uploads(), 0);
}

TEST_F(WorkerAgentTest, AFinalCheckpointRefusedForGoodFailsTheAttemptRetryably) {
  WorkerAgent& agent =
      Start(std::string(kWriteCheckpoint) + R"(echo '{"event":"completed","step":2}')");
  client_.upload_errors = {absl::DataLossError("model.pt does not match its SHA-256")};
  QueueAssignment(MakeAssignment("job-1", 1));
  v1::AttemptResult result = RunToResult("job-1", 1);
  // The trainer succeeded, but its dependents would silently read an older checkpoint.
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_TRUE(result.retryable());
  EXPECT_EQ(result.cause(), "upload");
  EXPECT_THAT(result.reason(), HasSubstr("the final checkpoint at step 2 was refused"));
  EXPECT_THAT(result.reason(), HasSubstr("SHA-256"));
  EXPECT_EQ(client_.upload_calls, 1);
  EXPECT_EQ(agent.pending_uploads(), 0);
}

struct ExitCase {
  std::string script;
  std::string cause;
  bool retryable;
  std::string reason;
};
void PrintTo(const ExitCase& c, std::ostream* os) { *os << c.cause << ": " << c.reason; }

class ExitCauseTest : public WorkerAgentTest, public ::testing::WithParamInterface<ExitCase> {};

TEST_P(ExitCauseTest, FailedResultIsClassified) {
  WorkerAgentOptions options = Options(GetParam().script);
  if (GetParam().cause == "launch") options.trainer_command = {"/nonexistent/peco-train"};
  Start(options);
  QueueAssignment(MakeAssignment("job-1", 1));
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_EQ(result.cause(), GetParam().cause);
  EXPECT_EQ(result.retryable(), GetParam().retryable) << result.reason();
  EXPECT_THAT(result.reason(), HasSubstr(GetParam().reason));
  EXPECT_THAT(MetricsText(), HasSubstr(absl::StrCat("peco_worker_trainer_exits_total{cause=\"",
                                                    GetParam().cause, "\"} 1")));
}

INSTANTIATE_TEST_SUITE_P(
    Causes, ExitCauseTest,
    ::testing::Values(
        ExitCase{R"(echo '{"event":"step","step":4}'; exit 1)", "exit", true, "exit code 1"},
        ExitCase{R"(echo '{"event":"error","message":"model.x: unknown field"}'; exit 2)", "exit",
                 false, "invalid configuration): model.x: unknown field"},
        ExitCase{"kill -SEGV $$", "signal", true, "signal 11"},
        ExitCase{"kill -KILL $$", "oom", true, "out-of-memory"},
        ExitCase{"", "launch", true, "launching rank 0"}));

TEST_F(WorkerAgentTest, LastStepIsTheHighestStepReported) {
  Start(R"(echo '{"event":"step","step":4}'; echo '{"event":"step","step":5}'; exit 1)");
  QueueAssignment(MakeAssignment("job-1", 1));
  EXPECT_EQ(RunToResult("job-1", 1).last_step(), 5);
}

TEST_F(WorkerAgentTest, StalledTrainerIsKilledAndReportedAsStall) {
  WorkerAgentOptions options = Options(R"(echo '{"event":"step","step":1}'; exec sleep 1000)");
  options.stall_timeout_floor = absl::Minutes(5);
  Start(options);
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return Reports().size() >= 1; }, absl::ZeroDuration());
  clock_.Advance(absl::Minutes(5) + absl::Seconds(1));
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.cause(), "stall");
  EXPECT_TRUE(result.retryable());
  EXPECT_THAT(result.reason(), HasSubstr("rank 0 stalled"));
}

constexpr char kStopsOnSigterm[] = R"(
trap 'echo "{\"event\":\"stopped\",\"step\":3}"; exit 0' TERM
echo '{"event":"step","step":3}'
sleep 1000 &
wait
)";

TEST_F(WorkerAgentTest, CancellationStopsTrainersGracefully) {
  Start(kStopsOnSigterm);
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return Reports().size() >= 1; }, absl::ZeroDuration());
  v1::HeartbeatResponse response;
  v1::Cancellation* cancellation = response.add_cancellations();
  cancellation->set_job_id("job-1");
  cancellation->set_attempt(1);
  cancellation->set_deadline_ms(30000);
  QueueResponse(response);
  v1::AttemptResult result = RunToResult("job-1", 1);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_STOPPED) << result.reason();
  EXPECT_EQ(result.cause(), "cancel");
  EXPECT_FALSE(result.retryable());
  EXPECT_EQ(result.last_step(), 3);
}

TEST_F(WorkerAgentTest, CancellationKillsATrainerThatIgnoresSigtermAfterTheDeadline) {
  Start(R"(trap '' TERM; echo '{"event":"start"}'; exec sleep 1000)");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return Reports().size() >= 1; }, absl::ZeroDuration());
  v1::HeartbeatResponse response;
  v1::Cancellation* cancellation = response.add_cancellations();
  cancellation->set_job_id("job-1");
  cancellation->set_attempt(1);
  cancellation->set_deadline_ms(30000);
  QueueResponse(response);
  Pump([&] { return HeartbeatCount() >= 3; });  // the cancellation arrived; 1 s per tick
  EXPECT_TRUE(PhaseIs("job-1", 1, "running"));
  v1::AttemptResult result = RunToResult("job-1", 1);  // the pump moves past the deadline
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_EQ(result.cause(), "cancel");
  EXPECT_FALSE(result.retryable());
  EXPECT_THAT(result.reason(), HasSubstr("grace period"));
}

TEST_F(WorkerAgentTest, StaleAttemptIsKilledAtOnceAndReportsNothing) {
  WorkerAgent& agent = Start(R"(echo '{"event":"start"}'; exec sleep 1000)");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return Reports().size() >= 1; }, absl::ZeroDuration());
  EXPECT_EQ(agent.free_devices().cpu_slots(), 3);
  client_.report_error = absl::UnavailableError("hold reports back");
  v1::HeartbeatResponse response;
  v1::RunningRanks* stale = response.add_stale();
  stale->set_job_id("job-1");
  stale->set_attempt(1);
  QueueResponse(response);
  Pump([&] { return agent.attempts().empty(); });
  EXPECT_EQ(agent.free_devices().cpu_slots(), 4);
  EXPECT_EQ(agent.buffered_reports(), 0u);  // its exit events were dropped too
  client_.report_error = absl::OkStatus();
  const size_t heartbeats = HeartbeatCount();
  Pump([&] { return HeartbeatCount() >= heartbeats + 2; });
  EXPECT_THAT(Results(), IsEmpty());
  EXPECT_EQ(LastHeartbeat().running_size(), 0);
  EXPECT_THAT(LogText(), HasSubstr("killed stale job job-1 attempt 1"));
}

TEST_F(WorkerAgentTest, StaleEntriesInTheRegisterResponseAreKilled) {
  WorkerAgent& agent = Start(R"(echo '{"event":"start"}'; exec sleep 1000)");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return PhaseIs("job-1", 1, "running"); });
  {
    absl::MutexLock lock(&client_.mu());
    client_.heartbeat_errors = {absl::NotFoundError("unknown worker")};
    v1::RunningRanks* stale = client_.register_stale.Add();
    stale->set_job_id("job-1");
    stale->set_attempt(1);
  }
  Pump([&] { return agent.attempts().empty(); });
  absl::MutexLock lock(&client_.mu());
  EXPECT_EQ(client_.registers.back().running_size(), 1);
}

TEST_F(WorkerAgentTest, NotFoundHeartbeatRegistersAgainWithRunningAttempts) {
  WorkerAgent& agent = Start(R"(echo '{"event":"start"}'; exec sleep 1000)");
  QueueAssignment(MakeAssignment("job-1", 4, {0, 2}, 3));
  Pump([&] { return PhaseIs("job-1", 4, "running"); });
  {
    absl::MutexLock lock(&client_.mu());
    client_.heartbeat_errors = {absl::NotFoundError("unknown worker worker-1")};
  }
  Pump([&] { return client_.registers.size() >= 2 && agent.registered(); });
  absl::MutexLock lock(&client_.mu());
  const v1::RegisterRequest& again = client_.registers.back();
  EXPECT_EQ(again.worker().id(), agent.worker_id());
  ASSERT_EQ(again.running_size(), 1);
  EXPECT_EQ(again.running(0).job_id(), "job-1");
  EXPECT_EQ(again.running(0).attempt(), 4);
  EXPECT_THAT(again.running(0).ranks(), ElementsAre(0, 2));
  EXPECT_TRUE(PhaseIs("job-1", 4, "running"));  // the trainers never stopped
}

TEST_F(WorkerAgentTest, UnreachableCoordinatorBuffersReportsAndResendsThemLater) {
  WorkerAgent& agent = Start(R"(
echo '{"event":"step","step":1,"loss":3}'
echo '{"event":"step","step":2,"loss":2}'
echo '{"event":"step","step":3,"loss":1}'
exec sleep 1000
)");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return PhaseIs("job-1", 1, "running"); });
  client_.report_error = absl::UnavailableError("connection refused");
  client_.heartbeat_error = absl::UnavailableError("connection refused");
  Pump([&] { return agent.buffered_reports() >= 3; });
  Pump([&] { return client_.report_calls >= 3; });  // retried, still failing
  EXPECT_THAT(Reports(), IsEmpty());
  EXPECT_THAT(MetricsText(), HasSubstr("peco_worker_reports_buffered 3"));
  EXPECT_THAT(MetricsText(), HasSubstr(R"(peco_worker_heartbeats_total{result="error"})"));
  EXPECT_TRUE(PhaseIs("job-1", 1, "running"));  // trainers keep running

  client_.report_error = absl::OkStatus();
  client_.heartbeat_error = absl::OkStatus();
  Pump([&] { return agent.buffered_reports() == 0; });
  std::vector<int64_t> steps;
  for (const auto& report : Reports()) steps.push_back(report.metric_point().step());
  EXPECT_THAT(steps, ElementsAre(1, 2, 3));
}

TEST_F(WorkerAgentTest, ResultIsRepeatedUntilAHeartbeatSucceeds) {
  Start("echo '{\"event\":\"completed\",\"step\":0}'");
  QueueAssignment(MakeAssignment("job-1", 1));
  agent_->Tick();  // registers and takes the assignment
  ASSERT_TRUE(PhaseIs("job-1", 1, "running"));
  client_.heartbeat_error = absl::UnavailableError("down");
  Pump([&] { return PhaseIs("job-1", 1, "done"); });
  const size_t before = HeartbeatCount();
  Pump([&] { return HeartbeatCount() >= before + 2; });
  {
    absl::MutexLock lock(&client_.mu());
    for (size_t i = before; i < client_.heartbeats.size(); ++i) {
      ASSERT_EQ(client_.heartbeats[i].finished_size(), 1);
      EXPECT_EQ(client_.heartbeats[i].running_size(), 0);
    }
  }
  client_.heartbeat_error = absl::OkStatus();
  RunToResult("job-1", 1);
  const size_t after = HeartbeatCount();
  Pump([&] { return HeartbeatCount() >= after + 1; });
  EXPECT_EQ(LastHeartbeat().finished_size(), 0);  // delivered once is enough
  EXPECT_EQ(Results().size(), 1u);
  EXPECT_TRUE(agent_->attempts().empty());
}

TEST_F(WorkerAgentTest, ResumeFetchesTheCheckpointThenPassesResume) {
  WorkerAgent& agent = Start(std::string(kPrintEnv) + R"(echo '{"event":"completed","step":0}')");
  client_.checkpoints["job-1-a1-step-000000000002"] = {{"model.pt", "weights"},
                                                       {"trainer_state.json", "{}"}};
  v1::Assignment assignment = MakeAssignment("job-1", 2);
  assignment.set_resume_checkpoint_id("job-1-a1-step-000000000002");
  QueueAssignment(assignment);
  agent.Tick();  // registers, heartbeats, takes the assignment
  EXPECT_TRUE(PhaseIs("job-1", 2, "fetching"));
  agent.Tick();
  EXPECT_TRUE(PhaseIs("job-1", 2, "fetching"));  // only the transfer loop fetches
  EXPECT_THAT(EventsOfType("env"), IsEmpty());

  v1::AttemptResult result = RunToResult("job-1", 2);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED) << result.reason();
  const std::string resume = AttemptDir("job-1", 2) + "/resume";
  {
    absl::MutexLock lock(&client_.mu());
    ASSERT_EQ(client_.fetches.size(), 1u);
    EXPECT_EQ(client_.fetches[0].checkpoint_id, "job-1-a1-step-000000000002");
    EXPECT_EQ(client_.fetches[0].worker_id, agent.worker_id());
    EXPECT_EQ(client_.fetches[0].dest, resume);
  }
  EXPECT_EQ(ReadFileForTest(resume + "/model.pt"), "weights");
  EXPECT_THAT(ReadFileForTest(resume + "/MANIFEST"), HasSubstr(" 7 model.pt\n"));
  std::vector<TrainerEvent> envs = EventsOfType("env");
  ASSERT_EQ(envs.size(), 1u);
  EXPECT_THAT(envs[0].String("args").value_or(""), HasSubstr("--resume " + resume));
}

TEST_F(WorkerAgentTest, DependencyInputsAreFetchedAndPassedAsConfigOverrides) {
  WorkerAgent& agent = Start(std::string(kPrintEnv) + R"(echo '{"event":"completed","step":0}')");
  client_.checkpoints["job-0-a1-step-000000000300"] = {{"model.pt", "tokenizer"}};
  client_.checkpoints["job-1-a1-step-000000000002"] = {{"model.pt", "weights"}};
  v1::Assignment assignment = MakeAssignment("job-1", 2);
  assignment.set_resume_checkpoint_id("job-1-a1-step-000000000002");
  v1::InputCheckpoint* input = assignment.add_inputs();
  input->set_checkpoint_id("job-0-a1-step-000000000300");
  input->set_config_field("tokenizer.checkpoint");
  QueueAssignment(assignment);
  agent.Tick();
  EXPECT_TRUE(PhaseIs("job-1", 2, "fetching"));

  v1::AttemptResult result = RunToResult("job-1", 2);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_SUCCEEDED) << result.reason();
  const std::string dir = AttemptDir("job-1", 2);
  const std::string tokenizer = dir + "/inputs/job-0-a1-step-000000000300";
  EXPECT_EQ(ReadFileForTest(tokenizer + "/model.pt"), "tokenizer");
  EXPECT_EQ(ReadFileForTest(dir + "/resume/model.pt"), "weights");
  std::vector<TrainerEvent> envs = EventsOfType("env");
  ASSERT_EQ(envs.size(), 1u);
  const std::string args = envs[0].String("args").value_or("");
  EXPECT_THAT(args, HasSubstr("--resume " + dir + "/resume"));
  EXPECT_THAT(args, HasSubstr("--set tokenizer.checkpoint=" + tokenizer));
}

TEST_F(WorkerAgentTest, ResumeFetchFailureFailsTheAttemptRetryably) {
  Start("exit 0");
  v1::Assignment assignment = MakeAssignment("job-1", 2);
  assignment.set_resume_checkpoint_id("missing");
  QueueAssignment(assignment);
  v1::AttemptResult result = RunToResult("job-1", 2);
  EXPECT_EQ(result.result(), v1::AttemptResult::RESULT_FAILED);
  EXPECT_EQ(result.cause(), "launch");
  EXPECT_TRUE(result.retryable());
  EXPECT_THAT(result.reason(), HasSubstr("fetching checkpoint missing"));
  EXPECT_EQ(agent_->free_devices().cpu_slots(), 4);
}

TEST_F(WorkerAgentTest, ShutdownStopsTrainersUploadsTheFinalCheckpointAndStopsHeartbeats) {
  WorkerAgent& agent = Start(std::string(R"(
trap 'stop=1' TERM
echo '{"event":"step","step":1}'
while [ -z "$stop" ]; do sleep 0.01; done
)") + kWriteCheckpoint + R"(echo '{"event":"stopped","step":2}')");
  QueueAssignment(MakeAssignment("job-1", 1));
  Pump([&] { return Reports().size() >= 1; }, absl::ZeroDuration());
  const size_t heartbeats = HeartbeatCount();
  agent.BeginShutdown(absl::Minutes(1));
  EXPECT_FALSE(agent.ShutdownComplete());
  Pump([&] { return agent.ShutdownComplete(); }, absl::Milliseconds(100));
  EXPECT_EQ(HeartbeatCount(), heartbeats);
  absl::MutexLock lock(&client_.mu());
  ASSERT_EQ(client_.uploads.size(), 1u);
  EXPECT_TRUE(client_.uploads[0].header.final());
  // Its "stopped" event reached the coordinator before the worker called it done.
  bool stopped = false;
  for (const auto& report : client_.reports) {
    stopped = stopped || report.trainer_event().type() == "stopped";
  }
  EXPECT_TRUE(stopped);
}

TEST(WorkerAgentOptionsTest, ValidateNamesTheBadField) {
  WorkerAgentOptions good;
  good.work_dir = "/tmp/w";
  EXPECT_TRUE(good.Validate().ok());
  auto expect_bad = [&](auto mutate, const std::string& field) {
    WorkerAgentOptions o = good;
    mutate(o);
    absl::Status s = o.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.message(), HasSubstr(field));
  };
  expect_bad([](auto& o) { o.work_dir = ""; }, "work_dir");
  expect_bad([](auto& o) { o.worker_id = "a/b"; }, "worker_id");
  expect_bad([](auto& o) { o.cpu_slots = 0; }, "cpu_slots");
  expect_bad([](auto& o) { o.gpus = -1; }, "gpus");
  expect_bad([](auto& o) { o.first_port = 0; }, "first_port");
  expect_bad([](auto& o) { o.last_port = 100; }, "last_port");
  expect_bad([](auto& o) { o.trainer_command = {}; }, "trainer_command");
  expect_bad([](auto& o) { o.report_batch_size = 0; }, "report_batch_size");
  expect_bad([](auto& o) { o.stall_timeout_factor = 0.5; }, "stall_timeout_factor");
}

}  // namespace
}  // namespace peco::worker
