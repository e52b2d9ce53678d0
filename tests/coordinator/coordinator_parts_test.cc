// The Coordinator's parts, each alone: ClusterView (coordinator/cluster_view.h: the bookkeeping
// of active attempts and the devices they hold, port choice, the scheduler's capacity list and
// the gang-size check), JobProgressCache (coordinator/job_progress_cache.h), the attempt
// outcome decision (coordinator/attempt_outcome.h) and the scheduling pass's mapping of job
// records to the policy's queue (coordinator/scheduling_pass.h), and CheckpointIngest's verified
// reads (coordinator/checkpoint_ingest.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/sha256.h"
#include "coordinator/attempt_outcome.h"
#include "coordinator/checkpoint_ingest.h"
#include "coordinator/cluster_view.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/job_progress_cache.h"
#include "coordinator/memory_job_store.h"
#include "coordinator/scheduling_pass.h"
#include "tests/test_util/files.h"

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1000);

v1::WorkerInfo Worker(const std::string& id, int gpus, int cpu_slots, int first_port = 29500,
                      int last_port = 29502) {
  v1::WorkerInfo info;
  info.set_id(id);
  info.set_host(id + ".local");
  info.mutable_devices()->set_gpus(gpus);
  info.mutable_devices()->set_cpu_slots(cpu_slots);
  info.mutable_ports()->set_first(first_port);
  info.mutable_ports()->set_last(last_port);
  info.set_state(v1::WORKER_STATE_ALIVE);
  return info;
}

// An attempt of `job_id` with `ranks_per_worker` ranks on each named worker (rank 0 on the
// first), each rank using `gpus` GPUs and one CPU slot.
ClusterView::Active Active(const std::string& job_id, int64_t number,
                           const std::vector<std::pair<std::string, int>>& ranks_per_worker,
                           int gpus, int master_port = 29500) {
  ClusterView::Active active;
  active.job.set_id(job_id);
  active.job.set_attempt(number);
  active.job.set_state(v1::JOB_STATE_RUNNING);
  active.job.mutable_spec()->mutable_devices_per_rank()->set_gpus(gpus);
  active.job.mutable_spec()->mutable_devices_per_rank()->set_cpu_slots(1);
  active.attempt.set_number(number);
  active.attempt.set_master_port(master_port);
  int rank = 0;
  for (const auto& [worker, count] : ranks_per_worker) {
    v1::RankPlacement* placement = active.attempt.add_placements();
    placement->set_worker_id(worker);
    for (int i = 0; i < count; ++i) placement->add_ranks(rank++);
  }
  return active;
}

TEST(ClusterViewTest, ActiveAttemptsHoldAndReleaseTheirDevices) {
  ClusterView view;
  view.PutWorker(Worker("w1", 4, 8), kT0);
  view.PutWorker(Worker("w2", 4, 8), kT0);
  view.SetActive("job-1", Active("job-1", 1, {{"w1", 2}, {"w2", 1}}, 1));
  view.SetActive("job-2", Active("job-2", 1, {{"w1", 1}}, 2));
  EXPECT_EQ(view.HeldOn("w1").gpus, 4);
  EXPECT_EQ(view.HeldOn("w1").cpu_slots, 3);
  EXPECT_EQ(view.HeldOn("w2").gpus, 1);
  EXPECT_THAT(view.ActiveOn("w1"), ElementsAre("job-1", "job-2"));
  EXPECT_THAT(view.ActiveOn("w2"), ElementsAre("job-1"));

  // A new attempt of job-1 replaces the old one: its devices move, none are counted twice.
  view.SetActive("job-1", Active("job-1", 2, {{"w2", 3}}, 1));
  EXPECT_EQ(view.HeldOn("w1").gpus, 2);
  EXPECT_EQ(view.HeldOn("w2").gpus, 3);
  EXPECT_THAT(view.ActiveOn("w1"), ElementsAre("job-2"));
  EXPECT_EQ(view.FindCurrent("job-1", 1), nullptr);  // a report of the old attempt
  ASSERT_NE(view.FindCurrent("job-1", 2), nullptr);

  view.EraseActive("job-1");
  view.EraseActive("job-2");
  view.EraseActive("job-3");  // unknown: no-op
  EXPECT_EQ(view.HeldOn("w1").gpus, 0);
  EXPECT_EQ(view.HeldOn("w2").cpu_slots, 0);
  EXPECT_THAT(view.ActiveOn("w1"), IsEmpty());
  EXPECT_THAT(view.active(), IsEmpty());
}

