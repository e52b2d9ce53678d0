#include "coordinator/sqlite_job_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

std::string MakeTempDir() {
  std::string pattern = absl::StrCat(::testing::TempDir(), "/sqlite_job_store_test_XXXXXX");
  char* dir = ::mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

v1::JobSpec Spec(const std::string& name, int32_t world_size = 1) {
  v1::JobSpec spec;
  spec.set_kind(v1::JOB_KIND_PRETRAIN);
  spec.set_name(name);
  spec.set_config_yaml("model: vit_tiny\nsteps: 100\n");
  spec.set_world_size(world_size);
  spec.mutable_devices_per_rank()->set_gpus(1);
  spec.set_priority(3);
  spec.set_max_restarts(2);
  spec.mutable_depends_on()->set_job_id("job-000000");
  (*spec.mutable_labels())["team"] = "vision";
  return spec;
}

v1::MetricPoint Point(const std::string& job_id, int64_t attempt, int64_t step, double loss,
                      int32_t rank = 0) {
  v1::MetricPoint point;
  point.set_job_id(job_id);
  point.set_attempt(attempt);
  point.set_rank(rank);
  point.set_step(step);
  (*point.mutable_values())["loss"] = loss;
  point.set_time_us(1000 + step);
  return point;
}

class SqliteJobStoreTest : public ::testing::Test {
 protected:
  SqliteJobStoreTest() : dir_(MakeTempDir()) { Reopen(); }

  void Reopen() {
    store_.reset();  // closes the database before it is opened again
    SqliteJobStore::Options options;
    options.path = dir_ + "/coordinator.db";
    absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  v1::Job Submit(const std::string& name, const std::string& request_id = "") {
    NewJob new_job;
    new_job.spec = Spec(name);
    new_job.client_request_id = request_id;
    new_job.submit_time_us = 42;
    absl::StatusOr<CreateJobResult> result = store_->CreateJob(new_job);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? result->job : v1::Job();
  }

  NewAttempt Attempt(const std::string& job_id, int64_t expected, int64_t resume_step = 0) {
    NewAttempt attempt;
    attempt.job_id = job_id;
    attempt.expected_attempt = expected;
    attempt.resume_step = resume_step;
    attempt.resume_checkpoint_id = resume_step > 0 ? absl::StrCat("ckpt-", resume_step) : "";
    v1::RankPlacement placement;
    placement.set_worker_id("w1");
    placement.add_ranks(0);
    attempt.placements.push_back(placement);
    attempt.master_addr = "10.0.0.1";
    attempt.master_port = 29500;
    attempt.time_us = 100 * (expected + 1);
    return attempt;
  }

  absl::StatusOr<v1::Job> SetState(const std::string& job_id, int64_t attempt, v1::JobState state,
                                   const std::string& reason = "") {
    return store_->UpdateJobState({job_id, attempt, state, reason, 500});
  }

  // Runs a job's first attempt and then restarts it from `resume_step` as attempt 2.
  void RunThenRestart(const std::string& job_id, int64_t resume_step) {
    ASSERT_TRUE(store_->BeginAttempt(Attempt(job_id, 0)).ok());
    ASSERT_TRUE(SetState(job_id, 1, v1::JOB_STATE_RUNNING).ok());
    ASSERT_TRUE(SetState(job_id, 1, v1::JOB_STATE_RESTARTING, "worker lost").ok());
    ASSERT_TRUE(store_->BeginAttempt(Attempt(job_id, 1, resume_step)).ok());
  }

  std::string dir_;
  std::unique_ptr<SqliteJobStore> store_;
};

TEST(SqliteJobStoreOptionsTest, ValidateNamesTheField) {
  SqliteJobStore::Options options;
  EXPECT_THAT(options.Validate().message(), HasSubstr("path"));
  options.path = "/tmp/x.db";
  EXPECT_TRUE(options.Validate().ok());
  options.busy_timeout_ms = -1;
  EXPECT_THAT(options.Validate().message(), HasSubstr("busy_timeout_ms"));
  EXPECT_EQ(SqliteJobStore::Open(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(SqliteJobStoreOptionsTest, OpenFailsInAMissingDirectory) {
  SqliteJobStore::Options options;
  options.path = "/nonexistent-peco-dir/sub/coordinator.db";
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("opening the job store"));
}

TEST_F(SqliteJobStoreTest, CreateThenGetRoundTripsTheJob) {
  v1::Job a = Submit("a");
  v1::Job b = Submit("b");
  EXPECT_EQ(a.id(), "job-000001");
  EXPECT_EQ(b.id(), "job-000002");
  EXPECT_LT(a.submit_seq(), b.submit_seq());
  absl::StatusOr<v1::Job> got = store_->GetJob(a.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(got->attempt(), 0);
  EXPECT_EQ(got->submit_time_us(), 42);
  EXPECT_EQ(got->spec().config_yaml(), "model: vit_tiny\nsteps: 100\n");
  EXPECT_EQ(got->spec().max_restarts(), 2);
  EXPECT_EQ(got->spec().depends_on().job_id(), "job-000000");
  EXPECT_EQ(got->spec().labels().at("team"), "vision");
  EXPECT_EQ(store_->GetJob("job-999999").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, CreateRefusesANonInitialState) {
  NewJob new_job;
  new_job.spec = Spec("x");
  new_job.initial_state = v1::JOB_STATE_RUNNING;
  EXPECT_EQ(store_->CreateJob(new_job).status().code(), absl::StatusCode::kInvalidArgument);
  new_job.initial_state = v1::JOB_STATE_WAITING;
  absl::StatusOr<CreateJobResult> result = store_->CreateJob(new_job);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->job.state(), v1::JOB_STATE_WAITING);
}

TEST_F(SqliteJobStoreTest, SubmitIsIdempotentOnClientRequestId) {
  NewJob new_job;
  new_job.spec = Spec("a");
  new_job.client_request_id = "req-1";
  absl::StatusOr<CreateJobResult> first = store_->CreateJob(new_job);
  absl::StatusOr<CreateJobResult> retry = store_->CreateJob(new_job);
  ASSERT_TRUE(first.ok() && retry.ok());
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(retry->created);
  EXPECT_EQ(first->job.id(), retry->job.id());

  new_job.spec.set_priority(9);  // same key, different request
  absl::StatusOr<CreateJobResult> conflict = store_->CreateJob(new_job);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(conflict.status().message(), HasSubstr(first->job.id()));

  absl::StatusOr<JobPage> page = store_->ListJobs({});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->jobs.size(), 1u);
}

TEST_F(SqliteJobStoreTest, ConcurrentRetriesCreateOneJob) {
  std::vector<std::thread> threads;
  std::vector<absl::StatusOr<CreateJobResult>> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([this, i, &results] {
      NewJob new_job;
      new_job.spec = Spec("a");
      new_job.client_request_id = "same-key";
      results[i] = store_->CreateJob(new_job);
    });
  }
  for (std::thread& t : threads) t.join();
  int created = 0;
  std::set<std::string> ids;
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    created += result->created ? 1 : 0;
    ids.insert(result->job.id());
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(ids.size(), 1u);
}

TEST_F(SqliteJobStoreTest, SyncSharesFlushesBetweenConcurrentWriters) {
  EXPECT_TRUE(store_->Sync().ok()) << "nothing written yet";
  constexpr int kThreads = 6;
  constexpr int kJobs = 10;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &results] {
      for (int i = 0; i < kJobs && results[t].ok(); ++i) {
        NewJob new_job;
        new_job.spec = Spec(absl::StrCat("job-", t, "-", i));
        results[t] = store_->CreateJob(new_job).status();
        if (results[t].ok()) results[t] = store_->Sync();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& result : results) EXPECT_TRUE(result.ok()) << result;
  Reopen();
  JobQuery query;
  query.page_size = 1000;
  absl::StatusOr<JobPage> page = store_->ListJobs(query);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->jobs.size(), static_cast<size_t>(kThreads * kJobs));
}

TEST_F(SqliteJobStoreTest, BatchOfAttemptsSkipsTheRefusedAndStartsTheRest) {
  const v1::Job a = Submit("a");
  const v1::Job b = Submit("b");
  const v1::Job c = Submit("c");
  absl::StatusOr<std::vector<absl::StatusOr<JobStore::StartedAttempt>>> results =
      store_->BeginAttempts(
          {Attempt(a.id(), 0), Attempt(b.id(), 7), Attempt(c.id(), 0), Attempt("job-nope", 0)});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 4u);
  ASSERT_TRUE((*results)[0].ok());
  EXPECT_EQ((*results)[0]->job.state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ((*results)[0]->attempt.number(), 1);
  EXPECT_EQ((*results)[1].status().code(), absl::StatusCode::kFailedPrecondition) << "fenced";
  ASSERT_TRUE((*results)[2].ok());
  EXPECT_EQ((*results)[3].status().code(), absl::StatusCode::kNotFound);
  Reopen();
  EXPECT_EQ(store_->GetJob(a.id())->state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(store_->GetJob(b.id())->state(), v1::JOB_STATE_QUEUED)
      << "the refused one is untouched";
  EXPECT_EQ(store_->GetJob(b.id())->attempt(), 0);
  EXPECT_EQ(store_->GetJob(c.id())->state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(store_->ListAttempts(c.id())->size(), 1u);
}

TEST_F(SqliteJobStoreTest, ListJobsFiltersByStateAndPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(Submit(absl::StrCat("j", i)).id());
  ASSERT_TRUE(SetState(ids[1], 0, v1::JOB_STATE_CANCELLED).ok());
  ASSERT_TRUE(SetState(ids[3], 0, v1::JOB_STATE_CANCELLED).ok());

  JobQuery query;
  query.page_size = 2;
  std::vector<std::string> seen;
  int pages = 0;
  do {
    absl::StatusOr<JobPage> page = store_->ListJobs(query);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const v1::Job& job : page->jobs) seen.push_back(job.id());
    query.page_token = page->next_page_token;
    ++pages;
  } while (!query.page_token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, ids);

  JobQuery cancelled;
  cancelled.states = {v1::JOB_STATE_CANCELLED};
  absl::StatusOr<JobPage> page = store_->ListJobs(cancelled);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->jobs.size(), 2u);
  EXPECT_EQ(page->jobs[0].id(), ids[1]);
  EXPECT_EQ(page->jobs[1].id(), ids[3]);
  EXPECT_EQ(page->next_page_token, "");

  JobQuery bad;
  bad.page_token = "not-a-number";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.page_token = "";
  bad.page_size = 0;
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteJobStoreTest, LifeCycleSetsTimesAndAttemptRecords) {
  std::string id = Submit("a").id();
  absl::StatusOr<v1::Attempt> attempt = store_->BeginAttempt(Attempt(id, 0));
  ASSERT_TRUE(attempt.ok()) << attempt.status();
  EXPECT_EQ(attempt->number(), 1);
  ASSERT_TRUE(store_->UpdateJobState({id, 1, v1::JOB_STATE_RUNNING, "", 700}).ok());
  absl::StatusOr<v1::Job> done = store_->UpdateJobState({id, 1, v1::JOB_STATE_SUCCEEDED, "", 900});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->start_time_us(), 700);
  EXPECT_EQ(done->end_time_us(), 900);
  absl::StatusOr<std::vector<v1::Attempt>> attempts = store_->ListAttempts(id);
  ASSERT_TRUE(attempts.ok());
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ((*attempts)[0].state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ((*attempts)[0].end_time_us(), 900);
  EXPECT_EQ((*attempts)[0].master_port(), 29500);
}

TEST_F(SqliteJobStoreTest, IllegalTransitionIsRefusedAndChangesNothing) {
  std::string id = Submit("a").id();
  absl::StatusOr<v1::Job> refused = SetState(id, 0, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("queued -> succeeded"));
  EXPECT_EQ(store_->GetJob(id)->state(), v1::JOB_STATE_QUEUED);
}

TEST_F(SqliteJobStoreTest, FencingRefusesWritesFromAnOldAttempt) {
  std::string id = Submit("a").id();
  RunThenRestart(id, /*resume_step=*/0);  // now at attempt 2, ASSIGNED

  // The old attempt's late reports: state change, metrics, checkpoint, a second BeginAttempt.
  absl::StatusOr<v1::Job> stale = SetState(id, 1, v1::JOB_STATE_FAILED, "rank crashed");
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AppendMetricPoints(id, 1, {Point(id, 1, 5, 0.5)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  v1::CheckpointInfo old_ckpt;
  old_ckpt.set_id("ckpt-old");
  old_ckpt.set_job_id(id);
  old_ckpt.set_attempt(1);
  EXPECT_EQ(store_->AddCheckpoint(old_ckpt).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->BeginAttempt(Attempt(id, 1)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  absl::StatusOr<v1::Job> job = store_->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(job->attempt(), 2);
  EXPECT_EQ(job->restart_count(), 1);
  EXPECT_EQ(job->failure_reason(), "");
  EXPECT_THAT(store_->ListMetricPoints({id, std::nullopt, true}).value(), IsEmpty());
  EXPECT_EQ(store_->GetCheckpoint("ckpt-old").status().code(), absl::StatusCode::kNotFound);

  // The current attempt is accepted.
  EXPECT_TRUE(SetState(id, 2, v1::JOB_STATE_RUNNING).ok());
  EXPECT_EQ(*store_->AppendMetricPoints(id, 2, {Point(id, 2, 5, 0.5)}), 1);
}

TEST_F(SqliteJobStoreTest, ControlFieldsAreFencedDurableAndClearedByTheNextAttempt) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());

  JobControlUpdate stale;
  stale.job_id = id;
  stale.expected_attempt = 0;
  stale.cancel_requested_time_us = 7;
  EXPECT_EQ(store_->UpdateJobControl(stale).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetJob(id)->cancel_requested_time_us(), 0);

  JobControlUpdate cancel;
  cancel.job_id = id;
  cancel.expected_attempt = 1;
  cancel.cancel_requested_time_us = 900;
  cancel.cancel_reason = "user asked";
  cancel.next_resume_checkpoint_id = "ckpt-3";
  absl::StatusOr<v1::Job> job = store_->UpdateJobControl(cancel);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::JOB_STATE_ASSIGNED);
  Reopen();
  job = store_->GetJob(id);
  EXPECT_EQ(job->cancel_requested_time_us(), 900);
  EXPECT_EQ(job->cancel_reason(), "user asked");
  EXPECT_EQ(job->next_resume_checkpoint_id(), "ckpt-3");

  // Only the given fields change.
  JobControlUpdate only_resume;
  only_resume.job_id = id;
  only_resume.expected_attempt = 1;
  only_resume.next_resume_checkpoint_id = "";
  job = store_->UpdateJobControl(only_resume);
  EXPECT_EQ(job->cancel_reason(), "user asked");
  EXPECT_EQ(job->next_resume_checkpoint_id(), "");

  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_CANCELLED).ok());
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING).ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1)).ok());
  job = store_->GetJob(id);
  EXPECT_EQ(job->cancel_requested_time_us(), 0);
  EXPECT_EQ(job->cancel_reason(), "");
}

