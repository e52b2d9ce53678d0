// ReportBuffer: acknowledged batches leave, unacknowledged ones are resent, overflow drops the
// oldest, stale attempts are removed.
#include "worker/report_buffer.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace peco::worker {
namespace {

using ::testing::ElementsAre;

v1::ReportProgressRequest Point(const std::string& job, int64_t attempt, int64_t step) {
  v1::ReportProgressRequest report;
  report.mutable_metric_point()->set_job_id(job);
  report.mutable_metric_point()->set_attempt(attempt);
  report.mutable_metric_point()->set_step(step);
  return report;
}

std::vector<int64_t> Steps(const ReportBuffer::Batch& batch) {
  std::vector<int64_t> steps;
  for (const auto& report : batch.reports) steps.push_back(report.metric_point().step());
  return steps;
}

TEST(ReportBufferTest, BatchesLeaveOnlyWhenAcknowledged) {
  ReportBuffer buffer(100);
  for (int step = 1; step <= 5; ++step) buffer.Add(Point("j", 1, step));
  ReportBuffer::Batch first = buffer.Peek(2);
  EXPECT_THAT(Steps(first), ElementsAre(1, 2));
  EXPECT_THAT(Steps(buffer.Peek(2)), ElementsAre(1, 2));  // not acknowledged: sent again
  buffer.Ack(first);
  buffer.Add(Point("j", 1, 6));
  EXPECT_THAT(Steps(buffer.Peek(10)), ElementsAre(3, 4, 5, 6));
  EXPECT_EQ(buffer.size(), 4u);
}

TEST(ReportBufferTest, OverflowDropsTheOldestAndAckSurvivesIt) {
  ReportBuffer buffer(3);
  for (int step = 1; step <= 3; ++step) buffer.Add(Point("j", 1, step));
  ReportBuffer::Batch batch = buffer.Peek(2);  // steps 1, 2
  buffer.Add(Point("j", 1, 4));                // drops step 1
  buffer.Add(Point("j", 1, 5));                // drops step 2
  EXPECT_EQ(buffer.dropped(), 2);
  buffer.Ack(batch);  // nothing of it is left; newer reports stay
  EXPECT_THAT(Steps(buffer.Peek(10)), ElementsAre(3, 4, 5));
}

TEST(ReportBufferTest, DropAttemptRemovesOnlyThatAttempt) {
  ReportBuffer buffer(10);
  buffer.Add(Point("j", 1, 1));
  buffer.Add(Point("j", 2, 2));
  v1::ReportProgressRequest event;
  event.mutable_trainer_event()->set_job_id("j");
  event.mutable_trainer_event()->set_attempt(1);
  buffer.Add(event);
  buffer.Add(Point("k", 1, 3));
  buffer.DropAttempt("j", 1);
  EXPECT_THAT(Steps(buffer.Peek(10)), ElementsAre(2, 3));
}

v1::ReportProgressRequest Log(const std::string& job, int64_t attempt, int64_t offset,
                              size_t bytes) {
  v1::ReportProgressRequest report;
  v1::LogChunk* chunk = report.mutable_log_chunk();
  chunk->set_job_id(job);
  chunk->set_attempt(attempt);
  chunk->set_offset(offset);
  chunk->set_data(std::string(bytes, 'x'));
  return report;
}

TEST(ReportBufferTest, LogChunksCountAsTheirAttemptsReports) {
  ReportBuffer buffer(10);
  buffer.Add(Log("j", 1, 0, 10));
  buffer.Add(Point("j", 2, 1));
  EXPECT_EQ(buffer.Pending("j", 1), 1u);  // the result of attempt 1 waits for its log
  buffer.DropAttempt("j", 1);
  EXPECT_EQ(buffer.Pending("j", 1), 0u);
  EXPECT_THAT(Steps(buffer.Peek(10)), ElementsAre(1));
}

TEST(ReportBufferTest, ByteBoundDropsTheOldestReports) {
  // Offsets 1000..7000 take the same varint size; the chunk at offset 0 is a little smaller.
  const size_t chunk_bytes = Log("j", 1, 1000, 1000).ByteSizeLong();
  ReportBuffer buffer(100, 3 * chunk_bytes);
  for (int i = 0; i < 5; ++i) buffer.Add(Log("j", 1, i * 1000, 1000));
  EXPECT_EQ(buffer.size(), 3u);
  EXPECT_EQ(buffer.dropped(), 2);
  ReportBuffer::Batch batch = buffer.Peek(10);
  ASSERT_EQ(batch.reports.size(), 3u);
  EXPECT_EQ(batch.reports[0].log_chunk().offset(), 2000);
  // Acknowledged bytes make room again.
  buffer.Ack(batch);
  for (int i = 5; i < 8; ++i) buffer.Add(Log("j", 1, i * 1000, 1000));
  EXPECT_EQ(buffer.size(), 3u);
  EXPECT_EQ(buffer.dropped(), 2);
}

}  // namespace
}  // namespace peco::worker
