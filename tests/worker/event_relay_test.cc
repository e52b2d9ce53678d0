// The pure trainer-event relay (worker/event_relay.h): what each kind of event becomes.
#include "worker/event_relay.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace peco::worker {
namespace {

using ::testing::HasSubstr;

const absl::Time kReceived = absl::FromUnixMicros(1'000'000);

TrainerEvent Event(const std::string& line, int rank = 0) {
  std::optional<TrainerEvent> event =
      ParseTrainerEventLine(line, TrainerTag{"job-7", 2, rank, 0}, kReceived);
  EXPECT_TRUE(event.has_value()) << line;
  return event.value_or(TrainerEvent());
}

TEST(EventRelayTest, StepEventsBecomeMetricPointsOnly) {
  RelayedEvent relayed = RelayTrainerEvent(
      Event(R"({"event":"step","step":12,"loss":0.5,"lr":0.001,"note":"x","ok":true})"), 10,
      "/w/a");
  EXPECT_EQ(relayed.last_step, 12);
  ASSERT_EQ(relayed.reports.size(), 1u);
  const v1::MetricPoint& point = relayed.reports[0].metric_point();
  EXPECT_EQ(point.job_id(), "job-7");
  EXPECT_EQ(point.attempt(), 2);
  EXPECT_EQ(point.step(), 12);
  EXPECT_EQ(point.time_us(), 1'000'000);
  EXPECT_EQ(point.values().size(), 2u);  // loss and lr: strings and booleans are not metrics
  EXPECT_EQ(point.values().at("loss"), 0.5);
  EXPECT_EQ(relayed.rank_values.at("step"), 12.0);
  EXPECT_FALSE(relayed.checkpoint.has_value());
  // A step below the last one (a resumed rank re-reaching it) does not move the last step back.
  EXPECT_EQ(RelayTrainerEvent(Event(R"({"event":"step","step":5})"), 10, "/w/a").last_step, 10);
}

TEST(EventRelayTest, EvalEventsAreMetricsAndTrainerEventsOthersOnlyTrainerEvents) {
  RelayedEvent eval =
      RelayTrainerEvent(Event(R"({"event":"eval","step":40,"eval_top1":0.83})"), 40, "/w/a");
  ASSERT_EQ(eval.reports.size(), 2u);
  EXPECT_EQ(eval.reports[0].metric_point().values().at("eval_top1"), 0.83);
  EXPECT_EQ(eval.reports[1].trainer_event().type(), "eval");

  const std::string line = R"({"event":"start","max_steps":100})";
  RelayedEvent start = RelayTrainerEvent(Event(line), 33, "/w/a");
  ASSERT_EQ(start.reports.size(), 1u);
  const v1::TrainerEvent& relayed = start.reports[0].trainer_event();
  EXPECT_EQ(relayed.type(), "start");
  EXPECT_EQ(relayed.message(), line);  // verbatim
  EXPECT_EQ(relayed.step(), 33);       // stamped with the rank's last step
  EXPECT_EQ(start.last_step, 33);
  EXPECT_TRUE(start.rank_values.empty());

  RelayedEvent heartbeat = RelayTrainerEvent(Event(R"({"event":"heartbeat"})"), 3, "/w/a");
  EXPECT_TRUE(heartbeat.reports.empty());
  EXPECT_EQ(heartbeat.last_step, 3);
}

TEST(EventRelayTest, RankZerosCheckpointEventNamesTheCheckpointToUpload) {
  RelayedEvent relayed = RelayTrainerEvent(
      Event(R"({"event":"checkpoint","step":50,"path":"ckpt/step-50","final":true,)"
            R"("bytes":1024,"seconds":0.25})"),
      50, "/w/job-7/attempt-2");
  ASSERT_TRUE(relayed.checkpoint.has_value());
  EXPECT_EQ(relayed.checkpoint->job_id(), "job-7");
  EXPECT_EQ(relayed.checkpoint->attempt(), 2);
  EXPECT_EQ(relayed.checkpoint->step(), 50);
  EXPECT_TRUE(relayed.checkpoint->final());
  EXPECT_EQ(relayed.checkpoint_dir, "/w/job-7/attempt-2/ckpt/step-50");  // relative to the cwd
  EXPECT_EQ(relayed.rank_values.at("checkpoint_bytes"), 1024.0);
  EXPECT_EQ(relayed.reports.size(), 1u);  // and the event itself, for the history

  RelayedEvent absolute =
      RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1,"path":"/abs/c"})"), 0, "/w");
  EXPECT_EQ(absolute.checkpoint_dir, "/abs/c");
  EXPECT_FALSE(absolute.checkpoint->final());

  // Other ranks do not upload; a checkpoint event without a path is a problem, not an upload.
  EXPECT_FALSE(RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1,"path":"c"})", 1), 0, "/w")
                   .checkpoint.has_value());
  RelayedEvent no_path = RelayTrainerEvent(Event(R"({"event":"checkpoint","step":1})"), 0, "/w");
  EXPECT_FALSE(no_path.checkpoint.has_value());
  EXPECT_THAT(no_path.problem, HasSubstr("without a path"));
}

}  // namespace
}  // namespace peco::worker
