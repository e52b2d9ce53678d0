// The service end to end on loopback: real peco-coordinator, peco-worker, peco-train and peco
// processes. Each test trains a tiny tokenizer on Fashion-MNIST for tens of steps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "tests/e2e/cluster.h"

namespace peco::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// Steps of the metric curve (rank 0) in the order WatchJob sent them.
std::vector<int64_t> CurveSteps(const std::vector<v1::WatchJobEvent>& events) {
  std::vector<int64_t> steps;
  for (const v1::WatchJobEvent& event : events) {
    if (event.has_metric_point() && event.metric_point().rank() == 0) {
      steps.push_back(event.metric_point().step());
    }
  }
  return steps;
}

const v1::CheckpointInfo* FinalCheckpoint(const std::vector<v1::CheckpointInfo>& infos) {
  const v1::CheckpointInfo* newest = nullptr;
  for (const v1::CheckpointInfo& info : infos) {
    if (info.final() && (newest == nullptr || info.step() >= newest->step())) newest = &info;
  }
  return newest;
}

bool HasCheckpoint(Cluster* cluster, const std::string& job_id) {
  absl::StatusOr<std::vector<v1::CheckpointInfo>> infos = cluster->Checkpoints(job_id);
  return infos.ok() && !infos->empty();
}

// The loss of each step of the curve (rank 0), as WatchJob sent it; a later attempt's point
// replaces an earlier one's.
std::map<int64_t, double> CurveLosses(const std::vector<v1::WatchJobEvent>& events) {
  std::map<int64_t, double> losses;
  for (const v1::WatchJobEvent& event : events) {
    if (event.has_metric_point() && event.metric_point().rank() == 0) {
      const auto& values = event.metric_point().values();
      if (values.count("loss")) losses[event.metric_point().step()] = values.at("loss");
    }
  }
  return losses;
}

// The stderr log of rank 0 of `attempt` of `job_id`, wherever a worker of the cluster ran it.
std::string AttemptLog(const Cluster& cluster, const std::string& job_id, int64_t attempt) {
  const std::string name = absl::StrCat("attempt-", attempt, "-rank-0.log");
  std::error_code error;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(cluster.root(), error)) {
    const std::string path = entry.path().string();
    if (entry.path().filename() == name && absl::StrContains(path, job_id)) {
      std::ifstream in(path);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }
  }
  return "";
}

class ServiceE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) cluster_.DumpLogs();
  }

  // Submits a tiny tokenizer spec with the CLI; returns the job id ("" on failure, logged).
  std::string Submit(const std::string& name, int max_steps, int checkpoint_every) {
    CommandResult submit =
        cluster_.Peco({"submit", cluster_.WriteSpec(name, max_steps, checkpoint_every)});
    EXPECT_EQ(submit.exit_code, 0) << submit.output << submit.error;
    return JobIdIn(submit.output);
  }

  // A job `name` on one of two fresh workers, past its first committed checkpoint.
  struct Placed {
    std::string job_id;
    std::string worker_id;
    int worker = -1;  // the cluster's index of the worker running it; -1 on failure
  };
  Placed RunOnOneOfTwoWorkers(const std::string& name, int max_steps, int checkpoint_every) {
    Placed placed;
    cluster_.StartWorker();
    cluster_.StartWorker();
    if (!cluster_.WaitForWorkers(2)) {
      ADD_FAILURE() << "the workers did not register";
      return placed;
    }
    placed.job_id = Submit(name, max_steps, checkpoint_every);
    absl::StatusOr<v1::GetJobResponse> running = WaitForFirstCheckpoint(placed.job_id);
    if (placed.job_id.empty() || !running.ok()) {
      ADD_FAILURE() << "no first checkpoint: " << running.status();
      return placed;
    }
    placed.worker_id = running->attempts(0).placements(0).worker_id();
    placed.worker = cluster_.WorkerId(0) == placed.worker_id ? 0 : 1;
    EXPECT_EQ(cluster_.WorkerId(placed.worker), placed.worker_id);
    return placed;
  }

  // Waits until the job has at least one committed checkpoint.
  absl::StatusOr<v1::GetJobResponse> WaitForFirstCheckpoint(const std::string& job_id) {
    return cluster_.WaitForJob(
        job_id, [&](const v1::GetJobResponse&) { return HasCheckpoint(&cluster_, job_id); },
        absl::Seconds(120));
  }

  Cluster cluster_;
};

