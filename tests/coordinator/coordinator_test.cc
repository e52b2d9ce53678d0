// The Coordinator core driven like a cluster would drive it: workers register and heartbeat,
// trainers report and upload checkpoints, a FakeClock stands in for time. No gRPC, no sleeps.
#include "coordinator/coordinator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_log_store.h"
#include "coordinator/job_streams.h"
#include "coordinator/memory_job_store.h"
#include "prometheus/metric_family.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Accepts every config, or refuses with a fixed error, and counts calls.
class FakeValidator : public SpecValidator {
 public:
  absl::Status Validate(const v1::JobSpec& spec,
                        const std::vector<std::string>& input_fields) override {
    ++calls;
    last_input_fields = input_fields;
    return verdict;
  }
  absl::Status verdict = absl::OkStatus();
  int calls = 0;
  std::vector<std::string> last_input_fields;
};

v1::JobSpec Spec(const std::string& name, int world_size = 1, int cpu_slots = 1) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_TOKENIZER);
  spec.set_name(name);
  spec.set_config_yaml("kind: tokenizer\n");
  spec.set_world_size(world_size);
  spec.mutable_devices_per_rank()->set_cpu_slots(cpu_slots);
  return spec;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  CoordinatorTest() {
    options_.heartbeat_interval = absl::Seconds(1);
    options_.worker_timeout = absl::Seconds(10);
    options_.cancel_grace = absl::Seconds(30);
    options_.keep_checkpoints = 2;
    options_.default_max_restarts = 2;
    Start();
  }

  // (Re)creates the coordinator over the same job store and data directory, as a restarted
  // daemon does. The store is the in-memory one, kept across restarts as the database file is
  // (SqliteJobStore's durability and the contract both stores keep are tested in
  // job_store_test).
  void Start() {
    coordinator_.reset();
    checkpoints_.reset();
    if (store_ == nullptr) store_ = std::make_unique<MemoryJobStore>();
    CheckpointFileStore::Options checkpoint_options;
    checkpoint_options.data_dir = temp_.path();
    checkpoints_ = *CheckpointFileStore::Open(checkpoint_options);
    events_ = std::make_unique<JobEventHub>();
    metrics_ = std::make_unique<CoordinatorMetrics>();
    coordinator_ =
        std::make_unique<Coordinator>(options_, store_.get(), checkpoints_.get(), &validator_,
                                      &clock_, events_.get(), metrics_.get());
    ASSERT_TRUE(coordinator_->Recover().ok());
  }

  std::string RegisterWorker(const std::string& id, int cpu_slots = 2,
                             std::vector<v1::RunningRanks> running = {}) {
    v1::RegisterRequest request;
    request.mutable_worker()->set_id(id);
    request.mutable_worker()->set_host("127.0.0.1");
    request.mutable_worker()->mutable_devices()->set_cpu_slots(cpu_slots);
    request.mutable_worker()->mutable_ports()->set_first(29500);
    request.mutable_worker()->mutable_ports()->set_last(29509);
    for (v1::RunningRanks& r : running) *request.add_running() = r;
    absl::StatusOr<v1::RegisterResponse> response = coordinator_->Register(request);
    EXPECT_TRUE(response.ok()) << response.status();
    last_register_ = response.ok() ? *response : v1::RegisterResponse();
    return response.ok() ? response->worker_id() : "";
  }

  v1::Job Submit(const v1::JobSpec& spec, const std::string& request_id = "") {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    request.set_client_request_id(request_id);
    absl::StatusOr<v1::SubmitJobResponse> response = coordinator_->SubmitJob(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? response->job() : v1::Job();
  }

  v1::Job Job(const std::string& id) { return *store_->GetJob(id); }

  // The peco_jobs gauge by its state label.
  std::map<std::string, double> JobsGauge() const {
    std::map<std::string, double> gauge;
    for (const prometheus::MetricFamily& family : metrics_->registry()->Collect()) {
      if (family.name != "peco_jobs") continue;
      for (const prometheus::ClientMetric& metric : family.metric) {
        gauge[metric.label.at(0).value] = metric.gauge.value;
      }
    }
    return gauge;
  }

  static v1::RunningRanks Running(const std::string& job_id, int64_t attempt) {
    v1::RunningRanks running;
    running.set_job_id(job_id);
    running.set_attempt(attempt);
    running.add_ranks(0);
    return running;
  }

  v1::HeartbeatResponse Heartbeat(const std::string& worker_id,
                                  std::vector<v1::RunningRanks> running = {},
                                  std::vector<v1::AttemptResult> finished = {}) {
    v1::HeartbeatRequest request;
    request.set_worker_id(worker_id);
    for (v1::RunningRanks& r : running) *request.add_running() = r;
    for (v1::AttemptResult& f : finished) *request.add_finished() = f;
    absl::StatusOr<v1::HeartbeatResponse> response = coordinator_->Heartbeat(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : v1::HeartbeatResponse();
  }

  static v1::AttemptResult Result(const std::string& job_id, int64_t attempt,
                                  v1::AttemptResult::Result result, bool retryable = false,
                                  const std::string& reason = "") {
    v1::AttemptResult out;
    out.set_job_id(job_id);
    out.set_attempt(attempt);
    out.set_result(result);
    out.set_retryable(retryable);
    out.set_reason(reason);
    return out;
  }

  static v1::ReportProgressRequest Point(const std::string& job_id, int64_t attempt, int64_t step,
                                         double loss) {
    v1::ReportProgressRequest report;
    v1::MetricPoint* point = report.mutable_metric_point();
    point->set_job_id(job_id);
    point->set_attempt(attempt);
    point->set_step(step);
    (*point->mutable_values())["loss"] = loss;
    return report;
  }

  // Uploads a one-file checkpoint through the core; returns the result of the commit.
  absl::StatusOr<v1::CheckpointInfo> Upload(const std::string& job_id, int64_t attempt,
                                            int64_t step, bool final = false,
                                            bool corrupt_digest = false) {
    v1::CheckpointHeader header;
    header.set_job_id(job_id);
    header.set_attempt(attempt);
    header.set_step(step);
    header.set_final(final);
    absl::StatusOr<CheckpointUpload> upload = coordinator_->BeginCheckpointUpload(header);
    if (!upload.ok()) return upload.status();
    const std::string data = absl::StrCat("weights at step ", step);
    v1::CheckpointChunk chunk;
    chunk.set_file_name("model.pt");
    chunk.set_data(data);
    absl::Status appended = coordinator_->AppendCheckpointChunk(*upload, chunk);
    if (!appended.ok()) return appended;
    v1::CheckpointManifest manifest;
    v1::ManifestEntry* entry = manifest.add_entries();
    entry->set_name("model.pt");
    entry->set_size(static_cast<int64_t>(data.size()));
    entry->set_sha256(corrupt_digest ? Sha256Hex("something else") : Sha256Hex(data));
    return coordinator_->CommitCheckpointUpload(*upload, manifest);
  }

  // Submits a tokenizer job and a pretrain job that depends on it; returns both.
  std::pair<v1::Job, v1::Job> SubmitTokenizerThenPretrain() {
    v1::Job tokenizer = Submit(Spec("tokenizer"));
    v1::JobSpec pretrain = Spec("pretrain");
    pretrain.set_kind(v1::JOB_KIND_PRETRAIN);
    pretrain.mutable_depends_on()->set_job_id(tokenizer.id());
    return {tokenizer, Submit(pretrain)};
  }

  ::peco::testing::ScopedTempDir temp_{"coordinator_test"};
  CoordinatorOptions options_;
  FakeClock clock_;
  FakeValidator validator_;
  std::unique_ptr<MemoryJobStore> store_;
  std::unique_ptr<CheckpointFileStore> checkpoints_;
  std::unique_ptr<JobEventHub> events_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
  v1::RegisterResponse last_register_;
};

// The watch stream's core without a transport: the history once, live events after it with a
// metric point never sent twice, the end at the terminal state, and a client that goes away
// (the sink refuses) ending it without an error. An unknown job is NotFound.
TEST_F(CoordinatorTest, WatchStreamsHistoryThenLiveEventsOnceEach) {
  const std::string worker = RegisterWorker("w1");
  v1::Job job = Submit(Spec("watched"));
  Heartbeat(worker, {Running(job.id(), 1)});
  ASSERT_TRUE(coordinator_->ReportProgress({Point(job.id(), 1, 10, 0.5)}).ok());
  v1::WatchJobRequest request;
  request.set_job_id(job.id());
  request.set_include_history(true);
  std::vector<v1::WatchJobEvent> seen;
  std::thread watcher([&] {
    absl::Status status = WatchJobEvents(
        *coordinator_, *events_, request,
        [&](const v1::WatchJobEvent& event) {
          seen.push_back(event);
          return true;
        },
        [] { return false; });
    EXPECT_TRUE(status.ok()) << status;
  });
  // The same point again (a resent report), a new one, then the end.
  ASSERT_TRUE(coordinator_->ReportProgress({Point(job.id(), 1, 10, 0.5)}).ok());
  ASSERT_TRUE(coordinator_->ReportProgress({Point(job.id(), 1, 20, 0.4)}).ok());
  ASSERT_TRUE(Upload(job.id(), 1, 20, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  watcher.join();
  std::vector<int64_t> steps;
  for (const v1::WatchJobEvent& event : seen) {
    if (event.has_metric_point()) steps.push_back(event.metric_point().step());
  }
  EXPECT_THAT(steps, ElementsAre(10, 20));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back().state_change().state(), v1::JOB_STATE_SUCCEEDED);

  int sent = 0;
  EXPECT_TRUE(WatchJobEvents(
                  *coordinator_, *events_, request,
                  [&](const v1::WatchJobEvent&) { return ++sent < 2; }, [] { return false; })
                  .ok());
  EXPECT_EQ(sent, 2) << "the stream stops at the first refused event";
  request.set_job_id("job-999999");
  EXPECT_EQ(WatchJobEvents(
                *coordinator_, *events_, request, [](const v1::WatchJobEvent&) { return true; },
                [] { return false; })
                .code(),
            absl::StatusCode::kNotFound);
}

// The log stream's core without a transport: only the asked attempt and ranks, each log from
// its start in pieces no larger than asked, whole; a client that goes away ends it Cancelled;
// an unknown job is NotFound.
TEST_F(CoordinatorTest, LogStreamSendsTheAskedLogsInBoundedPieces) {
  JobLogStoreOptions options;
  options.dir = temp_.path() + "/logs";
  absl::StatusOr<std::unique_ptr<JobLogStore>> logs = JobLogStore::Open(options);
  ASSERT_TRUE(logs.ok()) << logs.status();
  v1::Job job = Submit(Spec("logged"));
  auto append = [&](int64_t attempt, int32_t rank, const std::string& data) {
    v1::LogChunk chunk;
    chunk.set_job_id(job.id());
    chunk.set_attempt(attempt);
    chunk.set_rank(rank);
    chunk.set_data(data);
    ASSERT_TRUE((*logs)->Append(chunk).ok());
  };
  append(1, 0, "attempt one, rank zero\n");
  append(1, 1, "attempt one, rank one: a longer line of the log\n");
  append(2, 1, "attempt two\n");
  v1::StreamLogsRequest request;
  request.set_job_id(job.id());
  request.set_attempt(1);
  request.add_ranks(1);
  std::string received;
  int pieces = 0;
  absl::Status status = FollowJobLogs(
      *coordinator_, **logs, request, /*piece_bytes=*/8,
      [&](v1::StreamLogsResponse piece) {
        EXPECT_EQ(piece.attempt(), 1);
        EXPECT_EQ(piece.rank(), 1);
        EXPECT_LE(piece.data().size(), 8u);
        received += piece.data();
        ++pieces;
        return true;
      },
      [] { return false; });
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(received, "attempt one, rank one: a longer line of the log\n");
  EXPECT_EQ(pieces, (static_cast<int>(received.size()) + 7) / 8);

  status = FollowJobLogs(
      *coordinator_, **logs, request, 8, [](v1::StreamLogsResponse) { return false; },
      [] { return false; });
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled);
  request.set_job_id("job-999999");
  status = FollowJobLogs(
      *coordinator_, **logs, request, 8, [](v1::StreamLogsResponse) { return true; },
      [] { return false; });
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, JobRunsToSuccessThroughHeartbeats) {
  const std::string worker = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  EXPECT_EQ(job.state(), v1::JOB_STATE_ASSIGNED) << "placed at submit on the idle worker";

  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  const v1::Assignment& assignment = beat.assignments(0);
  EXPECT_EQ(assignment.job_id(), job.id());
  EXPECT_EQ(assignment.attempt(), 1);
  EXPECT_THAT(assignment.ranks(), ElementsAre(0));
  EXPECT_EQ(assignment.master_port(), 29500);
  EXPECT_EQ(assignment.resume_checkpoint_id(), "");

  beat = Heartbeat(worker, {Running(job.id(), 1)});
  EXPECT_THAT(beat.assignments(), IsEmpty()) << "a running attempt is not sent again";
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_RUNNING);

  v1::ReportProgressRequest start;
  start.mutable_trainer_event()->set_job_id(job.id());
  start.mutable_trainer_event()->set_attempt(1);
  start.mutable_trainer_event()->set_type("start");
  start.mutable_trainer_event()->set_message(R"({"event":"start","step":0,"max_steps":20})");
  ASSERT_TRUE(coordinator_->ReportProgress({start, Point(job.id(), 1, 10, 0.5)}).ok());
  v1::GetJobRequest get;
  get.set_job_id(job.id());
  absl::StatusOr<v1::GetJobResponse> got = coordinator_->GetJob(get);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->job().progress().step(), 10);
  EXPECT_EQ(got->job().progress().max_steps(), 20);
  EXPECT_DOUBLE_EQ(got->job().progress().loss(), 0.5);
  EXPECT_TRUE(got->job().progress().eval().empty());
  // An evaluation's values are kept as the job's latest evaluation.
  v1::ReportProgressRequest eval = Point(job.id(), 1, 20, 0.4);
  (*eval.mutable_metric_point()->mutable_values())["eval_top1"] = 81.5;
  ASSERT_TRUE(coordinator_->ReportProgress({eval}).ok());
  ASSERT_TRUE(Upload(job.id(), 1, 20, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
  // peco_jobs{state} followed the job through ASSIGNED and RUNNING to SUCCEEDED.
  for (const auto& [state, count] : JobsGauge()) {
    EXPECT_EQ(count, state == "succeeded" ? 1 : 0) << "peco_jobs{state=\"" << state << "\"}";
  }

  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = coordinator_->JobHistory(job.id());
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->back().state_change().state(), v1::JOB_STATE_SUCCEEDED);
  int points = 0;
  for (const v1::WatchJobEvent& event : *history) points += event.has_metric_point();
  EXPECT_EQ(points, 2);

  // The result survives a restart of the coordinator.
  Start();
  got = coordinator_->GetJob(get);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->job().progress().step(), 20);
  EXPECT_DOUBLE_EQ(got->job().progress().eval().at("eval_top1"), 81.5);
}