TEST_F(SqliteJobStoreTest, PointsMustMatchTheFencedAttempt) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  // Claims attempt 1 but carries a point from attempt 0: the whole batch is refused.
  absl::StatusOr<int64_t> result =
      store_->AppendMetricPoints(id, 1, {Point(id, 1, 1, 0.1), Point(id, 0, 2, 0.2)});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store_->ListMetricPoints({id, std::nullopt, true}).value(), IsEmpty());
}

TEST_F(SqliteJobStoreTest, MetricAppendIsIdempotentFirstWriteWins) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  v1::MetricPoint point = Point(id, 1, 10, 0.9);
  (*point.mutable_values())["lr"] = 1e-4;
  EXPECT_EQ(*store_->AppendMetricPoints(id, 1, {point}), 2);
  v1::MetricPoint resent = Point(id, 1, 10, 123.0);  // a resend with a different value
  EXPECT_EQ(*store_->AppendMetricPoints(id, 1, {resent, point}), 0);
  std::vector<v1::MetricPoint> points = store_->ListMetricPoints({id}).value();
  ASSERT_EQ(points.size(), 1u);
  EXPECT_THAT(points[0].values(), UnorderedElementsAre(Pair("loss", 0.9), Pair("lr", 1e-4)));
}

TEST_F(SqliteJobStoreTest, HistoryHidesPointsOfAFailedAttemptPastTheResumeStep) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  std::vector<v1::MetricPoint> first;
  for (int64_t step : {10, 20, 30, 40, 50}) first.push_back(Point(id, 1, step, 1.0));
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, first), 5);
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING, "worker lost").ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/20)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 2, {Point(id, 2, 30, 2.0), Point(id, 2, 40, 2.0)}), 2);

  std::vector<std::pair<int64_t, int64_t>> curve;  // (step, attempt)
  for (const v1::MetricPoint& p : store_->ListMetricPoints({id}).value()) {
    curve.emplace_back(p.step(), p.attempt());
  }
  EXPECT_THAT(curve, ElementsAre(Pair(10, 1), Pair(20, 1), Pair(30, 2), Pair(40, 2)));

  std::vector<std::pair<int64_t, int64_t>> all;
  for (const v1::MetricPoint& p : store_->ListMetricPoints({id, std::nullopt, true}).value()) {
    all.emplace_back(p.step(), p.attempt());
  }
  EXPECT_THAT(all, ElementsAre(Pair(10, 1), Pair(20, 1), Pair(30, 1), Pair(30, 2), Pair(40, 1),
                               Pair(40, 2), Pair(50, 1)));
}

