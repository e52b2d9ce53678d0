// The job stores: the JobStore contract (coordinator/job_store.h), run against every
// implementation (the production SqliteJobStore on a fresh database file and the in-memory
// MemoryJobStore), then what only SQLite has (its options, its file, durability across a
// reopen, group commit and schema versions).
#include "coordinator/job_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "coordinator/memory_job_store.h"
#include "coordinator/sqlite_job_store.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// One implementation under test.
struct StoreKind {
  const char* name;
  // Opens the store kept in `dir` (a fresh empty directory the first time). Called again with
  // the same directory, a durable store opens the same data.
  absl::StatusOr<std::unique_ptr<JobStore>> (*open)(const std::string& dir);
  // Whether the data outlives the object. Reopen() is a no-op for a store that is not durable
  // (its object is kept), so that a test checks whatever a durable store adds on top.
  bool durable;

  friend void PrintTo(const StoreKind& kind, std::ostream* os) { *os << kind.name; }
};

absl::StatusOr<std::unique_ptr<JobStore>> OpenSqlite(const std::string& dir) {
  SqliteJobStore::Options options;
  options.path = dir + "/coordinator.db";
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(std::move(*store));
}

absl::StatusOr<std::unique_ptr<JobStore>> OpenMemory(const std::string&) {
  return std::unique_ptr<JobStore>(std::make_unique<MemoryJobStore>());
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

v1::CheckpointInfo Checkpoint(const std::string& id, const std::string& job_id, int64_t attempt,
                              int64_t step) {
  v1::CheckpointInfo info;
  info.set_id(id);
  info.set_job_id(job_id);
  info.set_attempt(attempt);
  info.set_step(step);
  return info;
}

class JobStoreContractTest : public ::testing::TestWithParam<StoreKind> {
 protected:
  JobStoreContractTest() {
    absl::StatusOr<std::unique_ptr<JobStore>> store = GetParam().open(temp_.path());
    EXPECT_TRUE(store.ok()) << store.status();
    if (store.ok()) store_ = std::move(*store);
  }

  void SetUp() override { ASSERT_NE(store_, nullptr); }

  // Closes and opens a durable store again on the same data; keeps any other store as it is.
  void Reopen() {
    if (!GetParam().durable) return;
    store_.reset();  // closes the database before it is opened again
    absl::StatusOr<std::unique_ptr<JobStore>> store = GetParam().open(temp_.path());
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

  ::peco::testing::ScopedTempDir temp_{"job_store_test"};
  std::unique_ptr<JobStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Stores, JobStoreContractTest,
                         ::testing::Values(StoreKind{"Sqlite", &OpenSqlite, true},
                                           StoreKind{"Memory", &OpenMemory, false}),
                         [](const ::testing::TestParamInfo<StoreKind>& info) {
                           return std::string(info.param.name);
                         });

// ---- Jobs ----

TEST_P(JobStoreContractTest, CreateThenGetRoundTripsTheJob) {
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

TEST_P(JobStoreContractTest, CreateRefusesANonInitialState) {
  NewJob new_job;
  new_job.spec = Spec("x");
  new_job.initial_state = v1::JOB_STATE_RUNNING;
  EXPECT_EQ(store_->CreateJob(new_job).status().code(), absl::StatusCode::kInvalidArgument);
  new_job.initial_state = v1::JOB_STATE_WAITING;
  absl::StatusOr<CreateJobResult> result = store_->CreateJob(new_job);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->job.state(), v1::JOB_STATE_WAITING);
}

TEST_P(JobStoreContractTest, SubmitIsIdempotentOnClientRequestId) {
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

TEST_P(JobStoreContractTest, ARetriedSubmitReturnsTheJobAsItIsNow) {
  const v1::Job job = Submit("a", "req-1");
  EXPECT_EQ(job.client_request_id(), "req-1");
  ASSERT_TRUE(store_->BeginAttempt(Attempt(job.id(), 0)).ok());
  NewJob retry;
  retry.spec = Spec("a");
  retry.client_request_id = "req-1";
  retry.submit_time_us = 99;
  absl::StatusOr<CreateJobResult> result = store_->CreateJob(retry);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->created);
  EXPECT_EQ(result->job.state(), v1::JOB_STATE_ASSIGNED);
  EXPECT_EQ(result->job.attempt(), 1);
  EXPECT_EQ(result->job.submit_time_us(), 42);
  // Jobs without a key never match each other.
  EXPECT_EQ(Submit("b").id(), "job-000002");
  EXPECT_EQ(Submit("b").id(), "job-000003");
}

TEST_P(JobStoreContractTest, ConcurrentRetriesCreateOneJob) {
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

// Concurrent writers each syncing after every write all succeed (SQLite shares the flushes
// between them), and a durable store has every job after a reopen.
TEST_P(JobStoreContractTest, ConcurrentWritersAndSyncsAllSucceed) {
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
  ASSERT_EQ(page->jobs.size(), static_cast<size_t>(kThreads * kJobs));
  for (size_t i = 0; i < page->jobs.size(); ++i) {
    EXPECT_EQ(page->jobs[i].submit_seq(), static_cast<int64_t>(i) + 1);
  }
}

TEST_P(JobStoreContractTest, ListJobsFiltersByStateAndPages) {
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
  // States come from the network as integers: anything but a real state is refused by name.
  for (int state : {0, 99, -1, 1 << 20}) {
    JobQuery odd;
    odd.states = {static_cast<v1::JobState>(state)};
    absl::Status refused = store_->ListJobs(odd).status();
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << state;
    EXPECT_THAT(refused.message(), HasSubstr("is not a job state")) << state;
  }
}

// Jobs have owners: a request id of another owner is refused, not replayed; ListJobs filters by
// owner (jobs without one are the admin's); the audit log keeps each job's entries in order.
TEST_P(JobStoreContractTest, OwnersFilterListsAndTheAuditLogKeepsEachJobsEntries) {
  NewJob new_job;
  new_job.spec = Spec("alices");
  new_job.owner = "alice";
  new_job.client_request_id = "req-a";
  absl::StatusOr<CreateJobResult> alices = store_->CreateJob(new_job);
  ASSERT_TRUE(alices.ok()) << alices.status();
  EXPECT_EQ(alices->job.owner(), "alice");
  new_job.owner = "bob";
  absl::StatusOr<CreateJobResult> reuse = store_->CreateJob(new_job);
  EXPECT_EQ(reuse.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(reuse.status().message(), HasSubstr("another user"));
  new_job.client_request_id = "";
  ASSERT_TRUE(store_->CreateJob(new_job).ok());
  const v1::Job unowned = Submit("unowned");

  auto ids_of = [&](const std::string& owner) {
    JobQuery query;
    query.owner = owner;
    std::vector<std::string> ids;
    absl::StatusOr<JobPage> page = store_->ListJobs(query);
    EXPECT_TRUE(page.ok()) << page.status();
    if (page.ok()) {
      for (const v1::Job& job : page->jobs) ids.push_back(job.id());
    }
    return ids;
  };
  EXPECT_THAT(ids_of("alice"), ElementsAre(alices->job.id()));
  EXPECT_THAT(ids_of("bob"), ElementsAre("job-000002"));
  EXPECT_THAT(ids_of(kAdminUser), ElementsAre(unowned.id()));
  EXPECT_EQ(ids_of("").size(), 3u);

  for (const char* action : {"submit", "get", "cancel"}) {
    v1::AuditEntry entry;
    entry.set_job_id(alices->job.id());
    entry.set_actor("alice");
    entry.set_action(action);
    entry.set_outcome("OK");
    ASSERT_TRUE(store_->AppendAudit(entry).ok());
  }
  v1::AuditEntry other;
  other.set_job_id(unowned.id());
  other.set_actor("bob");
  other.set_action("get");
  ASSERT_TRUE(store_->AppendAudit(other).ok());
  other.clear_actor();
  EXPECT_EQ(store_->AppendAudit(other).code(), absl::StatusCode::kInvalidArgument);
  Reopen();
  auto actions = [&](const std::string& job_id, int limit) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<v1::AuditEntry>> entries = store_->ListAudit(job_id, limit);
    EXPECT_TRUE(entries.ok()) << entries.status();
    if (entries.ok()) {
      for (const v1::AuditEntry& entry : *entries) out.push_back(entry.action());
    }
    return out;
  };
  EXPECT_THAT(actions(alices->job.id(), 10), ElementsAre("submit", "get", "cancel"));
  EXPECT_THAT(actions(alices->job.id(), 2), ElementsAre("get", "cancel"));  // the newest
  EXPECT_THAT(actions(unowned.id(), 10), ElementsAre("get"));
  EXPECT_THAT(actions("job-999999", 10), IsEmpty());
  EXPECT_EQ(store_->ListAudit(unowned.id(), 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(JobStoreContractTest, ListJobsPagesAFilteredListAndChecksItsArguments) {
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(Submit(absl::StrCat("j", i)).id());
  for (int i : {0, 2, 5}) ASSERT_TRUE(SetState(ids[i], 0, v1::JOB_STATE_CANCELLED).ok());
  ASSERT_TRUE(SetState(ids[4], 0, v1::JOB_STATE_FAILED, "bad spec").ok());

  // A page that ends exactly at the last match has no next page.
  JobQuery query;
  query.states = {v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED};
  query.page_size = 2;
  std::vector<std::vector<std::string>> pages;
  do {
    absl::StatusOr<JobPage> page = store_->ListJobs(query);
    ASSERT_TRUE(page.ok()) << page.status();
    std::vector<std::string>& seen = pages.emplace_back();
    for (const v1::Job& job : page->jobs) seen.push_back(job.id());
    query.page_token = page->next_page_token;
  } while (!query.page_token.empty() && pages.size() < 10);
  EXPECT_THAT(pages, ElementsAre(ElementsAre(ids[0], ids[2]), ElementsAre(ids[4], ids[5])));

  // A token is a position: "0" is the start, one past the end gives an empty last page.
  JobQuery from_start;
  from_start.page_token = "0";
  EXPECT_EQ(store_->ListJobs(from_start)->jobs.size(), 6u);
  JobQuery past_end;
  past_end.page_token = "1000";
  absl::StatusOr<JobPage> empty = store_->ListJobs(past_end);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT(empty->jobs, IsEmpty());
  EXPECT_EQ(empty->next_page_token, "");

  JobQuery bad;
  bad.page_token = "-1";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.page_token = "3x";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.page_token = "";
  bad.page_size = 1001;
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.page_size = 1000;
  EXPECT_TRUE(store_->ListJobs(bad).ok());
}

TEST_P(JobStoreContractTest, ListJobsFiltersByLabelsAndDependencyAndPages) {
  // root <- a (on root's job), b (on root's checkpoint), c (on a); labels team/size.
  auto submit = [&](const std::string& name, std::map<std::string, std::string> labels,
                    const std::string& job = "", const std::string& checkpoint = "") {
    NewJob new_job;
    new_job.spec = Spec(name);
    new_job.spec.clear_labels();
    new_job.spec.clear_depends_on();
    new_job.spec.mutable_labels()->insert(labels.begin(), labels.end());
    if (!job.empty()) new_job.spec.mutable_depends_on()->set_job_id(job);
    if (!checkpoint.empty()) new_job.spec.mutable_depends_on()->set_checkpoint_id(checkpoint);
    absl::StatusOr<CreateJobResult> created = store_->CreateJob(new_job);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->job.id() : "";
  };
  const std::string root = submit("root", {{"team", "vision"}, {"size", "small"}});
  ASSERT_TRUE(store_->BeginAttempt(Attempt(root, 0)).ok());
  v1::CheckpointInfo checkpoint;
  checkpoint.set_id("ckpt-root");
  checkpoint.set_job_id(root);
  checkpoint.set_attempt(1);
  checkpoint.set_step(10);
  ASSERT_TRUE(store_->AddCheckpoint(checkpoint).ok());
  const std::string a = submit("a", {{"team", "vision"}, {"size", "large"}}, root);
  const std::string b = submit("b", {{"team", "speech"}, {"size", "small"}}, "", "ckpt-root");
  const std::string c = submit("c", {{"team", "vision"}, {"size", "small"}}, a);
  const std::string plain = submit("plain", {});
  Reopen();

  auto list = [&](JobQuery query) {
    std::vector<std::string> ids;
    for (int pages = 0; pages < 10; ++pages) {
      absl::StatusOr<JobPage> page = store_->ListJobs(query);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      for (const v1::Job& job : page->jobs) ids.push_back(job.id());
      query.page_token = page->next_page_token;
      if (query.page_token.empty()) break;
    }
    return ids;
  };
  JobQuery vision;
  vision.labels["team"] = "vision";
  vision.page_size = 1;  // pages through a filtered list
  EXPECT_THAT(list(vision), ElementsAre(root, a, c));
  JobQuery vision_small;
  vision_small.labels = {{"team", "vision"}, {"size", "small"}};
  EXPECT_THAT(list(vision_small), ElementsAre(root, c));
  JobQuery nobody;
  nobody.labels = {{"team", "vision"}, {"size", "medium"}};
  EXPECT_THAT(list(nobody), IsEmpty());
  JobQuery dependents;
  dependents.depends_on_job_id = root;
  dependents.page_size = 1;
  EXPECT_THAT(list(dependents), ElementsAre(a, b));  // b through root's checkpoint
  JobQuery small_dependents = dependents;
  small_dependents.labels["size"] = "small";
  EXPECT_THAT(list(small_dependents), ElementsAre(b));
  JobQuery of_a;
  of_a.depends_on_job_id = a;
  of_a.states = {v1::JOB_STATE_QUEUED};
  EXPECT_THAT(list(of_a), ElementsAre(c));
  of_a.states = {v1::JOB_STATE_RUNNING};
  EXPECT_THAT(list(of_a), IsEmpty());
  JobQuery all;
  EXPECT_THAT(list(all), ElementsAre(root, a, b, c, plain));

  JobQuery bad;
  bad.labels[""] = "x";
  EXPECT_EQ(store_->ListJobs(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(JobStoreContractTest, LifeCycleSetsTimesAndAttemptRecords) {
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

TEST_P(JobStoreContractTest, FailureResumeAndRestartKeepTheirRecords) {
  const std::string id = Submit("a").id();
  NewAttempt first = Attempt(id, 0);
  v1::InputCheckpoint input;
  input.set_checkpoint_id("ckpt-dep");
  first.inputs.push_back(input);
  ASSERT_TRUE(store_->BeginAttempt(first).ok());
  ASSERT_TRUE(store_->UpdateJobState({id, 1, v1::JOB_STATE_RUNNING, "", 700}).ok());
  absl::StatusOr<v1::Job> failed =
      store_->UpdateJobState({id, 1, v1::JOB_STATE_FAILED, "rank 0 crashed", 800, "signal"});
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->failure_reason(), "rank 0 crashed");
  EXPECT_EQ(failed->end_time_us(), 800);

  // A resume: the job leaves its terminal state, the ended attempt stays as it ended.
  absl::StatusOr<v1::Job> resumed =
      store_->UpdateJobState({id, 1, v1::JOB_STATE_RESTARTING, "resumed", 900, "ignored"});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->end_time_us(), 0);
  EXPECT_EQ(resumed->failure_reason(), "rank 0 crashed") << "kept until the next failure";
  EXPECT_EQ(resumed->restart_count(), 0) << "counted when the next attempt starts";
  absl::StatusOr<v1::Attempt> second = store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/20));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->number(), 2);
  EXPECT_EQ(second->resume_checkpoint_id(), "ckpt-20");
  EXPECT_EQ(second->start_time_us(), 200);
  ASSERT_TRUE(store_->UpdateJobState({id, 2, v1::JOB_STATE_RUNNING, "", 1000}).ok());

  absl::StatusOr<v1::Job> job = store_->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->restart_count(), 1);
  EXPECT_EQ(job->attempt(), 2);
  EXPECT_EQ(job->start_time_us(), 700) << "the first RUNNING only";
  std::vector<v1::Attempt> attempts = store_->ListAttempts(id).value();
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(attempts[0].failure_reason(), "rank 0 crashed");
  EXPECT_EQ(attempts[0].cause(), "signal");
  EXPECT_EQ(attempts[0].end_time_us(), 800);
  EXPECT_EQ(attempts[0].start_time_us(), 100);
  EXPECT_EQ(attempts[0].master_addr(), "10.0.0.1");
  ASSERT_EQ(attempts[0].inputs_size(), 1);
  EXPECT_EQ(attempts[0].inputs(0).checkpoint_id(), "ckpt-dep");
  ASSERT_EQ(attempts[0].placements_size(), 1);
  EXPECT_EQ(attempts[0].placements(0).worker_id(), "w1");
  EXPECT_EQ(attempts[1].state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(attempts[1].resume_step(), 20);
  EXPECT_EQ(attempts[1].end_time_us(), 0);
}

TEST_P(JobStoreContractTest, IllegalTransitionIsRefusedAndChangesNothing) {
  std::string id = Submit("a").id();
  absl::StatusOr<v1::Job> refused = SetState(id, 0, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("queued -> succeeded"));
  EXPECT_EQ(store_->GetJob(id)->state(), v1::JOB_STATE_QUEUED);
}

TEST_P(JobStoreContractTest, RequestsForAMissingJobOrAnInvalidStateAreRefused) {
  const std::string id = Submit("a").id();
  EXPECT_EQ(SetState(id, 0, v1::JOB_STATE_UNSPECIFIED).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SetState("job-404", 0, v1::JOB_STATE_CANCELLED).status().code(),
            absl::StatusCode::kNotFound);
  JobControlUpdate control;
  control.job_id = "job-404";
  control.cancel_reason = "x";
  EXPECT_EQ(store_->UpdateJobControl(control).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->BeginAttempt(Attempt("job-404", 0)).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListAttempts("job-404").status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store_->ListAttempts(id).value(), IsEmpty());
  EXPECT_EQ(store_->AppendMetricPoints("job-404", 1, {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->AddCheckpoint(Checkpoint("ckpt-x", "job-404", 1, 10)).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->AddCheckpoint(Checkpoint("", id, 0, 10)).code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> none = store_->ListCheckpoints("job-404");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_THAT(*none, IsEmpty());
  EXPECT_EQ(store_->GetCheckpoint("ckpt-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetJob(id)->state(), v1::JOB_STATE_QUEUED);
}

// ---- Attempts and fencing ----

TEST_P(JobStoreContractTest, BatchOfAttemptsSkipsTheRefusedAndStartsTheRest) {
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

TEST_P(JobStoreContractTest, ABatchSeesTheAttemptsItStartedEarlier) {
  const std::string id = Submit("a").id();
  absl::StatusOr<std::vector<absl::StatusOr<JobStore::StartedAttempt>>> results =
      store_->BeginAttempts({Attempt(id, 0), Attempt(id, 0), Attempt(id, 1)});
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 3u);
  EXPECT_TRUE((*results)[0].ok());
  EXPECT_EQ((*results)[1].status().code(), absl::StatusCode::kFailedPrecondition) << "fenced";
  EXPECT_EQ((*results)[2].status().code(), absl::StatusCode::kFailedPrecondition)
      << "assigned -> assigned is illegal";
  EXPECT_EQ(store_->ListAttempts(id)->size(), 1u);
  absl::StatusOr<std::vector<absl::StatusOr<JobStore::StartedAttempt>>> none =
      store_->BeginAttempts({});
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
}

TEST_P(JobStoreContractTest, BeginAttemptRefusesABadRequestAndAnIllegalStart) {
  const std::string id = Submit("a").id();
  NewAttempt unplaced = Attempt(id, 0);
  unplaced.placements.clear();
  EXPECT_EQ(store_->BeginAttempt(unplaced).status().code(), absl::StatusCode::kInvalidArgument);
  NewAttempt negative = Attempt(id, 0);
  negative.resume_step = -1;
  EXPECT_EQ(store_->BeginAttempt(negative).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RUNNING).ok());
  absl::StatusOr<v1::Attempt> refused = store_->BeginAttempt(Attempt(id, 1));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("running -> assigned"));
  absl::StatusOr<v1::Job> job = store_->GetJob(id);
  EXPECT_EQ(job->state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job->attempt(), 1);
  EXPECT_EQ(store_->ListAttempts(id)->size(), 1u);
}

TEST_P(JobStoreContractTest, FencingRefusesWritesFromAnOldAttempt) {
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

TEST_P(JobStoreContractTest, ControlFieldsAreFencedDurableAndClearedByTheNextAttempt) {
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

// ---- Metrics ----

TEST_P(JobStoreContractTest, PointsMustMatchTheFencedAttempt) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  // Claims attempt 1 but carries a point from attempt 0: the whole batch is refused.
  absl::StatusOr<int64_t> result =
      store_->AppendMetricPoints(id, 1, {Point(id, 1, 1, 0.1), Point(id, 0, 2, 0.2)});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store_->ListMetricPoints({id, std::nullopt, true}).value(), IsEmpty());
}

TEST_P(JobStoreContractTest, AJobNeverStartedTakesNoPoints) {
  const std::string id = Submit("a").id();
  EXPECT_EQ(store_->AppendMetricPoints(id, 0, {Point(id, 0, 1, 0.1)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->AppendMetricPoints(id, 0, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store_->ListMetricPoints({id, std::nullopt, true}).value(), IsEmpty());
}

TEST_P(JobStoreContractTest, MetricAppendIsIdempotentFirstWriteWins) {
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

TEST_P(JobStoreContractTest, APointGathersTheNamesOfItsStepAndRank) {
  const std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  v1::MetricPoint first = Point(id, 1, 10, 0.5, /*rank=*/1);
  first.set_time_us(7);
  v1::MetricPoint later = first;  // a new name for the same step, sent later
  later.clear_values();
  (*later.mutable_values())["accuracy"] = 0.25;
  later.set_time_us(9);
  v1::MetricPoint rank0 = Point(id, 1, 10, 0.75, /*rank=*/0);
  v1::MetricPoint duplicate = Point(id, 1, 5, 0.1);
  (*duplicate.mutable_values())["lr"] = 0.5;
  v1::MetricPoint in_one_call = Point(id, 1, 5, 0.2);  // the same (step, rank, name) again
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {first, rank0}), 2);
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {later, duplicate, in_one_call}), 3);

  std::vector<v1::MetricPoint> points = store_->ListMetricPoints({id}).value();
  ASSERT_EQ(points.size(), 3u);
  EXPECT_EQ(points[0].step(), 5);
  EXPECT_THAT(points[0].values(), UnorderedElementsAre(Pair("loss", 0.1), Pair("lr", 0.5)));
  EXPECT_EQ(points[1].step(), 10);
  EXPECT_EQ(points[1].rank(), 0);
  EXPECT_EQ(points[2].rank(), 1);
  EXPECT_EQ(points[2].job_id(), id);
  EXPECT_EQ(points[2].attempt(), 1);
  EXPECT_THAT(points[2].values(), UnorderedElementsAre(Pair("loss", 0.5), Pair("accuracy", 0.25)));
  EXPECT_EQ(points[2].time_us(), 9) << "the time of its first name, \"accuracy\"";
}

// SQLite keeps values in a REAL NOT NULL column: it binds NaN as NULL, which INSERT OR IGNORE
// skips, and stores 0.0 as an integer, so -0.0 loses its sign. Every store does the same.
TEST_P(JobStoreContractTest, ANanValueIsNotStoredAndNegativeZeroReadsAsZero) {
  const std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  v1::MetricPoint point = Point(id, 1, 1, std::numeric_limits<double>::quiet_NaN());
  (*point.mutable_values())["grad_norm"] = -0.0;
  (*point.mutable_values())["max"] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(*store_->AppendMetricPoints(id, 1, {point}), 2);
  std::vector<v1::MetricPoint> points = store_->ListMetricPoints({id}).value();
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].values().count("loss"), 0u);
  EXPECT_FALSE(std::signbit(points[0].values().at("grad_norm")));
  EXPECT_EQ(points[0].values().at("max"), std::numeric_limits<double>::infinity());
  // The skipped name is still free: a later finite value is stored.
  EXPECT_EQ(*store_->AppendMetricPoints(id, 1, {Point(id, 1, 1, 0.5)}), 1);
}

TEST_P(JobStoreContractTest, HistoryHidesPointsOfAFailedAttemptPastTheResumeStep) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  std::vector<v1::MetricPoint> first;
  for (int64_t step : {10, 20, 30, 40, 50}) first.push_back(Point(id, 1, step, 1.0));
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, first), 5);
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING, "worker lost").ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/20)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 2, {Point(id, 2, 30, 2.0), Point(id, 2, 40, 2.0)}), 2);

  // Each listing is held in a variable: a range-for over .value() of the returned temporary
  // would read a destroyed vector.
  const std::vector<v1::MetricPoint> listed = store_->ListMetricPoints({id}).value();
  std::vector<std::pair<int64_t, int64_t>> curve;  // (step, attempt)
  for (const v1::MetricPoint& p : listed) {
    curve.emplace_back(p.step(), p.attempt());
  }
  EXPECT_THAT(curve, ElementsAre(Pair(10, 1), Pair(20, 1), Pair(30, 2), Pair(40, 2)));

  const std::vector<v1::MetricPoint> listed_all =
      store_->ListMetricPoints({id, std::nullopt, true}).value();
  std::vector<std::pair<int64_t, int64_t>> all;
  for (const v1::MetricPoint& p : listed_all) {
    all.emplace_back(p.step(), p.attempt());
  }
  EXPECT_THAT(all, ElementsAre(Pair(10, 1), Pair(20, 1), Pair(30, 1), Pair(30, 2), Pair(40, 1),
                               Pair(40, 2), Pair(50, 1)));
}