// The progress of ended jobs is cached for the newest max_cached_ended_progress only; an
// older job's progress is read back from the store by GetJob.
TEST_F(CoordinatorTest, ProgressOfEndedJobsIsCachedBoundedAndReadBackFromTheStore) {
  options_.max_cached_ended_progress = 1;
  Start();
  const std::string worker = RegisterWorker("w1", /*cpu_slots=*/2);
  const v1::Job first = Submit(Spec("first"));
  const v1::Job second = Submit(Spec("second"));
  Heartbeat(worker);
  Heartbeat(worker, {Running(first.id(), 1), Running(second.id(), 1)});
  ASSERT_TRUE(coordinator_->ReportProgress({Point(first.id(), 1, 7, 0.7)}).ok());
  ASSERT_TRUE(coordinator_->ReportProgress({Point(second.id(), 1, 9, 0.9)}).ok());
  Heartbeat(worker, {}, {Result(first.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  Heartbeat(worker, {}, {Result(second.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  ASSERT_EQ(Job(second.id()).state(), v1::JOB_STATE_SUCCEEDED);

  absl::StatusOr<v1::ListJobsResponse> listed = coordinator_->ListJobs(v1::ListJobsRequest());
  ASSERT_TRUE(listed.ok());
  std::map<std::string, int64_t> listed_steps;
  for (const v1::Job& job : listed->jobs()) listed_steps[job.id()] = job.progress().step();
  EXPECT_EQ(listed_steps[first.id()], 0) << "forgotten: only one ended job stays cached";
  EXPECT_EQ(listed_steps[second.id()], 9);

  v1::GetJobRequest get;
  get.set_job_id(first.id());
  absl::StatusOr<v1::GetJobResponse> got = coordinator_->GetJob(get);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->job().progress().step(), 7);
  EXPECT_DOUBLE_EQ(got->job().progress().loss(), 0.7);
}

TEST_F(CoordinatorTest, InvalidSpecIsRefusedNamingTheFieldAndNothingIsStored) {
  v1::JobSpec bad = Spec("a");
  bad.set_world_size(-3);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = bad;
  absl::StatusOr<v1::SubmitJobResponse> response = coordinator_->SubmitJob(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(response.status().message(), HasSubstr("spec.world_size"));

  bad = Spec("a");
  bad.set_kind(v1::JOB_KIND_UNSPECIFIED);
  *request.mutable_spec() = bad;
  EXPECT_THAT(coordinator_->SubmitJob(request).status().message(), HasSubstr("spec.kind"));

  bad = Spec("a");
  bad.mutable_depends_on()->set_job_id("job-999999");
  *request.mutable_spec() = bad;
  response = coordinator_->SubmitJob(request);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(response.status().message(), HasSubstr("spec.depends_on.job_id"));

  validator_.verdict =
      absl::InvalidArgumentError("spec.config_yaml: train.max_steps: expected > 0");
  *request.mutable_spec() = Spec("a");
  response = coordinator_->SubmitJob(request);
  EXPECT_THAT(response.status().message(), HasSubstr("train.max_steps"));

  EXPECT_THAT(coordinator_->ListJobs({})->jobs(), IsEmpty());
}

TEST_F(CoordinatorTest, ValidateOnlyRunsEveryCheckOfASubmissionAndStoresNothing) {
  RegisterWorker("w1", /*cpu_slots=*/2);
  v1::SubmitJobRequest request;
  request.set_validate_only(true);
  request.set_client_request_id("dry-1");
  *request.mutable_spec() = Spec("checked");
  absl::StatusOr<v1::SubmitJobResponse> response = coordinator_->SubmitJob(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_FALSE(response->created());
  EXPECT_EQ(response->job().id(), "");
  EXPECT_EQ(response->job().spec().name(), "checked");
  EXPECT_EQ(response->job().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(validator_.calls, 1);  // the trainer's check of its config ran

  // Each refusal a submission would meet: the trainer's check, the dependency, the cluster fit.
  validator_.verdict =
      absl::InvalidArgumentError("spec.config_yaml: train.max_steps: expected > 0");
  EXPECT_THAT(coordinator_->SubmitJob(request).status().message(), HasSubstr("train.max_steps"));
  validator_.verdict = absl::OkStatus();
  request.mutable_spec()->mutable_depends_on()->set_job_id("job-999999");
  EXPECT_EQ(coordinator_->SubmitJob(request).status().code(), absl::StatusCode::kNotFound);
  *request.mutable_spec() = Spec("too-big", /*world_size=*/3);
  EXPECT_EQ(coordinator_->SubmitJob(request).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Nothing was stored, and the request id is still free for the real submission.
  EXPECT_THAT(coordinator_->ListJobs({})->jobs(), IsEmpty());
  request.set_validate_only(false);
  *request.mutable_spec() = Spec("checked");
  response = coordinator_->SubmitJob(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_TRUE(response->created());
  EXPECT_EQ(response->job().id(), "job-000001");
}

TEST_F(CoordinatorTest, RetriedSubmitReturnsTheFirstJob) {
  v1::Job first = Submit(Spec("a"), "request-1");
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("a");
  request.set_client_request_id("request-1");
  absl::StatusOr<v1::SubmitJobResponse> again = coordinator_->SubmitJob(request);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created());
  EXPECT_EQ(again->job().id(), first.id());
  EXPECT_THAT(coordinator_->ListJobs({})->jobs(), SizeIs(1));
}

TEST_F(CoordinatorTest, DependentJobWaitsForItsDependency) {
  const std::string worker = RegisterWorker("w1", /*cpu_slots=*/4);
  v1::Job tokenizer = Submit(Spec("tokenizer"));
  v1::JobSpec pretrain = Spec("pretrain");
  pretrain.mutable_depends_on()->set_job_id(tokenizer.id());
  v1::Job dependent = Submit(pretrain);
  EXPECT_EQ(Job(dependent.id()).state(), v1::JOB_STATE_WAITING);

  Heartbeat(worker, {Running(tokenizer.id(), 1)});
  Heartbeat(worker, {}, {Result(tokenizer.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  EXPECT_EQ(Job(dependent.id()).state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(CoordinatorTest, DependentJobFailsWhenItsDependencyFails) {
  const std::string worker = RegisterWorker("w1", 4);
  v1::Job tokenizer = Submit(Spec("tokenizer"));
  v1::JobSpec pretrain = Spec("pretrain");
  pretrain.mutable_depends_on()->set_job_id(tokenizer.id());
  v1::Job dependent = Submit(pretrain);
  Heartbeat(worker, {Running(tokenizer.id(), 1)});
  Heartbeat(worker, {},
            {Result(tokenizer.id(), 1, v1::AttemptResult::RESULT_FAILED, false,
                    "rank 0 exited with exit code 2: bad config")});
  coordinator_->Tick();
  v1::Job failed = Job(dependent.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.failure_reason(), HasSubstr(tokenizer.id()));
}

TEST_F(CoordinatorTest, LostWorkerRestartsTheJobElsewhereFromTheNewestCheckpoint) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  ASSERT_TRUE(Upload(job.id(), 1, 100).ok());
  ASSERT_TRUE(Upload(job.id(), 1, 200).ok());
  const std::string w2 = RegisterWorker("w2");

  // w2 keeps heartbeating, w1 falls silent.
  for (int i = 0; i < 11; ++i) {
    clock_.Advance(absl::Seconds(1));
    Heartbeat(w2);
    coordinator_->Tick();
  }
  coordinator_->Tick();  // the tick after the loss chooses the checkpoint and places the job
  v1::Job restarted = Job(job.id());
  EXPECT_EQ(restarted.state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(restarted.attempt(), 2);
  EXPECT_EQ(restarted.restart_count(), 1);

  v1::HeartbeatResponse beat = Heartbeat(w2);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).attempt(), 2);
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(),
            absl::StrCat(job.id(), "-a1-step-000000000200"));

  // The lost attempt is fenced off: its reports are refused, its upload too, and when w1 comes
  // back it is told to kill the old trainer.
  absl::StatusOr<v1::ReportProgressResponse> stale =
      coordinator_->ReportProgress({Point(job.id(), 1, 250, 0.1)});
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->refused(), 1);
  EXPECT_EQ(Upload(job.id(), 1, 300).status().code(), absl::StatusCode::kFailedPrecondition);
  v1::HeartbeatResponse back = Heartbeat(w1, {Running(job.id(), 1)});
  ASSERT_THAT(back.stale(), SizeIs(1));
  EXPECT_EQ(back.stale(0).attempt(), 1);
  EXPECT_THAT(back.assignments(), IsEmpty());
  // The ended attempt says why.
  v1::GetJobRequest get;
  get.set_job_id(job.id());
  absl::StatusOr<v1::GetJobResponse> got = coordinator_->GetJob(get);
  ASSERT_TRUE(got.ok());
  ASSERT_GE(got->attempts_size(), 2);
  EXPECT_EQ(got->attempts(0).cause(), "worker_lost");
  EXPECT_THAT(got->attempts(0).failure_reason(), HasSubstr("worker w1 lost"));
  EXPECT_EQ(got->attempts(1).cause(), "");
}

TEST_F(CoordinatorTest, RetryableFailuresStopAfterMaxRestarts) {
  const std::string worker = RegisterWorker("w1");
  v1::JobSpec spec = Spec("a");
  spec.set_max_restarts(1);
  v1::Job job = Submit(spec);
  Heartbeat(worker, {Running(job.id(), 1)});
  v1::AttemptResult stalled =
      Result(job.id(), 1, v1::AttemptResult::RESULT_FAILED, true, "crash 1");
  stalled.set_cause("stall");
  Heartbeat(worker, {}, {stalled});
  coordinator_->Tick();
  EXPECT_EQ(Job(job.id()).attempt(), 2);
  Heartbeat(worker, {Running(job.id(), 2)});
  Heartbeat(worker, {}, {Result(job.id(), 2, v1::AttemptResult::RESULT_FAILED, true, "crash 2")});
  coordinator_->Tick();
  v1::Job failed = Job(job.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.failure_reason(), HasSubstr("crash 2"));
  EXPECT_THAT(failed.failure_reason(), HasSubstr("gave up after 1 restarts"));
  v1::GetJobRequest get;
  get.set_job_id(job.id());
  absl::StatusOr<v1::GetJobResponse> got = coordinator_->GetJob(get);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->attempts_size(), 2);
  EXPECT_EQ(got->attempts(0).cause(), "stall");
  EXPECT_EQ(got->attempts(1).cause(), "exit");  // a result without a cause is an exit
}

TEST_F(CoordinatorTest, AResultCountsOnlyFromAWorkerTheAttemptRunsOn) {
  const std::string w1 = RegisterWorker("w1");
  const std::string w2 = RegisterWorker("w2");
  v1::Job job = Submit(Spec("a"));
  const v1::Attempt placed = store_->ListAttempts(job.id())->back();
  const std::string runs_on = placed.placements(0).worker_id();
  const std::string other = runs_on == w1 ? w2 : w1;
  Heartbeat(runs_on, {Running(job.id(), 1)});
  // Another worker (any worker token) planting a fatal result changes nothing.
  Heartbeat(other, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_FAILED, false, "planted")});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_RUNNING);
  Heartbeat(runs_on, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoordinatorTest, NonRetryableFailureFailsAtOnce) {
  const std::string worker = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(worker, {Running(job.id(), 1)});
  Heartbeat(worker, {},
            {Result(job.id(), 1, v1::AttemptResult::RESULT_FAILED, false,
                    "rank 0 exited with exit code 3: loss is NaN")});
  v1::Job failed = Job(job.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.restart_count(), 0);
  EXPECT_THAT(failed.failure_reason(), HasSubstr("NaN"));
  // Which machine it failed on (a dataset missing on one worker fails only there).
  EXPECT_THAT(failed.failure_reason(), HasSubstr("(on worker w1, host "));
}

TEST_F(CoordinatorTest, CancelStopsGracefullyAndResumeContinuesFromTheFinalCheckpoint) {
  const std::string worker = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(worker, {Running(job.id(), 1)});

  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  ASSERT_TRUE(coordinator_->CancelJob(cancel).ok());
  clock_.Advance(absl::Seconds(5));
  v1::HeartbeatResponse beat = Heartbeat(worker, {Running(job.id(), 1)});
  ASSERT_THAT(beat.cancellations(), SizeIs(1));
  EXPECT_EQ(beat.cancellations(0).deadline_ms(), 25000);

  ASSERT_TRUE(Upload(job.id(), 1, 150, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_STOPPED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_CANCELLED);
  // Cancelling again is harmless.
  EXPECT_TRUE(coordinator_->CancelJob(cancel).ok());

  v1::ResumeJobRequest resume;
  resume.set_job_id(job.id());
  ASSERT_TRUE(coordinator_->ResumeJob(resume).ok());
  coordinator_->Tick();  // chooses the checkpoint outside the lock, then places the job
  beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).attempt(), 2);
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(),
            absl::StrCat(job.id(), "-a1-step-000000000150"));
}

TEST_F(CoordinatorTest, ResumeWithOverridesContinuesWithTheChangedConfig) {
  const std::string worker = RegisterWorker("w1");
  v1::JobSpec spec = Spec("a");
  spec.set_config_yaml("kind: tokenizer\ntrain: {max_steps: 100}\noptim: {lr: 0.001}\n");
  v1::Job job = Submit(spec);
  Heartbeat(worker, {Running(job.id(), 1)});
  ASSERT_TRUE(Upload(job.id(), 1, 100, /*final=*/true).ok());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  ASSERT_TRUE(coordinator_->CancelJob(cancel).ok());
  Heartbeat(worker, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_STOPPED)});
  ASSERT_EQ(Job(job.id()).state(), v1::JOB_STATE_CANCELLED);

  // Changes to the model, its devices or its output are refused, naming the override; nothing
  // changes.
  v1::ResumeJobRequest resume;
  resume.set_job_id(job.id());
  for (const std::string& bad : {"model.ch=64", "train.device=cuda", "train.output_dir=/tmp/x",
                                 "kind=pretrain", "train.max_steps"}) {
    resume.clear_config_overrides();
    resume.add_config_overrides(bad);
    absl::StatusOr<v1::ResumeJobResponse> refused = coordinator_->ResumeJob(resume);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.status().message(), HasSubstr(bad)) << bad;
  }
  validator_.verdict = absl::InvalidArgumentError("config: optim.lr: expected > 0");
  resume.clear_config_overrides();
  resume.add_config_overrides("optim.lr=-1");
  EXPECT_THAT(coordinator_->ResumeJob(resume).status().message(), HasSubstr("optim.lr"));
  validator_.verdict = absl::OkStatus();
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_THAT(Job(job.id()).spec().config_yaml(), HasSubstr("max_steps: 100"));

  resume.clear_config_overrides();
  resume.add_config_overrides("train.max_steps=300");
  resume.add_config_overrides("optim.lr=0.0001");
  ASSERT_TRUE(coordinator_->ResumeJob(resume).ok());
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(),
            absl::StrCat(job.id(), "-a1-step-000000000100"));
  const std::string config = beat.assignments(0).spec().config_yaml();
  EXPECT_THAT(config, HasSubstr("max_steps: 300"));
  EXPECT_THAT(config, HasSubstr("lr: 0.0001"));
  EXPECT_THAT(Job(job.id()).spec().config_yaml(), HasSubstr("max_steps: 300"));  // kept
}

TEST_F(CoordinatorTest, AForkStartsFromItsSourcesCheckpointUntilItHasItsOwn) {
  const std::string worker = RegisterWorker("w1", /*cpu_slots=*/2);
  v1::Job source = Submit(Spec("source"));
  Heartbeat(worker, {Running(source.id(), 1)});
  ASSERT_TRUE(Upload(source.id(), 1, 40, /*final=*/false).ok());
  ASSERT_TRUE(Upload(source.id(), 1, 80, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(source.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  ASSERT_EQ(Job(source.id()).state(), v1::JOB_STATE_SUCCEEDED);
  const std::string newest = absl::StrCat(source.id(), "-a1-step-000000000080");

  // By job id: the newest verified checkpoint, pinned in the stored spec.
  v1::JobSpec fork = Spec("fork");
  fork.mutable_init_from()->set_job_id(source.id());
  v1::Job forked = Submit(fork);
  EXPECT_EQ(Job(forked.id()).spec().init_from().checkpoint_id(), newest);
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).job_id(), forked.id());
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(), newest);

  // Restarted before a checkpoint of its own: from the source's again.
  Heartbeat(worker, {Running(forked.id(), 1)});
  Heartbeat(worker, {}, {Result(forked.id(), 1, v1::AttemptResult::RESULT_FAILED, true, "crash")});
  coordinator_->Tick();
  beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).attempt(), 2);
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(), newest);

  // Refusals name the field: another kind, an unknown job or checkpoint, no checkpoint yet.
  v1::JobSpec other_kind = Spec("pretrain-fork");
  other_kind.set_kind(v1::JOB_KIND_PRETRAIN);
  other_kind.mutable_init_from()->set_job_id(source.id());
  v1::SubmitJobRequest request;
  *request.mutable_spec() = other_kind;
  EXPECT_THAT(coordinator_->SubmitJob(request).status().message(),
              HasSubstr("a fork continues a job of its own kind"));
  request.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  request.mutable_spec()->mutable_init_from()->set_job_id("job-999999");
  EXPECT_THAT(coordinator_->SubmitJob(request).status().message(),
              HasSubstr("spec.init_from.job_id: no job job-999999"));
  request.mutable_spec()->mutable_init_from()->set_checkpoint_id("nope");
  EXPECT_THAT(coordinator_->SubmitJob(request).status().message(),
              HasSubstr("spec.init_from.checkpoint_id: no checkpoint nope"));
  v1::Job fresh = Submit(Spec("fresh"));
  request.mutable_spec()->mutable_init_from()->set_job_id(fresh.id());
  EXPECT_EQ(coordinator_->SubmitJob(request).status().code(),
            absl::StatusCode::kFailedPrecondition);

  // Another user may neither fork the job nor its checkpoint, nor list its dependents: refused
  // before anything is hashed, and audited on the source job.
  const UserCaller bob{"bob", /*admin=*/false};
  request.mutable_spec()->mutable_init_from()->set_job_id(source.id());
  EXPECT_EQ(coordinator_->SubmitJob(request, bob).status().code(),
            absl::StatusCode::kPermissionDenied);
  request.mutable_spec()->mutable_init_from()->set_checkpoint_id(newest);
  EXPECT_EQ(coordinator_->SubmitJob(request, bob).status().code(),
            absl::StatusCode::kPermissionDenied);
  v1::ListJobsRequest dependents;
  dependents.set_depends_on_job_id(source.id());
  absl::StatusOr<v1::ListJobsResponse> listed = coordinator_->ListJobs(dependents, bob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(listed->jobs(), IsEmpty());
  v1::GetJobRequest get;
  get.set_job_id(source.id());
  absl::StatusOr<v1::GetJobResponse> audited = coordinator_->GetJob(get);
  ASSERT_TRUE(audited.ok()) << audited.status();
  int refused_forks = 0;
  for (const v1::AuditEntry& entry : audited->audit()) {
    refused_forks += entry.action() == "fork" && entry.actor() == "bob";
  }
  EXPECT_EQ(refused_forks, 2);
}