TEST_F(ServiceE2eTest, SubmitWatchAndDownloadTheFinalCheckpoint) {
  cluster_.StartCoordinator();
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(1));

  const std::string spec = cluster_.WriteSpec("e2e-small", /*max_steps=*/24, 8);
  CommandResult submit = cluster_.Peco({"submit", spec});
  ASSERT_EQ(submit.exit_code, 0) << submit.output << submit.error;
  const std::string job_id = JobIdIn(submit.output);
  ASSERT_FALSE(job_id.empty()) << submit.output;

  // `peco logs -f` follows the trainer's log from the start until the job ends.
  CommandResult followed = cluster_.Peco({"logs", job_id, "-f"});
  EXPECT_EQ(followed.exit_code, 0) << followed.output << followed.error;
  EXPECT_THAT(followed.output, HasSubstr("==> attempt 1, rank 0 <=="));
  EXPECT_THAT(followed.output, HasSubstr("step 1/24"));
  EXPECT_THAT(followed.output, HasSubstr("completed at step 24"));
  CommandResult watch = cluster_.Peco({"watch", job_id});
  EXPECT_EQ(watch.exit_code, 0) << watch.output << watch.error;
  // Afterwards the same log, whole, without -f; the worker's copy is byte for byte the same.
  CommandResult logs = cluster_.Peco({"logs", job_id});
  EXPECT_EQ(logs.exit_code, 0) << logs.error;
  EXPECT_EQ(logs.output, followed.output);
  CommandResult other_rank = cluster_.Peco({"logs", job_id, "--rank", "1"});
  EXPECT_EQ(other_rank.output, "");
  EXPECT_THAT(other_rank.error, HasSubstr("no log lines from " + job_id));
  absl::StatusOr<v1::GetJobResponse> job = cluster_.GetJob(job_id);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->job().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job->job().spec().name(), "e2e-small");
  EXPECT_EQ(job->job().attempt(), 1);

  // The whole curve, once per step.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok()) << history.status();
  std::vector<int64_t> expected(24);
  for (int i = 0; i < 24; ++i) expected[i] = i + 1;
  EXPECT_EQ(CurveSteps(*history), expected);

  // Submit-to-first-step latency, for the closing note.
  int64_t first_point_us = 0;
  for (const v1::WatchJobEvent& event : *history) {
    if (event.has_metric_point()) {
      first_point_us = event.metric_point().time_us();
      break;
    }
  }
  std::cout << "[measure] submit to first step: "
            << (first_point_us - job->job().submit_time_us()) / 1000 << " ms\n";

  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  const v1::CheckpointInfo* final_checkpoint = FinalCheckpoint(*checkpoints);
  ASSERT_NE(final_checkpoint, nullptr);
  EXPECT_EQ(final_checkpoint->step(), 24);

  const std::string out = cluster_.root() + "/downloaded";
  CommandResult download = cluster_.Peco({"download", final_checkpoint->id(), out});
  ASSERT_EQ(download.exit_code, 0) << download.output << download.error;
  absl::StatusOr<std::string> manifest = ReadFileToString(out + "/MANIFEST");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  int files = 0;
  for (absl::string_view line : absl::StrSplit(*manifest, '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    ASSERT_EQ(parts.size(), 3u) << line;
    absl::StatusOr<std::string> digest = Sha256FileHex(out + "/" + parts[2]);
    ASSERT_TRUE(digest.ok()) << parts[2];
    EXPECT_EQ(*digest, parts[0]) << parts[2];
    ++files;
  }
  EXPECT_GE(files, 4) << "model, optimizer, rng, config, trainer state";

  // Prometheus sees the job and its checkpoints.
  const std::string metrics = cluster_.CoordinatorMetrics();
  EXPECT_THAT(metrics, HasSubstr("peco_jobs{state=\"succeeded\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("peco_workers{state=\"alive\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("peco_checkpoints_committed_total"));
  EXPECT_THAT(metrics, Not(HasSubstr("peco_checkpoints_committed_total 0")));
  EXPECT_TRUE(std::filesystem::exists(out + "/model.pt"));
}

TEST_F(ServiceE2eTest, KilledWorkerJobResumesOnTheOtherWorker) {
  cluster_.StartCoordinator();
  const Placed placed = RunOnOneOfTwoWorkers("e2e-lost", 60, 10);
  ASSERT_GE(placed.worker, 0);
  const std::string& job_id = placed.job_id;
  const std::string& victim_id = placed.worker_id;
  const int victim = placed.worker;
  // Its first checkpoint is in the worker's per-rank series, by size and write time.
  const std::string metrics = cluster_.WorkerMetrics(victim);
  EXPECT_THAT(metrics, HasSubstr("peco_worker_rank_checkpoint_bytes{job_id=\"" + job_id));
  EXPECT_THAT(metrics, HasSubstr("peco_worker_rank_checkpoint_seconds{job_id=\"" + job_id));

  const absl::Time killed = absl::Now();
  cluster_.worker(victim)->Kill();

  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_GE(done->attempts_size(), 2);
  const v1::Attempt& last = done->attempts(done->attempts_size() - 1);
  EXPECT_NE(last.placements(0).worker_id(), victim_id);
  EXPECT_GT(last.resume_step(), 0) << "resumed from a checkpoint, not from scratch";
  EXPECT_EQ(done->job().restart_count(), done->attempts_size() - 1);

  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  ASSERT_NE(FinalCheckpoint(*checkpoints), nullptr);
  EXPECT_EQ(FinalCheckpoint(*checkpoints)->step(), 60);

  // The curve has each step once: the lost attempt's points past the resume step are hidden.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok());
  std::vector<int64_t> steps = CurveSteps(*history);
  std::set<int64_t> unique(steps.begin(), steps.end());
  EXPECT_EQ(unique.size(), steps.size()) << "no step twice";
  EXPECT_EQ(*unique.rbegin(), 60);

  int64_t resumed_us = 0;
  for (const v1::WatchJobEvent& event : *history) {
    if (event.has_metric_point() && event.metric_point().attempt() == last.number()) {
      resumed_us = event.metric_point().time_us();
      break;
    }
  }
  std::cout << "[measure] worker loss to first resumed step: "
            << (resumed_us - absl::ToUnixMicros(killed)) / 1000 << " ms\n";
}

TEST_F(ServiceE2eTest, KilledCoordinatorRestartsAndTheJobFinishesWithoutGaps) {
  cluster_.StartCoordinator();
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string job_id = Submit("e2e-coord", 60, 10);
  ASSERT_FALSE(job_id.empty());
  ASSERT_TRUE(WaitForFirstCheckpoint(job_id).ok());

  cluster_.KillCoordinator();
  cluster_.StartCoordinator();

  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->job().attempt(), 1) << "the running trainer was re-attached, not restarted";

  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok());
  std::vector<int64_t> expected(60);
  for (int i = 0; i < 60; ++i) expected[i] = i + 1;
  EXPECT_EQ(CurveSteps(*history), expected) << "no gap, no duplicate";

  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(cluster_.jobs()->ListJobs(cluster_.UserContext().get(), list, &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 1);
}

// The coordinator down for 20 s, longer than the worker timeout, while two jobs run on two
// workers: the trainers go on, the workers buffer what they report, and after the restart each
// job's running attempt is re-attached and finishes with its whole curve, each step once, and
// nothing acknowledged before the outage is lost.
// The coordinator is down for 20 s (longer than the worker timeout, the trainers keep going)
// or 60 s (the jobs finish while it is away, so their results wait on the workers) while two
// jobs run; an immediate restart is KilledCoordinatorRestartsAndTheJobFinishesWithoutGaps.
class CoordinatorOutageTest : public ServiceE2eTest, public ::testing::WithParamInterface<int> {};

TEST_P(CoordinatorOutageTest, LosesNothing) {
  const int outage_seconds = GetParam();
  cluster_.StartCoordinator();
  cluster_.StartWorker();
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(2));
  const std::vector<std::string> jobs = {Submit("e2e-outage-a", 150, 25),
                                         Submit("e2e-outage-b", 150, 25)};
  for (const std::string& job_id : jobs) {
    ASSERT_FALSE(job_id.empty());
    ASSERT_TRUE(WaitForFirstCheckpoint(job_id).ok());
  }
  std::map<std::string, size_t> acknowledged;  // checkpoints committed before the outage
  for (const std::string& job_id : jobs)
    acknowledged[job_id] = cluster_.Checkpoints(job_id)->size();

  cluster_.KillCoordinator();
  std::this_thread::sleep_for(std::chrono::seconds(outage_seconds));  // the outage being tested
  cluster_.StartCoordinator();

  std::vector<int64_t> expected(150);
  for (int i = 0; i < 150; ++i) expected[i] = i + 1;
  for (const std::string& job_id : jobs) {
    absl::StatusOr<v1::GetJobResponse> done =
        cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(300));
    ASSERT_TRUE(done.ok()) << job_id << ": " << done.status();
    absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
    ASSERT_TRUE(history.ok());
    std::vector<int64_t> steps = CurveSteps(*history);
    std::sort(steps.begin(), steps.end());
    EXPECT_EQ(steps, expected) << job_id << ": no gap, no duplicate";
    absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
    ASSERT_TRUE(checkpoints.ok());
    ASSERT_NE(FinalCheckpoint(*checkpoints), nullptr);
    EXPECT_EQ(FinalCheckpoint(*checkpoints)->step(), 150);
    // The workers reconnect within a second of the restart (their channels' reconnect backoff
    // is capped), so the running trainers are re-attached, not restarted.
    EXPECT_EQ(done->attempts_size(), 1) << job_id << ": the first attempt ended with '"
                                        << done->attempts(0).failure_reason() << "'";
    EXPECT_GE(checkpoints->size(), acknowledged[job_id]);
  }
  v1::ListJobsResponse listed;
  ASSERT_TRUE(
      cluster_.jobs()->ListJobs(cluster_.UserContext().get(), v1::ListJobsRequest(), &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 2);
}

INSTANTIATE_TEST_SUITE_P(Outages, CoordinatorOutageTest, ::testing::Values(20, 60),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return absl::StrCat(info.param, "Seconds");
                         });