TEST(ClusterViewTest, PickMasterPortSkipsPortsOfRankZeroAttemptsAndTakenOnes) {
  ClusterView view;
  view.PutWorker(Worker("w1", 0, 8, 29500, 29502), kT0);
  view.PutWorker(Worker("w2", 0, 8), kT0);
  view.SetActive("job-1", Active("job-1", 1, {{"w1", 1}}, 0, 29500));
  // Rank 0 on w2: its port is w2's, not w1's.
  view.SetActive("job-2", Active("job-2", 1, {{"w2", 1}, {"w1", 1}}, 0, 29501));
  EXPECT_EQ(view.PickMasterPort("w1", {}), 29501);
  EXPECT_EQ(view.PickMasterPort("w1", {29501}), 29502);
  EXPECT_EQ(view.PickMasterPort("w1", {29501, 29502}), 0);
  EXPECT_EQ(view.PickMasterPort("w2", {}), 29500);
  EXPECT_EQ(view.PickMasterPort("unknown", {}), 0);
}

TEST(ClusterViewTest, CapacityListsAliveWorkersWithFreeDevicesAndIsRebuiltAfterChanges) {
  ClusterView view;
  view.PutWorker(Worker("w2", 2, 4), kT0);
  view.PutWorker(Worker("w1", 0, 2), kT0);
  view.SetActive("job-1", Active("job-1", 1, {{"w2", 2}}, 1));
  std::vector<WorkerCapacity> capacity;
  bool any_free = false;
  view.LendCapacity(&capacity, &any_free);
  ASSERT_EQ(capacity.size(), 2u);
  EXPECT_EQ(capacity[0].worker_id, "w1");  // id order
  EXPECT_EQ(capacity[1].free_gpus, 0);
  EXPECT_EQ(capacity[1].free_cpu_slots, 2);
  EXPECT_TRUE(any_free);
  view.ReturnCapacity(std::move(capacity));

  // A state change while the list is lent makes the returned list stale: it is rebuilt.
  view.LendCapacity(&capacity, &any_free);
  ASSERT_TRUE(view.SetWorkerState("w1", v1::WORKER_STATE_SUSPECT));
  view.ReturnCapacity(std::move(capacity));
  view.LendCapacity(&capacity, &any_free);
  ASSERT_EQ(capacity.size(), 1u);
  EXPECT_EQ(capacity[0].worker_id, "w2");
  // A list not given back is rebuilt too, not lent empty.
  std::vector<WorkerCapacity> again;
  view.LendCapacity(&again, &any_free);
  EXPECT_EQ(again.size(), 1u);
  view.ReturnCapacity(std::move(again));

  // Devices freed by an ended attempt show at the next pass without a rebuild.
  view.EraseActive("job-1");
  view.LendCapacity(&capacity, &any_free);
  ASSERT_EQ(capacity.size(), 1u);
  EXPECT_EQ(capacity[0].free_gpus, 2);
  view.ReturnCapacity(std::move(capacity));
  EXPECT_FALSE(view.SetWorkerState("nobody", v1::WORKER_STATE_DEAD));
}