TEST_P(JobStoreContractTest, AnEarlierResumeOfALaterAttemptHidesMoreOfTheOlderOnes) {
  const std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {Point(id, 1, 10, 1), Point(id, 1, 30, 1)}), 2);
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING).ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/20)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 2, {Point(id, 2, 30, 2), Point(id, 2, 40, 2)}), 2);
  ASSERT_TRUE(SetState(id, 2, v1::JOB_STATE_RESTARTING).ok());
  // The third attempt resumes from step 5: every point of the older attempts is past it.
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 2, /*resume_step=*/5)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 3, {Point(id, 3, 10, 3)}), 1);

  const std::vector<v1::MetricPoint> listed = store_->ListMetricPoints({id}).value();
  std::vector<std::pair<int64_t, int64_t>> curve;  // (step, attempt)
  for (const v1::MetricPoint& p : listed) {
    curve.emplace_back(p.step(), p.attempt());
  }
  EXPECT_THAT(curve, ElementsAre(Pair(10, 3)));
  EXPECT_EQ(store_->ListMetricPoints({id, std::nullopt, true})->size(), 5u);
}

TEST_P(JobStoreContractTest, AFreshRestartHidesTheWholeEarlierCurve) {
  std::string id = Submit("a").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_EQ(*store_->AppendMetricPoints(id, 1, {Point(id, 1, 0, 1.0), Point(id, 1, 5, 1.0)}), 2);
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING, "crash before any checkpoint").ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/0)).ok());
  std::vector<v1::MetricPoint> curve = store_->ListMetricPoints({id}).value();
  ASSERT_EQ(curve.size(), 1u);  // step 0 of attempt 1 is not past the resume step
  EXPECT_EQ(curve[0].step(), 0);
}