// Cancel, resume with changes (continue to step 240 instead of 200), fork the result (a new job
// from its final checkpoint to step 260), and the job's history as TensorBoard files.
TEST_F(ServiceE2eTest, CancelResumeWithChangesForkAndTensorboard) {
  cluster_.StartCoordinator();
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string job_id = Submit("e2e-cancel", 200, 50);
  ASSERT_FALSE(job_id.empty());
  // Cancel once the first checkpoint is in, so the stop lands mid-run.
  ASSERT_TRUE(WaitForFirstCheckpoint(job_id).ok());
  CommandResult cancel = cluster_.Peco({"cancel", job_id});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.error;
  absl::StatusOr<v1::GetJobResponse> cancelled =
      cluster_.WaitForState(job_id, v1::JOB_STATE_CANCELLED, absl::Seconds(120));
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();

  // The trainer wrote a checkpoint at the step it stopped: the newest one, at the last step the
  // attempt reported.
  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  ASSERT_FALSE(checkpoints->empty());
  const int64_t stopped_at = checkpoints->back().step();
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok());
  std::vector<int64_t> steps = CurveSteps(*history);
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(stopped_at, steps.back()) << "the stop checkpoint is at the last reported step";
  EXPECT_LT(stopped_at, 200);

  CommandResult resume = cluster_.Peco({"resume", job_id, "--set", "train.max_steps=240"});
  ASSERT_EQ(resume.exit_code, 0) << resume.error;
  // `peco watch` follows the resumed attempt past the CANCELLED in the history.
  CommandResult watch = cluster_.Peco({"watch", job_id});
  EXPECT_EQ(watch.exit_code, 0) << watch.output << watch.error;
  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->attempts(1).resume_step(), stopped_at);
  checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  EXPECT_EQ(FinalCheckpoint(*checkpoints)->step(), 240);  // the resumed config's max_steps
  EXPECT_NE(done->job().spec().config_yaml().find("max_steps: 240"), std::string::npos);

  // A fork: a new job that starts where this one ended and trains on to its own max_steps.
  CommandResult fork =
      cluster_.Peco({"fork", job_id, "--set", "train.max_steps=260", "--name", "e2e-fork"});
  ASSERT_EQ(fork.exit_code, 0) << fork.error;
  const std::string fork_id = JobIdIn(fork.output.substr(fork.output.find(" as ")));
  absl::StatusOr<v1::GetJobResponse> forked =
      cluster_.WaitForState(fork_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(forked.ok()) << forked.status();
  EXPECT_EQ(forked->attempts(0).resume_checkpoint_id(), FinalCheckpoint(*checkpoints)->id());
  EXPECT_EQ(forked->attempts(0).resume_step(), 240);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> fork_checkpoints = cluster_.Checkpoints(fork_id);
  ASSERT_TRUE(fork_checkpoints.ok());
  EXPECT_EQ(FinalCheckpoint(*fork_checkpoints)->step(), 260);
  std::vector<int64_t> fork_steps = CurveSteps(*cluster_.History(fork_id));
  ASSERT_FALSE(fork_steps.empty());
  EXPECT_GT(fork_steps.front(), 240);  // no step of the source is trained again

  // The job's history as TensorBoard files, read back by the suite's independent reader.
  const std::string board = cluster_.root() + "/board";
  CommandResult tensorboard = cluster_.Peco({"tensorboard", job_id, board});
  ASSERT_EQ(tensorboard.exit_code, 0) << tensorboard.error;
  const std::string listing = board + ".txt";
  const std::string command =
      absl::StrCat("/usr/bin/python3 ", PECO_SOURCE_DIR, "/tests/scripts/tensorboard_reader.py '",
                   board, "' > '", listing, "' 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0) << ReadFileToString(listing).value_or("");
  const std::string summaries = ReadFileToString(listing).value_or("");
  EXPECT_NE(summaries.find("240 scalar train/loss"), std::string::npos) << summaries;
  EXPECT_NE(summaries.find("text config"), std::string::npos) << summaries;
}

TEST_F(ServiceE2eTest, BadInputIsRefusedAndNothingIsStored) {
  cluster_.StartCoordinator();

  // Through the CLI: a file that is not YAML.
  const std::string not_yaml = cluster_.root() + "/broken.yaml";
  WriteFileAtomic(not_yaml, "kind: tokenizer\ndata: [unclosed\n").IgnoreError();
  CommandResult broken = cluster_.Peco({"submit", not_yaml});
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_THAT(broken.error, HasSubstr("broken.yaml"));

  // Through the API: each bad spec gets the canonical code and names the field.
  const std::string good_config =
      *ReadFileToString(std::string(PECO_SOURCE_DIR) + "/configs/tokenizer_small.yaml");
  struct Case {
    std::string name;
    v1::JobSpec spec;
    grpc::StatusCode code;
    std::string needle;
  };
  std::vector<Case> cases;
  auto base = [&] {
    v1::JobSpec spec;
    spec.set_kind(v1::JOB_KIND_TOKENIZER);
    spec.set_config_yaml(good_config);
    return spec;
  };
  {
    Case c{"unknown field", base(), grpc::StatusCode::INVALID_ARGUMENT, "surprise"};
    c.spec.set_config_yaml(good_config + "surprise: 1\n");
    cases.push_back(c);
  }
  {
    Case c{"wrong type", base(), grpc::StatusCode::INVALID_ARGUMENT, "train.max_steps"};
    std::string config = good_config;
    config.replace(config.find("max_steps: 300"), 14, "max_steps: many");
    c.spec.set_config_yaml(config);
    cases.push_back(c);
  }
  {
    Case c{"out of range", base(), grpc::StatusCode::INVALID_ARGUMENT, "spec.world_size"};
    c.spec.set_world_size(100000);
    cases.push_back(c);
  }
  {
    Case c{"unknown kind", base(), grpc::StatusCode::INVALID_ARGUMENT, "spec.kind"};
    c.spec.set_kind(static_cast<v1::JobKind>(77));
    cases.push_back(c);
  }
  {
    Case c{"missing dependency", base(), grpc::StatusCode::NOT_FOUND, "spec.depends_on.job_id"};
    c.spec.mutable_depends_on()->set_job_id("job-424242");
    cases.push_back(c);
  }
  {
    Case c{"path outside roots", base(), grpc::StatusCode::INVALID_ARGUMENT, "data.path"};
    std::string config = good_config;
    const std::string from = "path: /usr/share/datasets/fashion-mnist";
    config.replace(config.find(from), from.size(), "path: /etc");
    c.spec.set_config_yaml(config);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = c.spec;
    v1::SubmitJobResponse response;
    grpc::Status status =
        cluster_.jobs()->SubmitJob(cluster_.UserContext().get(), request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.needle)) << c.name;
  }

  // No token is unauthenticated; the worker token on the user API is the wrong role.
  {
    grpc::ClientContext context;
    v1::ListJobsRequest request;
    v1::ListJobsResponse response;
    EXPECT_EQ(cluster_.jobs()->ListJobs(&context, request, &response).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(
        cluster_.jobs()->ListJobs(cluster_.WorkerContext().get(), request, &response).error_code(),
        grpc::StatusCode::PERMISSION_DENIED);
  }

  // A truncated checkpoint upload commits nothing.
  {
    v1::UploadCheckpointResponse response;
    auto context = cluster_.WorkerContext();
    std::unique_ptr<grpc::ClientWriter<v1::UploadCheckpointRequest>> writer =
        cluster_.workers_api()->UploadCheckpoint(context.get(), &response);
    v1::UploadCheckpointRequest header;
    header.mutable_header()->set_job_id("job-000001");
    header.mutable_header()->set_attempt(1);
    writer->Write(header);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_FALSE(status.ok());
  }

  // Nothing was stored and the coordinator still serves.
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  grpc::Status listed = cluster_.jobs()->ListJobs(cluster_.UserContext().get(), list, &jobs);
  ASSERT_TRUE(listed.ok()) << listed.error_message();
  EXPECT_EQ(jobs.jobs_size(), 0);
  EXPECT_TRUE(cluster_.coordinator()->running());
}

// A trainer that hangs mid-run (fault injection, first attempt only) is found stalled, asked for
// its stacks, killed, and the job restarts from its last checkpoint to the same losses as a run
// that never hung.
TEST_F(ServiceE2eTest, HungTrainerIsDumpedKilledAndTheJobResumesStepExact) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(1, {"--stall_timeout=3s", "--stack_dump_grace=2s"});
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string straight = Submit("e2e-straight", 12, 2);
  ASSERT_FALSE(straight.empty());
  ASSERT_TRUE(cluster_.WaitForState(straight, v1::JOB_STATE_SUCCEEDED).ok());

  CommandResult submit = cluster_.Peco(
      {"submit", cluster_.WriteSpec("e2e-hung", 12, 2,
                                    "faults: {attempt: 1, hang_at_step: 5, hang_in: step}\n")});
  ASSERT_EQ(submit.exit_code, 0) << submit.output << submit.error;
  const std::string hung = JobIdIn(submit.output);
  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(hung, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->attempts_size(), 2);
  EXPECT_THAT(done->attempts(0).failure_reason(), HasSubstr("stalled"));
  EXPECT_EQ(done->attempts(1).resume_step(), 4) << "the newest checkpoint before the hang";

  const std::string log = AttemptLog(cluster_, hung, 1);
  EXPECT_THAT(log, HasSubstr("hanging before the step after step 5"));
  EXPECT_THAT(log, HasSubstr("=== SIGQUIT: stacks of every thread"));
  EXPECT_THAT(log, HasSubstr("FaultInjector::Hang"));

  absl::StatusOr<std::vector<v1::WatchJobEvent>> a = cluster_.History(straight);
  absl::StatusOr<std::vector<v1::WatchJobEvent>> b = cluster_.History(hung);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::map<int64_t, double> want = CurveLosses(*a), got = CurveLosses(*b);
  ASSERT_EQ(want.size(), 12u);
  EXPECT_EQ(got, want) << "the resumed run follows the uninterrupted one step for step";

  // Time from the hung attempt's last step to the restarted attempt's first.
  int64_t last_hung_us = 0, first_resumed_us = 0;
  for (const v1::WatchJobEvent& event : *b) {
    if (!event.has_metric_point()) continue;
    const v1::MetricPoint& point = event.metric_point();
    if (point.attempt() == 1) last_hung_us = std::max(last_hung_us, point.time_us());
    if (point.attempt() == 2 && first_resumed_us == 0) first_resumed_us = point.time_us();
  }
  std::cout << "[measure] hang to first resumed step: " << (first_resumed_us - last_hung_us) / 1000
            << " ms (stall timeout 3 s, stack dump grace 2 s)\n";
}

