// WorkerMetrics: names and labels as scraped, and per-rank gauges removed with their job.
#include "worker/worker_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"

namespace peco::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(const WorkerMetrics& metrics) {
  return prometheus::TextSerializer().Serialize(metrics.registry()->Collect());
}

TEST(WorkerMetricsTest, ExposesCountersGaugesAndTheUploadHistogram) {
  WorkerMetrics metrics;
  metrics.SetTrainersRunning(3);
  metrics.CountHeartbeat("ok");
  metrics.CountHeartbeat("ok");
  metrics.CountHeartbeat("not_found");
  metrics.SetReportsBuffered(17);
  metrics.SetReportsDropped(5);
  metrics.SetReportsDropped(5);  // a running total: no double counting
  metrics.SetReportsDropped(7);
  metrics.CountUpload("committed", 1000, absl::Seconds(2));
  metrics.CountUpload("retry", 0, absl::Seconds(1));
  metrics.CountTrainerExit("oom");
  const std::string text = Scrape(metrics);
  EXPECT_THAT(text, HasSubstr("peco_worker_trainers_running 3"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_heartbeats_total{result="ok"} 2)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_heartbeats_total{result="not_found"} 1)"));
  EXPECT_THAT(text, HasSubstr("peco_worker_reports_buffered 17"));
  EXPECT_THAT(text, HasSubstr("peco_worker_reports_dropped_total 7"));
  EXPECT_THAT(text, HasSubstr("peco_worker_checkpoint_upload_bytes_total 1000"));
  EXPECT_THAT(text, HasSubstr("peco_worker_checkpoint_upload_seconds_count 1"));
  EXPECT_THAT(text, HasSubstr("peco_worker_checkpoint_upload_seconds_sum 2"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_checkpoint_uploads_total{result="retry"} 1)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_trainer_exits_total{cause="oom"} 1)"));
}

TEST(WorkerMetricsTest, PerRankGaugesAreRemovedWithTheirJob) {
  WorkerMetrics metrics;
  metrics.SetRankValue("job-1", 0, "loss", 0.5);
  metrics.SetRankValue("job-1", 1, "images_per_second", 40);
  metrics.SetRankValue("job-10", 0, "lr", 0.001);
  metrics.SetRankValue("job-1", 0, "not_a_rank_metric", 1);
  metrics.SetRankValue("job-1", 0, "eval_top1", 82.5);
  std::string text = Scrape(metrics);
  // Percent from the trainer, a ratio in Prometheus.
  EXPECT_THAT(text,
              HasSubstr(R"(peco_worker_rank_eval_top1_ratio{job_id="job-1",rank="0"} 0.825)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_loss{job_id="job-1",rank="0"} 0.5)"));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_images_per_second{job_id="job-1",rank="1"} 40)"));
  EXPECT_THAT(text, Not(HasSubstr("not_a_rank_metric")));
  metrics.RemoveJob("job-1");
  text = Scrape(metrics);
  EXPECT_THAT(text, Not(HasSubstr(R"(job_id="job-1")")));
  EXPECT_THAT(text, HasSubstr(R"(peco_worker_rank_lr{job_id="job-10",rank="0"} 0.001)"));
}

}  // namespace
}  // namespace peco::worker