TEST(ClusterViewTest, HeartbeatRecordsTimeAndFreeDevices) {
  ClusterView view;
  view.PutWorker(Worker("w1", 1, 2), kT0);
  v1::WorkerDevices free;
  free.set_cpu_slots(1);
  const ClusterView::Worker* worker = view.NoteHeartbeat("w1", kT0 + absl::Seconds(2), free);
  ASSERT_NE(worker, nullptr);
  EXPECT_EQ(worker->last_heartbeat, kT0 + absl::Seconds(2));
  EXPECT_EQ(worker->info.free_devices().cpu_slots(), 1);
  EXPECT_EQ(view.NoteHeartbeat("w9", kT0, free), nullptr);
}

TEST(ClusterViewTest, CheckGangFitsCountsIdleCapacityOfWorkersNotDead) {
  ClusterView view;
  v1::JobSpec spec;
  spec.set_world_size(3);
  spec.mutable_devices_per_rank()->set_gpus(2);
  EXPECT_TRUE(view.CheckGangFits(spec).ok());  // no worker yet: the job waits for one
  view.PutWorker(Worker("w1", 4, 8), kT0);
  view.PutWorker(Worker("w2", 3, 8), kT0);
  // Busy devices do not count against the gang: it fits when the cluster is idle.
  view.SetActive("job-1", Active("job-1", 1, {{"w1", 4}}, 1));
  EXPECT_TRUE(view.CheckGangFits(spec).ok());  // 2 ranks on w1, 1 on w2
  spec.set_world_size(4);
  absl::Status too_big = view.CheckGangFits(spec);
  EXPECT_EQ(too_big.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(too_big.message(), HasSubstr("spec.world_size: 4 ranks"));
  EXPECT_THAT(too_big.message(), HasSubstr("at most 3 such ranks"));
  EXPECT_THAT(too_big.message(), HasSubstr("w2: 3 GPUs 8 CPU slots"));
  view.PutWorker(Worker("w3", 2, 2), kT0);
  EXPECT_TRUE(view.CheckGangFits(spec).ok());
  ASSERT_TRUE(view.SetWorkerState("w3", v1::WORKER_STATE_DEAD));
  EXPECT_FALSE(view.CheckGangFits(spec).ok());
}

v1::MetricPoint Point(const std::string& job_id, int rank, int64_t step, int64_t time_us,
                      std::map<std::string, double> values) {
  v1::MetricPoint point;
  point.set_job_id(job_id);
  point.set_rank(rank);
  point.set_step(step);
  point.set_time_us(time_us);
  for (const auto& [name, value] : values) (*point.mutable_values())[name] = value;
  return point;
}

TEST(JobProgressCacheTest, KeepsRankZerosNewestPointAndMaxSteps) {
  JobProgressCache cache(/*max_ended=*/10);
  EXPECT_FALSE(cache.Knows("job-1"));
  cache.NotePoint(Point("job-1", 1, 50, 5, {{"loss", 9.0}}));  // not rank 0: ignored
  EXPECT_FALSE(cache.Knows("job-1"));
  cache.NoteMaxSteps("job-1", 100);
  cache.NotePoint(Point("job-1", 0, 20, 2, {{"loss", 2.0}, {"images_per_second", 30.0}}));
  cache.NotePoint(Point("job-1", 0, 10, 1, {{"loss", 3.0}}));  // older: ignored
  cache.NotePoint(Point("job-1", 0, 20, 3, {{"eval_top1", 0.8}, {"lr", 0.1}}));
  v1::Job job;
  job.set_id("job-1");
  cache.Fill(&job);
  EXPECT_EQ(job.progress().step(), 20);
  EXPECT_EQ(job.progress().max_steps(), 100);
  EXPECT_EQ(job.progress().loss(), 2.0);
  EXPECT_EQ(job.progress().images_per_second(), 30.0);
  EXPECT_EQ(job.progress().eval().at("eval_top1"), 0.8);
  EXPECT_EQ(job.progress().eval().count("lr"), 0u);
  // A resumed run that restarts below the newest step, later in time, is taken.
  cache.NotePoint(Point("job-1", 0, 15, 4, {{"loss", 1.5}}));
  cache.Fill(&job);
  EXPECT_EQ(job.progress().step(), 15);
}

TEST(JobProgressCacheTest, ForgetsTheOldestEndedJobsBeyondTheBound) {
  JobProgressCache cache(/*max_ended=*/2);
  for (const char* id : {"a", "b", "c", "running"}) cache.NoteMaxSteps(id, 1);
  cache.NoteEnded("a");
  cache.NoteEnded("b");
  EXPECT_TRUE(cache.Knows("a"));
  cache.NoteEnded("c");
  EXPECT_FALSE(cache.Knows("a"));
  EXPECT_TRUE(cache.Knows("b"));
  EXPECT_TRUE(cache.Knows("c"));
  EXPECT_TRUE(cache.Knows("running"));
  v1::Job unknown;
  unknown.set_id("a");
  cache.Fill(&unknown);
  EXPECT_FALSE(unknown.has_progress());
}

v1::Job JobWithRestarts(int restarts, bool cancel_requested = false) {
  v1::Job job;
  job.set_id("job-1");
  job.set_restart_count(restarts);
  if (cancel_requested) {
    job.set_cancel_requested_time_us(1);
    job.set_cancel_reason("cancelled by alice");
  }
  return job;
}

TEST(AttemptOutcomeTest, SuccessRestartAndFailure) {
  AttemptOutcome success =
      DecideAttemptOutcome(JobWithRestarts(0), AttemptEnd::kSucceeded, false, "", "", 3);
  EXPECT_EQ(success.state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_FALSE(success.restart);

  AttemptOutcome restart = DecideAttemptOutcome(JobWithRestarts(2), AttemptEnd::kFailed, true,
                                                "worker lost", "worker_lost", 3);
  EXPECT_EQ(restart.state, v1::JOB_STATE_RESTARTING);
  EXPECT_TRUE(restart.restart);
  EXPECT_EQ(restart.reason, "worker lost");
  EXPECT_EQ(restart.cause, "worker_lost");

  AttemptOutcome gave_up = DecideAttemptOutcome(JobWithRestarts(3), AttemptEnd::kFailed, true,
                                                "worker lost", "worker_lost", 3);
  EXPECT_EQ(gave_up.state, v1::JOB_STATE_FAILED);
  EXPECT_FALSE(gave_up.restart);
  EXPECT_EQ(gave_up.reason, "worker lost (gave up after 3 restarts)");

  AttemptOutcome fatal =
      DecideAttemptOutcome(JobWithRestarts(0), AttemptEnd::kFailed, false, "bad config", "exit", 3);
  EXPECT_EQ(fatal.state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(fatal.reason, "bad config");
  EXPECT_EQ(fatal.cause, "exit");

  // A trainer that stopped without being asked to restarts like a retryable failure.
  EXPECT_EQ(DecideAttemptOutcome(JobWithRestarts(0), AttemptEnd::kStopped, true, "stopped",
                                 "trainer_stopped", 3)
                .state,
            v1::JOB_STATE_RESTARTING);
}

TEST(AttemptOutcomeTest, ARequestedCancellationWinsOverEverythingButSuccess) {
  const v1::Job cancelling = JobWithRestarts(0, /*cancel_requested=*/true);
  AttemptOutcome stopped =
      DecideAttemptOutcome(cancelling, AttemptEnd::kStopped, true, "stopped", "cancel", 3);
  EXPECT_EQ(stopped.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(stopped.reason, "cancelled by alice");
  EXPECT_EQ(stopped.cause, "cancelled");
  EXPECT_FALSE(stopped.restart);
  AttemptOutcome failed =
      DecideAttemptOutcome(cancelling, AttemptEnd::kFailed, true, "exit 1", "exit", 3);
  EXPECT_EQ(failed.state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(failed.reason, "cancelled by alice (the trainer did not stop cleanly: exit 1)");
  EXPECT_EQ(DecideAttemptOutcome(cancelling, AttemptEnd::kSucceeded, false, "", "", 3).state,
            v1::JOB_STATE_SUCCEEDED);
}

TEST(SchedulingPassTest, QueueEntryCarriesTheSpecAndWhenTheJobBecameSchedulable) {
  v1::Job job;
  job.set_id("job-3");
  job.set_submit_seq(7);
  job.set_submit_time_us(5'000'000);
  job.mutable_spec()->set_priority(4);
  job.mutable_spec()->set_world_size(2);
  job.mutable_spec()->mutable_devices_per_rank()->set_gpus(1);
  job.mutable_spec()->mutable_devices_per_rank()->set_cpu_slots(3);
  PendingJob entry = QueueEntryOf(job, std::nullopt, DependencyState::kPending);
  EXPECT_EQ(entry.job_id, "job-3");
  EXPECT_EQ(entry.priority, 4);
  EXPECT_EQ(entry.submit_seq, 7);
  EXPECT_EQ(entry.world_size, 2);
  EXPECT_EQ(entry.gpus_per_rank, 1);
  EXPECT_EQ(entry.cpu_slots_per_rank, 3);
  EXPECT_EQ(entry.dependency, DependencyState::kPending);
  EXPECT_EQ(entry.pending_since, absl::FromUnixSeconds(5));
  EXPECT_EQ(QueueEntryOf(job, kT0, DependencyState::kNone).pending_since, kT0);  // a restart
}

TEST(SchedulingPassTest, DependencyStateAndTheReasonAFailedDependencyGives) {
  MemoryJobStore store;
  NewJob first;
  first.spec.set_name("first");
  first.spec.set_world_size(1);
  absl::StatusOr<CreateJobResult> created = store.CreateJob(first);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string first_id = created->job.id();

  v1::JobSpec none;
  EXPECT_EQ(DependencyStateOf(none, store), DependencyState::kNone);
  v1::JobSpec after_first;
  after_first.mutable_depends_on()->set_job_id(first_id);
  EXPECT_EQ(DependencyStateOf(after_first, store), DependencyState::kPending);
  v1::JobSpec after_gone;
  after_gone.mutable_depends_on()->set_job_id("job-999999");
  EXPECT_EQ(DependencyStateOf(after_gone, store), DependencyState::kFailed);
  v1::JobSpec after_checkpoint;
  after_checkpoint.mutable_depends_on()->set_checkpoint_id("no-such-checkpoint");
  EXPECT_EQ(DependencyStateOf(after_checkpoint, store), DependencyState::kFailed);
  ASSERT_TRUE(store.UpdateJobState({first_id, 0, v1::JOB_STATE_CANCELLED, "by alice", 1, ""}).ok());
  EXPECT_EQ(DependencyStateOf(after_first, store), DependencyState::kFailed);

  v1::Job dependent;
  *dependent.mutable_spec() = after_first;
  EXPECT_EQ(FailedJobReason(dependent, "unplaceable"),
            absl::StrCat("dependency ", first_id, " failed, was cancelled or is gone"));
  v1::Job alone;
  EXPECT_EQ(FailedJobReason(alone, "unplaceable"), "unplaceable");
}

TEST(CheckpointIngestTest, VerificationIsCachedOnlyWhileTheFilesAreUnchanged) {
  ::peco::testing::ScopedTempDir temp("ingest");
  CheckpointFileStore::Options options;
  options.data_dir = temp.path();
  absl::StatusOr<std::unique_ptr<CheckpointFileStore>> files = CheckpointFileStore::Open(options);
  ASSERT_TRUE(files.ok()) << files.status();
  MemoryJobStore store;
  JobEventHub events;
  FakeClock clock;
  CheckpointIngest ingest(&store, files->get(), &events, nullptr, &clock, 3);
  const std::string data = "weights-v1";
  absl::StatusOr<uint64_t> session = (*files)->BeginUpload("job-1", 1, "ck", 10);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE((*files)->AppendChunk(*session, "model.pt", 0, data).ok());
  ASSERT_TRUE(
      (*files)
          ->Commit(*session, {{"model.pt", static_cast<int64_t>(data.size()), Sha256Hex(data)}})
          .ok());
  ASSERT_TRUE(ingest.Verify("job-1", "ck").ok());
  ASSERT_TRUE(ingest.Verify("job-1", "ck").ok());  // from the cache

  // Damage that keeps the size is still found: the file's modification time moved.
  const std::filesystem::path model = (*files)->CheckpointDir("job-1", "ck") + "/model.pt";
  const auto written = std::filesystem::last_write_time(model);
  ::peco::testing::WriteFileForTest(model, "weights-v2");
  std::filesystem::last_write_time(model, written + std::chrono::seconds(1));
  absl::Status damaged = ingest.Verify("job-1", "ck").status();
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(damaged.message(), HasSubstr("model.pt"));
  ::peco::testing::WriteFileForTest(model, data);
  EXPECT_TRUE(ingest.Verify("job-1", "ck").ok());
  std::filesystem::remove(model);
  EXPECT_EQ(ingest.Verify("job-1", "ck").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ingest.Verify("job-1", "../x").status().code(), absl::StatusCode::kInvalidArgument);
}

// A job of `store` with a running first attempt (checkpoints of attempt 1 may be recorded).
std::string JobWithAnAttempt(JobStore& store) {
  NewJob new_job;
  new_job.spec.set_kind(v1::JOB_KIND_TOKENIZER);
  absl::StatusOr<CreateJobResult> created = store.CreateJob(new_job);
  EXPECT_TRUE(created.ok()) << created.status();
  if (!created.ok()) return "";
  NewAttempt attempt;
  attempt.job_id = created->job.id();
  v1::RankPlacement placement;
  placement.set_worker_id("w1");
  placement.add_ranks(0);
  attempt.placements.push_back(placement);
  absl::Status begun = store.BeginAttempt(attempt).status();
  EXPECT_TRUE(begun.ok()) << begun;
  return created->job.id();
}

// Uploads and commits `files` (name -> bytes) as the step-`step` checkpoint of attempt 1 of
// `job_id` through `ingest`; returns the committed record (empty id on failure).
v1::CheckpointInfo CommitThroughIngest(CheckpointIngest& ingest, const std::string& job_id,
                                       int64_t step,
                                       const std::map<std::string, std::string>& files) {
  v1::CheckpointHeader header;
  header.set_job_id(job_id);
  header.set_attempt(1);
  header.set_step(step);
  absl::StatusOr<CheckpointUpload> upload = ingest.Begin(header);
  EXPECT_TRUE(upload.ok()) << upload.status();
  if (!upload.ok()) return {};
  v1::CheckpointManifest manifest;
  for (const auto& [name, data] : files) {
    v1::CheckpointChunk chunk;
    chunk.set_file_name(name);
    chunk.set_data(data);
    EXPECT_TRUE(ingest.Append(*upload, chunk).ok());
    v1::ManifestEntry* entry = manifest.add_entries();
    entry->set_name(name);
    entry->set_size(static_cast<int64_t>(data.size()));
    entry->set_sha256(Sha256Hex(data));
  }
  absl::StatusOr<v1::CheckpointInfo> info = ingest.Commit(*upload, manifest);
  EXPECT_TRUE(info.ok()) << info.status();
  return info.ok() ? *info : v1::CheckpointInfo();
}

// A store whose next ListCheckpoints runs a hook first: the moment a concurrent commit can land
// while retention works from the records it listed.
class HookedJobStore : public MemoryJobStore {
 public:
  std::function<void()> before_next_list;
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id) override {
    absl::StatusOr<std::vector<v1::CheckpointInfo>> listed =
        MemoryJobStore::ListCheckpoints(job_id);
    if (before_next_list) {
      std::function<void()> hook = std::move(before_next_list);
      before_next_list = nullptr;
      hook();
    }
    return listed;
  }
};

// Retention removes only the checkpoints it chose from the records it listed: one published
// meanwhile (not yet recorded) survives; a directory that never got its record is removed by
// RemoveOrphans at the next start.
TEST(CheckpointIngestTest, RetentionNeverRemovesACheckpointCommittedMeanwhile) {
  ::peco::testing::ScopedTempDir temp("ingest_retention");
  CheckpointFileStore::Options options;
  options.data_dir = temp.path();
  absl::StatusOr<std::unique_ptr<CheckpointFileStore>> files = CheckpointFileStore::Open(options);
  ASSERT_TRUE(files.ok()) << files.status();
  HookedJobStore store;
  const std::string job_id = JobWithAnAttempt(store);
  JobEventHub events;
  FakeClock clock;
  CheckpointIngest ingest(&store, files->get(), &events, nullptr, &clock, /*keep_checkpoints=*/1);
  auto commit = [&](int64_t step) {
    return CommitThroughIngest(ingest, job_id, step, {{"model.pt", absl::StrCat("w", step)}}).id();
  };
  const std::string first = commit(10);
  // While step 20's retention works from its listing, step 30's directory is published.
  const std::string landed = "concurrent-step-30";
  store.before_next_list = [&] {
    absl::StatusOr<uint64_t> session = (*files)->BeginUpload(job_id, 1, landed, 30);
    ASSERT_TRUE(session.ok());
    ASSERT_TRUE((*files)->AppendChunk(*session, "model.pt", 0, "w30").ok());
    ASSERT_TRUE((*files)->Commit(*session, {{"model.pt", 3, Sha256Hex("w30")}}).ok());
  };
  const std::string second = commit(20);
  absl::StatusOr<std::vector<std::string>> on_disk = (*files)->ListCheckpoints(job_id);
  ASSERT_TRUE(on_disk.ok());
  EXPECT_THAT(*on_disk, ::testing::UnorderedElementsAre(second, landed));  // `first` retired

  // At the next start, a directory with no record is a crash's leftover.
  ASSERT_TRUE(ingest.RemoveOrphans({job_id}).ok());
  on_disk = (*files)->ListCheckpoints(job_id);
  ASSERT_TRUE(on_disk.ok());
  EXPECT_THAT(*on_disk, ::testing::ElementsAre(second));
  EXPECT_NE(first, second);
}

// A download of one file verifies that file, not the whole checkpoint: damage in another file
// does not stop it, damage in the file itself does, and the whole checkpoint still fails.
TEST(CheckpointIngestTest, OpeningSomeFilesVerifiesOnlyThoseFiles) {
  ::peco::testing::ScopedTempDir temp("ingest_partial");
  CheckpointFileStore::Options options;
  options.data_dir = temp.path();
  absl::StatusOr<std::unique_ptr<CheckpointFileStore>> files = CheckpointFileStore::Open(options);
  ASSERT_TRUE(files.ok()) << files.status();
  MemoryJobStore store;
  const std::string job_id = JobWithAnAttempt(store);
  JobEventHub events;
  FakeClock clock;
  CheckpointIngest ingest(&store, files->get(), &events, nullptr, &clock, 3);
  const v1::CheckpointInfo committed = CommitThroughIngest(
      ingest, job_id, 5, {{"config.yaml", "kind: tokenizer"}, {"model.pt", "weights"}});
  ASSERT_FALSE(committed.id().empty());
  // Same size, other bytes, a later time: the stamp changes, so nothing is served from the cache.
  const std::filesystem::path model = (*files)->CheckpointDir(job_id, committed.id()) + "/model.pt";
  const auto written = std::filesystem::last_write_time(model);
  ::peco::testing::WriteFileForTest(model, "WEIGHTS");
  std::filesystem::last_write_time(model, written + std::chrono::seconds(1));

  EXPECT_TRUE(ingest.Open(committed.id(), {"config.yaml"}).ok());
  absl::Status damaged = ingest.Open(committed.id(), {"model.pt"}).status();
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(damaged.message(), HasSubstr("model.pt"));
  EXPECT_EQ(ingest.Open(committed.id()).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace peco::coordinator