// A NaN loss (fault injection) fails the job at once: no restart would help.
TEST_F(ServiceE2eTest, NanLossFailsTheJobWithoutRestarts) {
  cluster_.StartCoordinator();
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  CommandResult submit = cluster_.Peco(
      {"submit", cluster_.WriteSpec("e2e-nan", 12, 2, "faults: {nan_loss_at_step: 3}\n")});
  ASSERT_EQ(submit.exit_code, 0) << submit.output << submit.error;
  const std::string job_id = JobIdIn(submit.output);
  absl::StatusOr<v1::GetJobResponse> failed =
      cluster_.WaitForState(job_id, v1::JOB_STATE_FAILED, absl::Seconds(120));
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->job().restart_count(), 0);
  EXPECT_EQ(failed->attempts_size(), 1);
  EXPECT_THAT(failed->job().failure_reason(), HasSubstr("non-finite loss"));
  // The worker counts the exit by its cause (the alert PecoLossNotFinite reads it).
  EXPECT_THAT(cluster_.WorkerMetrics(0),
              HasSubstr("peco_worker_trainer_exits_total{cause=\"nonfinite_loss\"} 1"));
}

// Calls whose answers are lost on the way back (fault injection in the worker's client: the
// coordinator acted, the worker saw UNAVAILABLE and retried) leave one copy of everything: each
// step once in the curve, each checkpoint once, one attempt.
TEST_F(ServiceE2eTest, LostAnswersAreRetriedWithoutDuplicates) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(1, {"--rpc_faults=Register:response:1,ReportProgress:response:3,"
                           "UploadCheckpoint:response:2,Heartbeat:response:3"});
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string job_id = Submit("e2e-lossy", 12, 3);
  ASSERT_FALSE(job_id.empty());
  absl::StatusOr<v1::GetJobResponse> done = cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->attempts_size(), 1);

  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok());
  std::vector<int64_t> steps = CurveSteps(*history);
  std::vector<int64_t> want(12);
  for (int i = 0; i < 12; ++i) want[i] = i + 1;
  std::sort(steps.begin(), steps.end());
  EXPECT_EQ(steps, want) << "every step once";

  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  std::set<int64_t> checkpoint_steps;
  for (const v1::CheckpointInfo& info : *checkpoints) {
    EXPECT_TRUE(checkpoint_steps.insert(info.step()).second) << "step " << info.step() << " twice";
  }
  ASSERT_NE(FinalCheckpoint(*checkpoints), nullptr);
  EXPECT_EQ(FinalCheckpoint(*checkpoints)->step(), 12);

  std::ifstream in(cluster_.worker(0)->log_path());
  const std::string log(std::istreambuf_iterator<char>(in), {});
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: ReportProgress response dropped"));
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: UploadCheckpoint response dropped"));
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: Heartbeat response dropped"));
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: Register response dropped"));
  // The lost Register was retried under the id the worker chose: one worker, not two.
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(cluster_.jobs()
                  ->ListWorkers(cluster_.UserContext().get(), v1::ListWorkersRequest(), &workers)
                  .ok());
  EXPECT_EQ(workers.workers_size(), 1);
}

