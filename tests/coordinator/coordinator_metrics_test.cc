// CoordinatorMetrics: the per-job series exist only for active jobs, and for at most a bounded
// number of them.
#include "coordinator/coordinator_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "prometheus/metric_family.h"

namespace peco::coordinator {
namespace {

using ::testing::UnorderedElementsAre;

// Returns the `job_id` label of every series of the named family.
std::vector<std::string> JobsWithSeries(const CoordinatorMetrics& metrics,
                                        const std::string& family) {
  std::vector<std::string> jobs;
  for (const prometheus::MetricFamily& collected : metrics.registry()->Collect()) {
    if (collected.name != family) continue;
    for (const prometheus::ClientMetric& metric : collected.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        if (label.name == "job_id") jobs.push_back(label.value);
      }
    }
  }
  return jobs;
}

TEST(CoordinatorMetricsTest, PerJobSeriesAreCappedAndFreedWhenAJobEnds) {
  CoordinatorMetrics metrics(/*max_job_series=*/2);
  metrics.SetJobProgress("job-1", 10, {{"loss", 0.5}});
  metrics.SetJobProgress("job-2", 10, {{"loss", 0.5}});
  metrics.SetJobProgress("job-3", 10, {{"loss", 0.5}});
  EXPECT_THAT(JobsWithSeries(metrics, "peco_job_step"), UnorderedElementsAre("job-1", "job-2"));
  metrics.ForgetJob("job-1");
  metrics.SetJobProgress("job-3", 11, {{"loss", 0.4}});
  EXPECT_THAT(JobsWithSeries(metrics, "peco_job_step"), UnorderedElementsAre("job-2", "job-3"));
  EXPECT_EQ(JobsWithSeries(metrics, "peco_job_loss").size(), 2u);
  metrics.SetJobRestarts("job-2", 3);
  metrics.SetJobRestarts("job-4", 1);  // over the cap: no series
  EXPECT_THAT(JobsWithSeries(metrics, "peco_job_restarts_so_far"),
              UnorderedElementsAre("job-2", "job-3"));
  metrics.ForgetJob("job-2");
  EXPECT_THAT(JobsWithSeries(metrics, "peco_job_restarts_so_far"), UnorderedElementsAre("job-3"));
}

}  // namespace
}  // namespace peco::coordinator