TEST_F(SqliteJobStoreTest, AFreshRestartHidesTheWholeEarlierCurve) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {Point(id, 1, 0, 1.0), Point(id, 1, 5, 1.0)}), 2);
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING, "crash before any checkpoint").ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/0)).ok());
  std::vector<v1::MetricPoint> curve = store_->ListMetricPoints({id}).value();
  ASSERT_EQ(curve.size(), 1u);  // step 0 of attempt 1 is not past the resume step
  EXPECT_EQ(curve[0].step(), 0);
}

TEST_F(SqliteJobStoreTest, MetricQueryFiltersByRank) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {Point(id, 1, 1, 0.1, 0), Point(id, 1, 1, 0.2, 1)}),
            2);
  MetricQuery query{id, 1};
  std::vector<v1::MetricPoint> points = store_->ListMetricPoints(query).value();
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].rank(), 1);
  EXPECT_EQ(points[0].values().at("loss"), 0.2);
  EXPECT_EQ(store_->ListMetricPoints({"job-404"}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SqliteJobStoreTest, CheckpointRecordsAreIdempotentAndOrdered) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  v1::CheckpointInfo late, early;
  late.set_id("ckpt-b");
  late.set_job_id(id);
  late.set_attempt(1);
  late.set_step(200);
  late.set_bytes(1234);
  v1::ManifestEntry* entry = late.add_manifest();
  entry->set_name("model.pt");
  entry->set_size(1234);
  entry->set_sha256(std::string(64, 'a'));
  early = late;
  early.set_id("ckpt-a");
  early.set_step(100);
  ASSERT_TRUE(store_->AddCheckpoint(late).ok());
  ASSERT_TRUE(store_->AddCheckpoint(early).ok());
  EXPECT_TRUE(store_->AddCheckpoint(late).ok());  // retried upload
  v1::CheckpointInfo changed = late;
  changed.set_bytes(1);
  EXPECT_EQ(store_->AddCheckpoint(changed).code(), absl::StatusCode::kAlreadyExists);

  std::vector<v1::CheckpointInfo> listed = store_->ListCheckpoints(id).value();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].id(), "ckpt-a");
  EXPECT_EQ(listed[1].id(), "ckpt-b");
  EXPECT_EQ(listed[1].manifest(0).sha256(), std::string(64, 'a'));

  EXPECT_TRUE(store_->DeleteCheckpoint("ckpt-a").ok());
  EXPECT_TRUE(store_->DeleteCheckpoint("ckpt-a").ok());  // idempotent
  EXPECT_EQ(store_->GetCheckpoint("ckpt-a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListCheckpoints(id).value().size(), 1u);
}

TEST_F(SqliteJobStoreTest, WorkersUpsertAndList) {
  v1::WorkerInfo worker;
  worker.set_id("w2");
  worker.set_host("gpu-2");
  worker.mutable_devices()->set_gpus(8);
  worker.mutable_ports()->set_first(29500);
  worker.mutable_ports()->set_last(29599);
  worker.set_state(v1::WORKER_STATE_ALIVE);
  ASSERT_TRUE(store_->UpsertWorker(worker).ok());
  worker.set_id("w1");
  ASSERT_TRUE(store_->UpsertWorker(worker).ok());
  worker.set_state(v1::WORKER_STATE_DEAD);
  worker.set_last_heartbeat_us(77);
  ASSERT_TRUE(store_->UpsertWorker(worker).ok());

  std::vector<v1::WorkerInfo> workers = store_->ListWorkers().value();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].id(), "w1");
  EXPECT_EQ(workers[0].state(), v1::WORKER_STATE_DEAD);
  EXPECT_EQ(workers[0].last_heartbeat_us(), 77);
  EXPECT_EQ(workers[1].ports().last(), 29599);
  EXPECT_EQ(store_->GetWorker("w9").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->UpsertWorker(v1::WorkerInfo()).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SqliteJobStoreTest, EverythingSurvivesAReopen) {
  v1::Job job = Submit("durable", "req-7");
  RunThenRestart(job.id(), /*resume_step=*/20);
  ASSERT_EQ(*store_->AppendMetricPoints(job.id(), 2, {Point(job.id(), 2, 30, 0.3)}), 1);
  v1::CheckpointInfo ckpt;
  ckpt.set_id("ckpt-1");
  ckpt.set_job_id(job.id());
  ckpt.set_attempt(2);
  ckpt.set_step(30);
  ASSERT_TRUE(store_->AddCheckpoint(ckpt).ok());
  v1::WorkerInfo worker;
  worker.set_id("w1");
  ASSERT_TRUE(store_->UpsertWorker(worker).ok());

  Reopen();

  absl::StatusOr<v1::Job> got = store_->GetJob(job.id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->attempt(), 2);
  EXPECT_EQ(got->state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(got->spec().name(), "durable");
  EXPECT_EQ(store_->ListAttempts(job.id()).value().size(), 2u);
  EXPECT_EQ(store_->ListAttempts(job.id()).value()[1].resume_step(), 20);
  EXPECT_EQ(store_->ListMetricPoints({job.id()}).value().size(), 1u);
  EXPECT_EQ(store_->GetCheckpoint("ckpt-1").value().step(), 30);
  EXPECT_EQ(store_->ListWorkers().value().size(), 1u);
  // Fencing and idempotency state survive too.
  EXPECT_EQ(SetState(job.id(), 1, v1::JOB_STATE_RUNNING).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Submit("durable", "req-7").id(), job.id());
  EXPECT_EQ(Submit("next").id(), "job-000002");
}

TEST_F(SqliteJobStoreTest, RefusesADatabaseFromANewerSchema) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ + "/coordinator.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  SqliteJobStore::Options options;
  options.path = dir_ + "/coordinator.db";
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
}

}  // namespace
}  // namespace peco::coordinator