TEST_F(CoordinatorTest, RetentionKeepsTheCheckpointAQueuedForkStartsFrom) {
  const std::string worker = RegisterWorker("w1", /*cpu_slots=*/1);
  v1::Job source = Submit(Spec("source"));
  Heartbeat(worker, {Running(source.id(), 1)});
  ASSERT_TRUE(Upload(source.id(), 1, 10).ok());
  // A fork of the running source pins its newest checkpoint; the only slot is taken, so the
  // fork waits while the source commits more than keep_checkpoints (2) newer ones.
  v1::JobSpec fork = Spec("fork");
  fork.mutable_init_from()->set_job_id(source.id());
  v1::Job forked = Submit(fork);
  const std::string pinned = absl::StrCat(source.id(), "-a1-step-000000000010");
  ASSERT_EQ(Job(forked.id()).spec().init_from().checkpoint_id(), pinned);
  for (int step : {20, 30, 40}) ASSERT_TRUE(Upload(source.id(), 1, step).ok());
  EXPECT_TRUE(store_->GetCheckpoint(pinned).ok()) << "retention removed a pinned checkpoint";
  EXPECT_EQ(
      store_->GetCheckpoint(absl::StrCat(source.id(), "-a1-step-000000000020")).status().code(),
      absl::StatusCode::kNotFound);  // an unpinned one beyond the newest two goes

  ASSERT_TRUE(Upload(source.id(), 1, 50, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(source.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).job_id(), forked.id());
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(), pinned);
}

