#include "coordinator/scheduler_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace peco::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

PendingJob GpuJob(std::string id, int64_t seq, int32_t world_size = 1, int32_t gpus = 1,
                  int32_t priority = 0) {
  PendingJob job;
  job.job_id = std::move(id);
  job.submit_seq = seq;
  job.world_size = world_size;
  job.gpus_per_rank = gpus;
  job.priority = priority;
  job.pending_since = kNow - absl::Seconds(1);
  return job;
}

PendingJob CpuJob(std::string id, int64_t seq, int32_t world_size = 1, int32_t slots = 1) {
  PendingJob job = GpuJob(std::move(id), seq, world_size, 0);
  job.cpu_slots_per_rank = slots;
  return job;
}

WorkerCapacity Worker(std::string id, int32_t free_gpus, int32_t free_cpu = 0,
                      int32_t total_gpus = -1, int32_t total_cpu = -1) {
  return {std::move(id), total_gpus < 0 ? free_gpus : total_gpus,
          total_cpu < 0 ? free_cpu : total_cpu, free_gpus, free_cpu};
}

ScheduleDecision Decide(std::vector<PendingJob> jobs, std::vector<WorkerCapacity> workers,
                        SchedulerOptions options = {}) {
  EXPECT_TRUE(options.Validate().ok());
  return Schedule({std::move(jobs), std::move(workers), kNow}, options);
}

std::vector<std::string> PlacedIds(const ScheduleDecision& decision) {
  std::vector<std::string> ids;
  for (const Placement& p : decision.placements) ids.push_back(p.job_id);
  return ids;
}