TEST_P(JobStoreContractTest, MetricQueryFiltersByRank) {
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

// ---- Checkpoints ----

TEST_P(JobStoreContractTest, CheckpointRecordsAreIdempotentAndOrdered) {
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

TEST_P(JobStoreContractTest, CheckpointsListByStepThenAttemptAndSurviveTheAttempt) {
  const std::string id = Submit("a").id();
  const std::string other = Submit("b").id();
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 0)).ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(other, 0)).ok());
  const v1::CheckpointInfo first = Checkpoint("ckpt-z", id, 1, 20);
  ASSERT_TRUE(store_->AddCheckpoint(first).ok());
  ASSERT_TRUE(store_->AddCheckpoint(Checkpoint("ckpt-y", id, 1, 10)).ok());
  ASSERT_TRUE(store_->AddCheckpoint(Checkpoint("ckpt-other", other, 1, 5)).ok());
  ASSERT_TRUE(SetState(id, 1, v1::JOB_STATE_RESTARTING).ok());
  ASSERT_TRUE(store_->BeginAttempt(Attempt(id, 1, /*resume_step=*/10)).ok());
  ASSERT_TRUE(store_->AddCheckpoint(Checkpoint("ckpt-x", id, 2, 20)).ok());
  ASSERT_TRUE(store_->AddCheckpoint(Checkpoint("ckpt-w", id, 2, 15)).ok());
  // A retried upload of a checkpoint of the ended attempt is still acknowledged.
  EXPECT_TRUE(store_->AddCheckpoint(first).ok());

  const std::vector<v1::CheckpointInfo> listed = store_->ListCheckpoints(id).value();
  std::vector<std::string> ids;
  for (const v1::CheckpointInfo& info : listed) {
    ids.push_back(info.id());
  }
  EXPECT_THAT(ids, ElementsAre("ckpt-y", "ckpt-w", "ckpt-z", "ckpt-x"));
  EXPECT_EQ(store_->GetCheckpoint("ckpt-other")->job_id(), other);
}