TEST_F(CoordinatorTest, CancellingAQueuedJobIsImmediate) {
  v1::Job job = Submit(Spec("a"));  // no workers: stays queued
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  absl::StatusOr<v1::CancelJobResponse> response = coordinator_->CancelJob(cancel);
  ASSERT_TRUE(response.ok());
  EXPECT_EQ(response->job().state(), v1::JOB_STATE_CANCELLED);
}

TEST_F(CoordinatorTest, CorruptedCheckpointIsSkippedForThePreviousOne) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  ASSERT_TRUE(Upload(job.id(), 1, 100).ok());
  absl::StatusOr<v1::CheckpointInfo> newest = Upload(job.id(), 1, 200);
  ASSERT_TRUE(newest.ok());
  // Damage the newest checkpoint on disk.
  {
    std::ofstream file(checkpoints_->CheckpointDir(job.id(), newest->id()) + "/model.pt",
                       std::ios::binary | std::ios::trunc);
    file << "bit rot";
  }
  Heartbeat(w1, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_FAILED, true, "crash")});
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(w1);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).resume_checkpoint_id(),
            absl::StrCat(job.id(), "-a1-step-000000000100"));
  // Downloading the damaged one is refused as well.
  EXPECT_EQ(coordinator_->OpenCheckpoint(newest->id()).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST_F(CoordinatorTest, UploadWithAWrongDigestCommitsNothing) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  absl::StatusOr<v1::CheckpointInfo> bad = Upload(job.id(), 1, 100, false, /*corrupt=*/true);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  v1::ListCheckpointsRequest list;
  list.set_job_id(job.id());
  EXPECT_THAT(coordinator_->ListCheckpoints(list)->checkpoints(), IsEmpty());
  EXPECT_THAT(*checkpoints_->ListCheckpoints(job.id()), IsEmpty());
}