// A worker cut off from the coordinator (its daemon frozen with SIGSTOP past the worker timeout)
// is replaced: the job resumes elsewhere from its last checkpoint. When the frozen worker comes
// back its attempt is stale: it kills that trainer and nothing it reports is taken.
// The coordinator loses SubmitJob answers after creating the job, and then drops a request
// before it arrives: `peco submit` asks again under the same request id and gets the one job; a
// user re-running the command with --request_id gets the same job back.
TEST_F(ServiceE2eTest, LostSubmitAnswersThroughTheCliCreateOneJob) {
  cluster_.StartCoordinator({"--rpc_faults=SubmitJob:response:2,CancelJob:request:1"});
  const std::string spec = cluster_.WriteSpec("e2e-lost-submit", 4, 2);
  CommandResult submit = cluster_.Peco({"submit", spec});
  ASSERT_EQ(submit.exit_code, 0) << submit.output << submit.error;
  const std::string job_id = JobIdIn(submit.output);
  ASSERT_FALSE(job_id.empty()) << submit.output;
  EXPECT_THAT(submit.error, HasSubstr("asking again with the same request id"));

  CommandResult again = cluster_.Peco({"submit", "--request_id", "user-chosen-id-1", spec});
  ASSERT_EQ(again.exit_code, 0) << again.error;
  CommandResult repeated = cluster_.Peco({"submit", "--request_id", "user-chosen-id-1", spec});
  ASSERT_EQ(repeated.exit_code, 0) << repeated.error;
  EXPECT_THAT(repeated.output, HasSubstr("already submitted (same request)"));
  EXPECT_EQ(JobIdIn(repeated.output), JobIdIn(again.output));
  EXPECT_NE(JobIdIn(again.output), job_id);

  // A request lost before the coordinator: the cancel is retried and happens once.
  CommandResult cancel = cluster_.Peco({"cancel", job_id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.error;

  CommandResult list = cluster_.Peco({"-o", "name", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.error;
  std::vector<std::string> ids = absl::StrSplit(list.output, '\n', absl::SkipEmpty());
  EXPECT_EQ(ids.size(), 2u) << list.output;
  absl::StatusOr<v1::GetJobResponse> cancelled =
      cluster_.WaitForState(job_id, v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(cancelled.ok()) << cancelled.status();

  const std::string log = ReadFileToString(cluster_.coordinator()->log_path()).value_or("");
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: SubmitJob answer dropped (it was OK)"));
  EXPECT_THAT(log, HasSubstr("RPC FAULT INJECTION: CancelJob request dropped"));
}

// Tokens issued with `peco-coordinator tokens`: one works in the CLI until it is revoked, one
// that expired yesterday is refused by name, and the worker token cannot act as a user.
// A rogue worker with a valid worker token of its own (issued by the real coordinator daemon)
// tries to fail, poison and steal a job that runs on a real worker: every attempt is refused, and
// the job finishes with its own final checkpoint.
TEST_F(ServiceE2eTest, ARogueWorkerWithItsOwnTokenCannotTouchAnotherWorkersJob) {
  cluster_.StartCoordinator();
  const std::string out = cluster_.root() + "/rogue.token";
  const std::string command =
      absl::StrCat("'", PECO_COORDINATOR_BINARY, "' --data_dir '", cluster_.data_dir(),
                   "' tokens issue --name rogue --role worker --ttl 1h >'", out, "'");
  ASSERT_EQ(std::system(command.c_str()), 0);
  const std::string rogue(absl::StripAsciiWhitespace(ReadFileToString(out).value_or("")));
  ASSERT_EQ(rogue.size(), 64u);
  cluster_.StartWorker();
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string job_id = Submit("e2e-rogue", 200, 40);
  ASSERT_FALSE(job_id.empty());
  ASSERT_TRUE(WaitForFirstCheckpoint(job_id).ok());
  auto as_rogue = [&] {
    auto context = std::make_unique<grpc::ClientContext>();
    context->AddMetadata("authorization", "Bearer " + rogue);
    context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return context;
  };

  // It registers, under its own name whatever it asks for.
  v1::RegisterRequest reg;
  reg.mutable_worker()->set_id(cluster_.WorkerId(0));
  reg.mutable_worker()->mutable_devices()->set_cpu_slots(1);
  reg.mutable_worker()->mutable_ports()->set_first(29900);
  reg.mutable_worker()->mutable_ports()->set_last(29900);
  v1::RegisterResponse registered;
  ASSERT_TRUE(cluster_.workers_api()->Register(as_rogue().get(), reg, &registered).ok());
  EXPECT_EQ(registered.worker_id(), "rogue");

  // A fatal result for the job, as itself and as the real worker.
  v1::HeartbeatRequest beat;
  beat.set_worker_id("rogue");
  v1::AttemptResult* fatal = beat.add_finished();
  fatal->set_job_id(job_id);
  fatal->set_attempt(1);
  fatal->set_result(v1::AttemptResult::RESULT_FAILED);
  fatal->set_retryable(false);
  fatal->set_reason("planted");
  v1::HeartbeatResponse reply;
  EXPECT_TRUE(cluster_.workers_api()->Heartbeat(as_rogue().get(), beat, &reply).ok());
  beat.set_worker_id(cluster_.WorkerId(0));
  EXPECT_EQ(cluster_.workers_api()->Heartbeat(as_rogue().get(), beat, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // A planted "final" checkpoint, which would become the job's resume point and its dependents'
  // input.
  v1::UploadCheckpointResponse uploaded;
  auto context = as_rogue();
  auto writer = cluster_.workers_api()->UploadCheckpoint(context.get(), &uploaded);
  v1::UploadCheckpointRequest header;
  header.mutable_header()->set_job_id(job_id);
  header.mutable_header()->set_attempt(1);
  header.mutable_header()->set_step(200);
  header.mutable_header()->set_final(true);
  writer->Write(header);
  writer->WritesDone();
  grpc::Status planted = writer->Finish();
  EXPECT_EQ(planted.error_code(), grpc::StatusCode::PERMISSION_DENIED) << planted.error_message();

  // Nothing changed: the job runs on and ends with its own final checkpoint.
  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->job().restart_count(), 0);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok());
  for (const v1::CheckpointInfo& info : *checkpoints) EXPECT_EQ(info.attempt(), 1);
  ASSERT_NE(FinalCheckpoint(*checkpoints), nullptr);
  EXPECT_EQ(FinalCheckpoint(*checkpoints)->step(), 200);
}

TEST_F(ServiceE2eTest, IssuedTokensThroughTheCli) {
  cluster_.StartCoordinator();
  auto tokens = [&](const std::string& arguments) {
    const std::string out = cluster_.root() + "/tokens.out";
    const std::string command =
        absl::StrCat("'", PECO_COORDINATOR_BINARY, "' --data_dir '", cluster_.data_dir(), "' ",
                     arguments, " >'", out, "' 2>&1");
    const int status = std::system(command.c_str());
    CommandResult result;
    result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.output = ReadFileToString(out).value_or("");
    return result;
  };
  CommandResult issued = tokens("tokens issue --name alice --role user --ttl 1h");
  ASSERT_EQ(issued.exit_code, 0) << issued.output;
  const std::string alice(absl::StripAsciiWhitespace(issued.output));
  ASSERT_EQ(alice.size(), 64u) << issued.output;
  EXPECT_EQ(tokens("tokens issue --name alice").exit_code, 1) << "the name is taken";
  EXPECT_EQ(tokens("tokens issue --name bob --role root").exit_code, 2);
  EXPECT_EQ(tokens("tokens issue --name admin --role user").exit_code, 2) << "reserved";
  CommandResult bob_issued = tokens("tokens issue --name bob --role user --ttl 1h");
  ASSERT_EQ(bob_issued.exit_code, 0) << bob_issued.output;
  const std::string bob(absl::StripAsciiWhitespace(bob_issued.output));

  CommandResult listed = cluster_.Peco({"--token", alice, "list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.error;

  // A second user: alice's job is hers; bob cannot see or cancel it; the admin (the primary
  // token) sees whose it is and who tried what.
  CommandResult submitted = cluster_.Peco(
      {"--token", alice, "submit", cluster_.WriteSpec("e2e-alice", 4, 1), "-o", "name"});
  ASSERT_EQ(submitted.exit_code, 0) << submitted.error;
  const std::string job(absl::StripAsciiWhitespace(submitted.output));
  CommandResult bob_get = cluster_.Peco({"--token", bob, "get", job});
  EXPECT_EQ(bob_get.exit_code, 1);
  EXPECT_THAT(bob_get.error, HasSubstr("belongs to another user"));
  EXPECT_EQ(cluster_.Peco({"--token", bob, "cancel", job}).exit_code, 1);
  CommandResult bob_list = cluster_.Peco({"--token", bob, "-o", "name", "list"});
  ASSERT_EQ(bob_list.exit_code, 0) << bob_list.error;
  EXPECT_EQ(bob_list.output, "");
  CommandResult admin_get = cluster_.Peco({"get", job});
  ASSERT_EQ(admin_get.exit_code, 0) << admin_get.error;
  EXPECT_THAT(admin_get.output, ::testing::ContainsRegex("Owner: +alice"));
  EXPECT_THAT(admin_get.output, ::testing::ContainsRegex("alice +submit +OK"));
  EXPECT_THAT(admin_get.output, ::testing::ContainsRegex("bob +get +PERMISSION_DENIED"));
  EXPECT_THAT(admin_get.output, ::testing::ContainsRegex("bob +cancel +PERMISSION_DENIED"));
  ASSERT_EQ(cluster_.Peco({"--token", alice, "cancel", job}).exit_code, 0);

  // A token that expired yesterday, written as `tokens issue` writes it.
  const std::string stale = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  const std::string yesterday =
      absl::FormatTime(absl::RFC3339_sec, absl::Now() - absl::Hours(24), absl::UTCTimeZone());
  std::string file = ReadFileToString(cluster_.data_dir() + "/issued_tokens").value_or("");
  absl::StrAppend(&file, "carol user ", yesterday, " ", Sha256Hex(stale), "\n");
  ASSERT_TRUE(WriteFileAtomic(cluster_.data_dir() + "/issued_tokens", file).ok());
  CommandResult expired = cluster_.Peco({"--token", stale, "list"});
  EXPECT_EQ(expired.exit_code, 1);
  EXPECT_THAT(expired.error, HasSubstr("token 'carol' expired at"));
  EXPECT_THAT(tokens("tokens list").output, HasSubstr("carol\tuser"));

  const std::string worker_token(absl::StripAsciiWhitespace(
      ReadFileToString(cluster_.data_dir() + "/worker.token").value_or("")));
  CommandResult wrong_role =
      cluster_.Peco({"--token", worker_token, "submit", cluster_.WriteSpec("e2e-role", 4, 2)});
  EXPECT_EQ(wrong_role.exit_code, 1);
  EXPECT_THAT(wrong_role.error, HasSubstr("a worker token cannot call the user API"));

  ASSERT_EQ(tokens("tokens revoke --name alice").exit_code, 0);
  CommandResult revoked = cluster_.Peco({"--token", alice, "list"});
  EXPECT_EQ(revoked.exit_code, 1);
  EXPECT_THAT(revoked.error, HasSubstr("wrong token"));
  CommandResult jobs = cluster_.Peco({"-o", "name", "list"});
  ASSERT_EQ(jobs.exit_code, 0) << jobs.error;
  EXPECT_EQ(jobs.output, job + "\n") << "only alice's job was submitted";
}

TEST_F(ServiceE2eTest, FrozenWorkerIsReplacedAndItsStaleAttemptStoppedWhenItReturns) {
  cluster_.StartCoordinator({"--worker_timeout=5s"});
  const Placed placed = RunOnOneOfTwoWorkers("e2e-frozen", 60, 5);
  ASSERT_GE(placed.worker, 0);
  const std::string& job_id = placed.job_id;
  const std::string& frozen_id = placed.worker_id;
  const int frozen = placed.worker;

  const absl::Time stopped = absl::Now();
  cluster_.worker(frozen)->SignalDaemonOnly(SIGSTOP);
  absl::StatusOr<v1::GetJobResponse> moved = cluster_.WaitForJob(
      job_id,
      [&](const v1::GetJobResponse& job) {
        return job.attempts_size() >= 2 &&
               job.attempts(job.attempts_size() - 1).placements(0).worker_id() != frozen_id;
      },
      absl::Seconds(120));
  const absl::Duration to_replace = absl::Now() - stopped;
  cluster_.worker(frozen)->SignalDaemonOnly(SIGCONT);
  ASSERT_TRUE(moved.ok()) << moved.status();

  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  const v1::Attempt& last = done->attempts(done->attempts_size() - 1);
  EXPECT_NE(last.placements(0).worker_id(), frozen_id);
  EXPECT_GT(last.resume_step(), 0) << "resumed from a checkpoint, not from scratch";

  // The returned worker was told its attempt is stale and killed the trainer.
  const std::string stale = absl::StrCat("killed stale job ", job_id);
  absl::StatusOr<v1::GetJobResponse> after = cluster_.WaitForJob(
      job_id,
      [&](const v1::GetJobResponse&) {
        std::ifstream in(cluster_.worker(frozen)->log_path());
        return std::string(std::istreambuf_iterator<char>(in), {}).find(stale) != std::string::npos;
      },
      absl::Seconds(60));
  EXPECT_TRUE(after.ok()) << "the frozen worker's log never said '" << stale << "'";

  // Its late reports were refused: the curve has each step once.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok());
  std::vector<int64_t> steps = CurveSteps(*history);
  std::set<int64_t> unique(steps.begin(), steps.end());
  EXPECT_EQ(unique.size(), steps.size()) << "no step twice";
  EXPECT_EQ(*unique.rbegin(), 60);
  std::cout << "[measure] frozen worker to replacement attempt: "
            << absl::ToInt64Milliseconds(to_replace) << " ms (worker timeout 5 s)\n";
}

}  // namespace
}  // namespace peco::e2e