// ---- Workers ----

TEST_P(JobStoreContractTest, WorkersUpsertAndList) {
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

TEST_P(JobStoreContractTest, WorkersAreOrderedByTheBytesOfTheirIds) {
  for (const char* id : {"w2", "w10", "W3", "w1"}) {
    v1::WorkerInfo worker;
    worker.set_id(id);
    ASSERT_TRUE(store_->UpsertWorker(worker).ok());
  }
  const std::vector<v1::WorkerInfo> workers = store_->ListWorkers().value();
  std::vector<std::string> ids;
  for (const v1::WorkerInfo& worker : workers) ids.push_back(worker.id());
  EXPECT_THAT(ids, ElementsAre("W3", "w1", "w10", "w2"));
  EXPECT_EQ(store_->GetWorker("w10")->id(), "w10");
}

// ---- What only SqliteJobStore has ----

class SqliteJobStoreTest : public JobStoreContractTest {};

INSTANTIATE_TEST_SUITE_P(Sqlite, SqliteJobStoreTest,
                         ::testing::Values(StoreKind{"Sqlite", &OpenSqlite, true}),
                         [](const ::testing::TestParamInfo<StoreKind>& info) {
                           return std::string(info.param.name);
                         });

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

TEST_P(SqliteJobStoreTest, EverythingSurvivesAReopen) {
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

// A database of schema 1 (before owners and the audit log) opens: it is upgraded in place, its
// jobs kept, as the admin's.
TEST_P(SqliteJobStoreTest, UpgradesASchemaOneDatabaseInPlace) {
  store_.reset();
  const std::string path = temp_.path() + "/old.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  // The jobs table as schema 1 made it, with one job.
  v1::Job old;
  old.set_id("job-000001");
  old.set_state(v1::JOB_STATE_QUEUED);
  old.set_submit_seq(1);
  *old.mutable_spec() = Spec("from-schema-1");
  (*old.mutable_spec()->mutable_labels())["origin"] = "schema-1";
  const std::string record = old.SerializeAsString();
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                         "client_request_id TEXT, state INTEGER NOT NULL, attempt INTEGER NOT "
                         "NULL, record BLOB NOT NULL);"
                         "CREATE TABLE attempts (job_id TEXT NOT NULL, number INTEGER NOT NULL, "
                         "resume_step INTEGER NOT NULL, record BLOB NOT NULL, PRIMARY KEY (job_id, "
                         "number)) WITHOUT ROWID;"
                         "CREATE TABLE workers (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT "
                         "ROWID;"
                         "CREATE TABLE checkpoints (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, "
                         "attempt INTEGER NOT NULL, step INTEGER NOT NULL, record BLOB NOT NULL) "
                         "WITHOUT ROWID;"
                         "CREATE TABLE metric_points (job_id TEXT NOT NULL, attempt INTEGER NOT "
                         "NULL, rank INTEGER NOT NULL, step INTEGER NOT NULL, name TEXT NOT NULL, "
                         "value REAL NOT NULL, time_us INTEGER NOT NULL, PRIMARY KEY (job_id, "
                         "attempt, rank, step, name)) WITHOUT ROWID;"
                         "PRAGMA user_version=1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_stmt* insert = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "INSERT INTO jobs (seq, id, state, attempt, record) VALUES (1, "
                               "'job-000001', 1, 0, ?1)",
                               -1, &insert, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(insert, 1, record.data(), static_cast<int>(record.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(insert), SQLITE_DONE);
  sqlite3_finalize(insert);
  sqlite3_close(db);

  SqliteJobStore::Options options;
  options.path = path;
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  JobQuery admins;
  admins.owner = kAdminUser;
  absl::StatusOr<JobPage> page = (*store)->ListJobs(admins);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].spec().name(), "from-schema-1");
  v1::AuditEntry entry;
  entry.set_job_id("job-000001");
  entry.set_actor("admin");
  entry.set_action("get");
  EXPECT_TRUE((*store)->AppendAudit(entry).ok());
  NewJob next;
  next.spec = Spec("after-upgrade");
  next.owner = "alice";
  next.spec.mutable_depends_on()->set_job_id("job-000001");
  (*next.spec.mutable_labels())["team"] = "vision";
  absl::StatusOr<CreateJobResult> created = (*store)->CreateJob(next);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->job.id(), "job-000002");
  // The upgrade indexed the old job's labels; the new job is indexed as it is created.
  JobQuery labelled;
  labelled.labels["origin"] = "schema-1";
  page = (*store)->ListJobs(labelled);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].id(), "job-000001");
  JobQuery dependents;
  dependents.depends_on_job_id = "job-000001";
  page = (*store)->ListJobs(dependents);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->jobs.size(), 1u);
  EXPECT_EQ(page->jobs[0].id(), "job-000002");
}

TEST_P(SqliteJobStoreTest, RefusesADatabaseFromANewerSchema) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((temp_.path() + "/coordinator.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  SqliteJobStore::Options options;
  options.path = temp_.path() + "/coordinator.db";
  absl::StatusOr<std::unique_ptr<SqliteJobStore>> store = SqliteJobStore::Open(options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("99"));
}

}  // namespace
}  // namespace peco::coordinator