TEST(SchedulerPolicyTest, HigherPriorityRunsFirst) {
  ScheduleDecision d =
      Decide({GpuJob("low", 1, 1, 1, 0), GpuJob("high", 2, 1, 1, 5)}, {Worker("w1", 1)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("high"));
}

TEST(SchedulerPolicyTest, APassPlacesAtMostTheConfiguredNumberInOrder) {
  SchedulerOptions options;
  options.max_placements_per_pass = 2;
  std::vector<PendingJob> jobs = {CpuJob("a", 1), CpuJob("b", 2), CpuJob("c", 3), CpuJob("d", 4)};
  ScheduleDecision capped = Decide(jobs, {Worker("w1", 0, 8)}, options);
  EXPECT_THAT(PlacedIds(capped), ElementsAre("a", "b"));
  EXPECT_TRUE(capped.capped);
  options.max_placements_per_pass = 0;  // no limit
  ScheduleDecision all = Decide(jobs, {Worker("w1", 0, 8)}, options);
  EXPECT_THAT(PlacedIds(all), ElementsAre("a", "b", "c", "d"));
  EXPECT_FALSE(all.capped);
  options.max_placements_per_pass = -1;
  EXPECT_FALSE(options.Validate().ok());
}

TEST(SchedulerPolicyTest, WorkersInAnyOrderArePlacedAsIfSortedById) {
  ScheduleDecision d =
      Decide({CpuJob("a", 1), CpuJob("b", 2)}, {Worker("w2", 0, 1), Worker("w1", 0, 1)});
  ASSERT_EQ(d.placements.size(), 2u);
  EXPECT_EQ(d.placements[0].workers[0].worker_id, "w1") << "ties go to the lowest id";
  EXPECT_EQ(d.placements[1].workers[0].worker_id, "w2");
}

TEST(SchedulerPolicyTest, SubmitOrderWithinAPriority) {
  ScheduleDecision d =
      Decide({GpuJob("third", 3), GpuJob("first", 1), GpuJob("second", 2)}, {Worker("w1", 2)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("first", "second"));
}

TEST(SchedulerPolicyTest, GpuJobNeverLandsOnACpuWorker) {
  ScheduleDecision d = Decide({GpuJob("gpu", 1), CpuJob("cpu", 2, 1, 2)},
                              {Worker("cpu-box", 0, 8), Worker("gpu-box", 1, 0)});
  ASSERT_THAT(PlacedIds(d), ElementsAre("gpu", "cpu"));
  EXPECT_EQ(d.placements[0].workers[0].worker_id, "gpu-box");
  EXPECT_EQ(d.placements[1].workers[0].worker_id, "cpu-box");
}

TEST(SchedulerPolicyTest, DeviceMismatchIsUnplaceableNotPlaced) {
  ScheduleDecision d = Decide({GpuJob("gpu", 1)}, {Worker("cpu-box", 0, 8)});
  EXPECT_THAT(d.placements, IsEmpty());
  ASSERT_EQ(d.unplaceable.size(), 1u);
  EXPECT_EQ(d.unplaceable[0].job_id, "gpu");
}

TEST(SchedulerPolicyTest, GangSpansTwoWorkersWithContiguousRanks) {
  ScheduleDecision d = Decide({GpuJob("gang", 1, 4)}, {Worker("w1", 2), Worker("w2", 2)});
  ASSERT_EQ(d.placements.size(), 1u);
  const Placement& p = d.placements[0];
  ASSERT_EQ(p.workers.size(), 2u);
  EXPECT_EQ(p.workers[0].worker_id, "w1");
  EXPECT_THAT(p.workers[0].ranks, ElementsAre(0, 1));
  EXPECT_EQ(p.workers[1].worker_id, "w2");
  EXPECT_THAT(p.workers[1].ranks, ElementsAre(2, 3));
}

TEST(SchedulerPolicyTest, GangIsAllOrNothingAndHoldsNothing) {
  // 3 free GPUs of 4 total: the 4-rank gang cannot start, and the GPUs it did not get stay free
  // for the 1-GPU job behind it (the gang is young, so backfill is allowed).
  ScheduleDecision d = Decide({GpuJob("gang", 1, 4), GpuJob("small", 2)},
                              {Worker("w1", 2, 0, 2), Worker("w2", 1, 0, 2)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("small"));
  EXPECT_THAT(d.unplaceable, IsEmpty());
  EXPECT_EQ(d.reserved_job_id, "");
}

TEST(SchedulerPolicyTest, PrefersTheTightestSingleWorker) {
  ScheduleDecision d =
      Decide({GpuJob("pair", 1, 2)}, {Worker("big", 8), Worker("exact", 2), Worker("small", 1)});
  ASSERT_EQ(d.placements.size(), 1u);
  ASSERT_EQ(d.placements[0].workers.size(), 1u);
  EXPECT_EQ(d.placements[0].workers[0].worker_id, "exact");
  EXPECT_THAT(d.placements[0].workers[0].ranks, ElementsAre(0, 1));
}

TEST(SchedulerPolicyTest, CapacityIsConsumedAcrossJobs) {
  ScheduleDecision d =
      Decide({GpuJob("a", 1, 1, 2), GpuJob("b", 2, 1, 2), GpuJob("c", 3, 1, 1)}, {Worker("w1", 3)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("a", "c"));
}

TEST(SchedulerPolicyTest, PendingDependencyWaitsFailedDependencyFails) {
  PendingJob waiting = GpuJob("waits", 1);
  waiting.dependency = DependencyState::kPending;
  PendingJob doomed = GpuJob("doomed", 2);
  doomed.dependency = DependencyState::kFailed;
  ScheduleDecision d = Decide({waiting, doomed, GpuJob("free", 3)}, {Worker("w1", 4)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("free"));
  EXPECT_THAT(d.waiting, ElementsAre("waits"));
  ASSERT_EQ(d.failed.size(), 1u);
  EXPECT_EQ(d.failed[0].job_id, "doomed");
  EXPECT_EQ(d.failed[0].reason, "dependency failed");
}

TEST(SchedulerPolicyTest, YoungBigJobIsBackfilledAround) {
  ScheduleDecision d = Decide({GpuJob("big", 1, 4), GpuJob("small", 2)},
                              {Worker("w1", 2, 0, 4)});  // 2 of 4 GPUs busy
  EXPECT_THAT(PlacedIds(d), ElementsAre("small"));
  EXPECT_EQ(d.reserved_job_id, "");
}

TEST(SchedulerPolicyTest, StarvingBigJobReservesAndBlocksLaterJobs) {
  PendingJob big = GpuJob("big", 1, 4);
  big.pending_since = kNow - absl::Minutes(11);
  PendingJob urgent = GpuJob("urgent", 3, 1, 1, /*priority=*/9);
  ScheduleDecision d = Decide({big, GpuJob("small", 2), urgent}, {Worker("w1", 2, 0, 4)});
  // Jobs ahead of the reservation in the order still run; jobs behind it wait.
  EXPECT_THAT(PlacedIds(d), ElementsAre("urgent"));
  EXPECT_EQ(d.reserved_job_id, "big");
}

TEST(SchedulerPolicyTest, ReservationThresholdIsAnOption) {
  PendingJob big = GpuJob("big", 1, 4);
  big.pending_since = kNow - absl::Minutes(11);
  SchedulerOptions patient;
  patient.reservation_after = absl::Hours(1);
  ScheduleDecision d = Decide({big, GpuJob("small", 2)}, {Worker("w1", 2, 0, 4)}, patient);
  EXPECT_THAT(PlacedIds(d), ElementsAre("small"));
  EXPECT_EQ(d.reserved_job_id, "");
}

TEST(SchedulerPolicyTest, JobLargerThanTheClusterNeverReserves) {
  PendingJob huge = GpuJob("huge", 1, 16);
  huge.pending_since = kNow - absl::Hours(5);
  ScheduleDecision d = Decide({huge, GpuJob("small", 2)}, {Worker("w1", 4), Worker("w2", 4)});
  EXPECT_THAT(PlacedIds(d), ElementsAre("small"));
  EXPECT_EQ(d.reserved_job_id, "");
  ASSERT_EQ(d.unplaceable.size(), 1u);
  EXPECT_EQ(d.unplaceable[0].job_id, "huge");
}

TEST(SchedulerPolicyTest, InvalidRequestsFail) {
  PendingJob no_devices = GpuJob("none", 1, 1, 0);
  PendingJob no_ranks = GpuJob("zero", 2, 0);
  ScheduleDecision d = Decide({no_devices, no_ranks}, {Worker("w1", 4, 4)});
  EXPECT_THAT(d.placements, IsEmpty());
  ASSERT_EQ(d.failed.size(), 2u);
  EXPECT_EQ(d.failed[0].job_id, "none");
  EXPECT_EQ(d.failed[1].job_id, "zero");
}

TEST(SchedulerPolicyTest, SameSnapshotSameDecision) {
  std::vector<PendingJob> jobs = {GpuJob("a", 1, 3), CpuJob("b", 2, 2, 3), GpuJob("c", 3, 2)};
  std::vector<WorkerCapacity> workers = {Worker("w2", 2, 4), Worker("w1", 2, 4)};
  ScheduleDecision first = Decide(jobs, workers);
  ScheduleDecision second =
      Decide({jobs.rbegin(), jobs.rend()}, {workers.rbegin(), workers.rend()});
  ASSERT_EQ(PlacedIds(first), PlacedIds(second));
  for (size_t i = 0; i < first.placements.size(); ++i) {
    ASSERT_EQ(first.placements[i].workers.size(), second.placements[i].workers.size());
    for (size_t w = 0; w < first.placements[i].workers.size(); ++w) {
      EXPECT_EQ(first.placements[i].workers[w].worker_id,
                second.placements[i].workers[w].worker_id);
      EXPECT_EQ(first.placements[i].workers[w].ranks, second.placements[i].workers[w].ranks);
    }
  }
}

TEST(SchedulerOptionsTest, Validate) {
  SchedulerOptions options;
  EXPECT_TRUE(options.Validate().ok());
  options.reservation_after = absl::Seconds(-1);
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
  options.reservation_after = absl::InfiniteDuration();
  EXPECT_EQ(options.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace peco::coordinator