TEST_F(CoordinatorTest, RetentionKeepsTheNewestAndEveryFinalCheckpoint) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  ASSERT_TRUE(Upload(job.id(), 1, 100, /*final=*/true).ok());
  for (int step : {200, 300, 400, 500}) ASSERT_TRUE(Upload(job.id(), 1, step).ok());
  v1::ListCheckpointsRequest list;
  list.set_job_id(job.id());
  absl::StatusOr<v1::ListCheckpointsResponse> listed = coordinator_->ListCheckpoints(list);
  ASSERT_TRUE(listed.ok());
  std::vector<int64_t> steps;
  for (const v1::CheckpointInfo& info : listed->checkpoints()) {
    steps.push_back(info.step());
  }
  EXPECT_THAT(steps, ElementsAre(100, 400, 500));
  EXPECT_THAT(*checkpoints_->ListCheckpoints(job.id()), SizeIs(3));
}

TEST_F(CoordinatorTest, RestartedCoordinatorKeepsJobsAndReattachesRunningTrainers) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  ASSERT_TRUE(coordinator_->ReportProgress({Point(job.id(), 1, 10, 0.9)}).ok());

  Start();  // a coordinator killed and started again over the same data directory
  clock_.Advance(absl::Seconds(8));
  coordinator_->Tick();
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_RUNNING) << "workers get a fresh timeout";

  // The worker's next heartbeat re-attaches: no stale kill, no new assignment.
  v1::HeartbeatResponse beat = Heartbeat(w1, {Running(job.id(), 1)});
  EXPECT_THAT(beat.stale(), IsEmpty());
  EXPECT_THAT(beat.assignments(), IsEmpty());
  ASSERT_TRUE(coordinator_->ReportProgress({Point(job.id(), 1, 20, 0.8)}).ok());
  Heartbeat(w1, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Job(job.id()).attempt(), 1);
}

TEST_F(CoordinatorTest, QueueSurvivesARestartAndFillsFreedSlotsInSubmitOrder) {
  const v1::Job first = Submit(Spec("a"));  // no worker yet: all wait
  const v1::Job second = Submit(Spec("b"));
  const v1::Job third = Submit(Spec("c"));
  EXPECT_EQ(first.state(), v1::JOB_STATE_QUEUED);

  Start();  // the queue is rebuilt from the store
  const std::string worker = RegisterWorker("w1", /*cpu_slots=*/2);
  coordinator_->Tick();
  EXPECT_EQ(Job(first.id()).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(Job(second.id()).state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(Job(third.id()).state(), v1::JOB_STATE_QUEUED) << "both slots are held";
  coordinator_->Tick();
  EXPECT_EQ(Job(third.id()).state(), v1::JOB_STATE_QUEUED) << "passes do not double-book";
  v1::HeartbeatResponse placed = Heartbeat(worker);
  ASSERT_THAT(placed.assignments(), SizeIs(2));
  EXPECT_NE(placed.assignments(0).master_port(), placed.assignments(1).master_port())
      << "one pass, one worker: distinct rendezvous ports";

  // The first job ends: its slot goes to the third.
  Heartbeat(worker, {Running(first.id(), 1), Running(second.id(), 1)});
  Heartbeat(worker, {Running(second.id(), 1)},
            {Result(first.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  EXPECT_EQ(Job(third.id()).state(), v1::JOB_STATE_ASSIGNED);
  v1::HeartbeatResponse beat = Heartbeat(worker, {Running(second.id(), 1)});
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).job_id(), third.id());
  EXPECT_EQ(beat.assignments(0).master_port(), 29500) << "the finished job's port is free again";
}

TEST_F(CoordinatorTest, UnknownWorkerHeartbeatIsNotFoundAndReRegistrationReattaches) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  v1::HeartbeatRequest unknown;
  unknown.set_worker_id("nobody");
  EXPECT_EQ(coordinator_->Heartbeat(unknown).status().code(), absl::StatusCode::kNotFound);

  RegisterWorker(w1, 2, {Running(job.id(), 1), Running("job-gone", 4)});
  ASSERT_THAT(last_register_.stale(), SizeIs(1));
  EXPECT_EQ(last_register_.stale(0).job_id(), "job-gone");
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_RUNNING);
}

TEST_F(CoordinatorTest, WorkerRestartedWithoutItsTrainerRestartsTheJob) {
  const std::string w1 = RegisterWorker("w1");
  v1::Job job = Submit(Spec("a"));
  Heartbeat(w1, {Running(job.id(), 1)});
  RegisterWorker(w1);  // the daemon came back with nothing running
  coordinator_->Tick();
  v1::Job restarted = Job(job.id());
  EXPECT_EQ(restarted.attempt(), 2);
  EXPECT_EQ(restarted.state(), v1::JOB_STATE_ASSIGNED);
}

TEST_F(CoordinatorTest, GangSpreadsOverWorkersAndOnlyRankZerosResultDecidesSuccess) {
  const std::string w1 = RegisterWorker("w1", 1);
  const std::string w2 = RegisterWorker("w2", 1);
  v1::Job job = Submit(Spec("gang", /*world_size=*/2));
  ASSERT_EQ(Job(job.id()).state(), v1::JOB_STATE_ASSIGNED);
  v1::HeartbeatResponse b1 = Heartbeat(w1);
  v1::HeartbeatResponse b2 = Heartbeat(w2);
  ASSERT_THAT(b1.assignments(), SizeIs(1));
  ASSERT_THAT(b2.assignments(), SizeIs(1));
  EXPECT_EQ(b1.assignments(0).master_port(), b2.assignments(0).master_port());
  const std::string rank0_worker = b1.assignments(0).ranks(0) == 0 ? w1 : w2;
  const std::string other = rank0_worker == w1 ? w2 : w1;
  Heartbeat(w1, {Running(job.id(), 1)});
  Heartbeat(w2, {Running(job.id(), 1)});
  Heartbeat(other, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_RUNNING);
  Heartbeat(rank0_worker, {}, {Result(job.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  EXPECT_EQ(Job(job.id()).state(), v1::JOB_STATE_SUCCEEDED);
}

TEST_F(CoordinatorTest, PretrainAfterATokenizerReadsItsFinalCheckpointOnEveryAttempt) {
  const std::string worker = RegisterWorker("w1", 4);
  auto [tokenizer, dependent] = SubmitTokenizerThenPretrain();
  // The trainer's config check is told which field the service fills.
  EXPECT_THAT(validator_.last_input_fields, ElementsAre("tokenizer.checkpoint"));

  Heartbeat(worker, {Running(tokenizer.id(), 1)});
  ASSERT_TRUE(Upload(tokenizer.id(), 1, 100).ok());
  ASSERT_TRUE(Upload(tokenizer.id(), 1, 300, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(tokenizer.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  const std::string final_id = absl::StrCat(tokenizer.id(), "-a1-step-000000000300");
  ASSERT_THAT(beat.assignments(0).inputs(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).inputs(0).checkpoint_id(), final_id);
  EXPECT_EQ(beat.assignments(0).inputs(0).config_field(), "tokenizer.checkpoint");

  // A restart, even after the coordinator itself restarted, reads the same checkpoint.
  Heartbeat(worker, {Running(dependent.id(), 1)});
  Heartbeat(worker, {},
            {Result(dependent.id(), 1, v1::AttemptResult::RESULT_FAILED, /*retryable=*/true)});
  Start();
  RegisterWorker("w1", 4);
  coordinator_->Tick();
  beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).attempt(), 2);
  ASSERT_THAT(beat.assignments(0).inputs(), SizeIs(1));
  EXPECT_EQ(beat.assignments(0).inputs(0).checkpoint_id(), final_id);
}

TEST_F(CoordinatorTest, DependencyWithoutACheckpointFailsTheDependentJob) {
  const std::string worker = RegisterWorker("w1", 4);
  auto [tokenizer, dependent] = SubmitTokenizerThenPretrain();
  Heartbeat(worker, {Running(tokenizer.id(), 1)});
  Heartbeat(worker, {}, {Result(tokenizer.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  v1::Job failed = Job(dependent.id());
  EXPECT_EQ(failed.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.failure_reason(), HasSubstr("left no checkpoint"));
}

TEST_F(CoordinatorTest, OrderingOnlyDependencyHandsNothingOver) {
  const std::string worker = RegisterWorker("w1", 4);
  v1::Job first = Submit(Spec("first"));
  v1::JobSpec second = Spec("second");
  second.mutable_depends_on()->set_job_id(first.id());
  Submit(second);
  EXPECT_THAT(validator_.last_input_fields, IsEmpty());
  Heartbeat(worker, {Running(first.id(), 1)});
  ASSERT_TRUE(Upload(first.id(), 1, 10, /*final=*/true).ok());
  Heartbeat(worker, {}, {Result(first.id(), 1, v1::AttemptResult::RESULT_SUCCEEDED)});
  coordinator_->Tick();
  v1::HeartbeatResponse beat = Heartbeat(worker);
  ASSERT_THAT(beat.assignments(), SizeIs(1));
  EXPECT_THAT(beat.assignments(0).inputs(), IsEmpty());
}

TEST_F(CoordinatorTest, GangLargerThanTheRegisteredWorkersIsRefusedAtSubmit) {
  // Before any worker registers, a job waits for one.
  v1::SubmitJobRequest early;
  *early.mutable_spec() = Spec("early", /*world_size=*/8);
  EXPECT_TRUE(coordinator_->SubmitJob(early).ok());

  RegisterWorker("w1", 2);
  RegisterWorker("w2", 1);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = Spec("huge", /*world_size=*/4);
  absl::StatusOr<v1::SubmitJobResponse> refused = coordinator_->SubmitJob(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("spec.world_size"));
  EXPECT_THAT(refused.status().message(), HasSubstr("at most 3"));
  // Two slots per rank fit only on w1.
  *request.mutable_spec() = Spec("wide", /*world_size=*/2, /*cpu_slots=*/2);
  EXPECT_EQ(coordinator_->SubmitJob(request).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Three ranks fit across both, even though they are busy with nothing else.
  *request.mutable_spec() = Spec("fits", /*world_size=*/3);
  EXPECT_TRUE(coordinator_->SubmitJob(request).ok());
}

TEST_F(CoordinatorTest, RegisterRefusesBadDevicesAndPorts) {
  v1::RegisterRequest request;
  request.mutable_worker()->mutable_ports()->set_first(29500);
  request.mutable_worker()->mutable_ports()->set_last(29509);
  absl::StatusOr<v1::RegisterResponse> response = coordinator_->Register(request);
  EXPECT_THAT(response.status().message(), HasSubstr("worker.devices"));
  request.mutable_worker()->mutable_devices()->set_cpu_slots(1);
  request.mutable_worker()->mutable_ports()->set_first(30000);
  response = coordinator_->Register(request);
  EXPECT_THAT(response.status().message(), HasSubstr("worker.ports"));
}

}  // namespace
}  // namespace peco::coordinator
