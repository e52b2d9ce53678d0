#include "cli/watch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace peco::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

constexpr int64_t kT0 = int64_t{1700000000} * 1000000;  // microseconds

int64_t At(double seconds) { return kT0 + static_cast<int64_t>(seconds * 1e6); }

v1::WatchJobEvent State(v1::JobState state, int64_t attempt, double seconds,
                        const std::string& reason = "") {
  v1::WatchJobEvent event;
  v1::JobStateChange* change = event.mutable_state_change();
  change->set_job_id("job-000001");
  change->set_attempt(attempt);
  change->set_state(state);
  change->set_reason(reason);
  change->set_time_us(At(seconds));
  return event;
}

v1::WatchJobEvent Point(int64_t attempt, int64_t step, double seconds, double loss,
                        int32_t rank = 0) {
  v1::WatchJobEvent event;
  v1::MetricPoint* point = event.mutable_metric_point();
  point->set_job_id("job-000001");
  point->set_attempt(attempt);
  point->set_rank(rank);
  point->set_step(step);
  point->set_time_us(At(seconds));
  (*point->mutable_values())["loss"] = loss;
  (*point->mutable_values())["lr"] = 0.002;
  (*point->mutable_values())["images_per_second"] = 38.4;
  return event;
}

v1::WatchJobEvent Trainer(int64_t attempt, const std::string& type, int64_t step,
                          const std::string& message, double seconds, int32_t rank = 0) {
  v1::WatchJobEvent event;
  v1::TrainerEvent* trainer = event.mutable_trainer_event();
  trainer->set_job_id("job-000001");
  trainer->set_attempt(attempt);
  trainer->set_rank(rank);
  trainer->set_type(type);
  trainer->set_step(step);
  trainer->set_message(message);
  trainer->set_time_us(At(seconds));
  return event;
}

v1::WatchJobEvent Start(int64_t attempt, int64_t step, int64_t max_steps, double seconds) {
  return Trainer(
      attempt, "start", step,
      absl::StrCat(R"({"event":"start","kind":"tokenizer","step":)", step, R"(,"max_steps":)",
                   max_steps, R"(,"device":"cpu","precision":"fp32","threads":2})"),
      seconds);
}

WatchRenderer::Options Plain() { return {.tty = false, .time_zone = absl::UTCTimeZone()}; }
WatchRenderer::Options Tty() { return {.tty = true, .time_zone = absl::UTCTimeZone()}; }

std::string ConsumeAll(WatchRenderer& renderer, const std::vector<v1::WatchJobEvent>& events) {
  std::string out;
  for (const v1::WatchJobEvent& event : events) out += renderer.Consume(event);
  return out;
}

TEST(WatchTest, ProgressAndEtaFromStartEventAndRecentRate) {
  WatchRenderer renderer("job-000001", Plain());
  ConsumeAll(renderer, {State(v1::JOB_STATE_QUEUED, 0, 0), State(v1::JOB_STATE_RUNNING, 1, 1),
                        Start(1, 0, 100, 2), Point(1, 10, 10, 0.9), Point(1, 20, 20, 0.5)});
  const WatchProgress& progress = renderer.progress();
  EXPECT_EQ(progress.state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(progress.attempt, 1);
  EXPECT_EQ(progress.step, 20);
  EXPECT_EQ(progress.max_steps, 100);
  EXPECT_THAT(StepsPerSecond(progress), Optional(1.0));
  EXPECT_THAT(EstimateEta(progress), Optional(absl::Seconds(80)));
  const std::string line = RenderProgressLine(progress);
  EXPECT_THAT(line, HasSubstr("RUNNING"));
  EXPECT_THAT(line, HasSubstr("attempt 1"));
  EXPECT_THAT(line, HasSubstr("step 20/100 (20%)"));
  EXPECT_THAT(line, HasSubstr("loss 0.5000"));
  EXPECT_THAT(line, HasSubstr("lr 2.00e-03"));
  EXPECT_THAT(line, HasSubstr("38.4 img/s"));
  EXPECT_THAT(line, HasSubstr("ETA 1m20s"));
  EXPECT_FALSE(renderer.done());
}

TEST(WatchTest, EtaFollowsTheRecentRateOnly) {
  WatchProgress progress;
  progress.state = v1::JOB_STATE_RUNNING;
  progress.max_steps = 1000;
  // Slow at first (1 step/s), then kRateWindow points at 10 steps/s: the early points fall out.
  int64_t step = 0;
  double t = 0;
  auto add = [&](int64_t steps, double seconds) {
    step += steps;
    t += seconds;
    progress.step = step;
    progress.recent.emplace_back(At(t), step);
    while (progress.recent.size() > kRateWindow) progress.recent.pop_front();
  };
  for (int i = 0; i < 5; ++i) add(10, 10);
  EXPECT_THAT(StepsPerSecond(progress), Optional(1.0));
  for (size_t i = 0; i < kRateWindow; ++i) add(10, 1);
  EXPECT_THAT(StepsPerSecond(progress), Optional(10.0));
  EXPECT_THAT(EstimateEta(progress), Optional(absl::Seconds((1000 - step) / 10)));

  progress.state = v1::JOB_STATE_SUCCEEDED;
  EXPECT_EQ(EstimateEta(progress), std::nullopt);  // only a running job has an ETA
}

TEST(WatchTest, NoEtaWithoutEnoughInformation) {
  WatchRenderer renderer("job-000001", Plain());
  ConsumeAll(renderer, {State(v1::JOB_STATE_RUNNING, 1, 0), Point(1, 10, 10, 0.9)});
  EXPECT_EQ(EstimateEta(renderer.progress()), std::nullopt);  // one point, no max_steps
  renderer.Consume(Point(1, 20, 20, 0.8));
  EXPECT_EQ(EstimateEta(renderer.progress()), std::nullopt);  // still no max_steps
  EXPECT_THAT(RenderProgressLine(renderer.progress()), HasSubstr("step 20  "));
  renderer.Consume(Start(1, 0, 40, 1));
  EXPECT_THAT(EstimateEta(renderer.progress()), Optional(absl::Seconds(20)));
}

TEST(WatchTest, PlainOutputHasOneLinePerEventAndNoControlCharacters) {
  WatchRenderer renderer("job-000001", Plain());
  const std::string out = ConsumeAll(
      renderer, {State(v1::JOB_STATE_RUNNING, 1, 1), Start(1, 0, 100, 2), Point(1, 10, 10, 0.9),
                 Trainer(1, "checkpoint", 10,
                         R"({"event":"checkpoint","step":10,"bytes":2048,"final":false})", 11),
                 Point(1, 20, 20, 0.5)});
  EXPECT_EQ(out.find('\r'), std::string::npos);
  EXPECT_EQ(out.find('\033'), std::string::npos);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 5);
  EXPECT_THAT(out, HasSubstr("22:13:21 job-000001 RUNNING (attempt 1)\n"));
  EXPECT_THAT(out, HasSubstr("trainer started at step 0 of 100, device cpu, precision fp32"));
  EXPECT_THAT(out, HasSubstr("checkpoint at step 10 (2.00 KiB)\n"));
  EXPECT_THAT(out, HasSubstr("step 20/100 (20%)"));
}

TEST(WatchTest, TtyRedrawsOneLiveLine) {
  WatchRenderer renderer("job-000001", Tty());
  renderer.Consume(State(v1::JOB_STATE_RUNNING, 1, 1));
  renderer.Consume(Start(1, 0, 100, 2));
  const std::string point = renderer.Consume(Point(1, 10, 10, 0.9));
  EXPECT_EQ(point.rfind("\r\033[K", 0), 0u);  // redraws in place
  EXPECT_EQ(point.find('\n'), std::string::npos);
  EXPECT_THAT(point, HasSubstr("step 10/100"));

  // A state change is printed above the live line, which is then drawn again.
  const std::string change =
      renderer.Consume(State(v1::JOB_STATE_RESTARTING, 1, 30, "worker-2 lost"));
  EXPECT_EQ(change.rfind("\r\033[K", 0), 0u);
  EXPECT_THAT(change, HasSubstr("RESTARTING (attempt 1): worker-2 lost\n"));
  EXPECT_THAT(change.substr(change.find('\n')), HasSubstr("\r\033[KRESTARTING"));

  const std::string end = renderer.Consume(State(v1::JOB_STATE_SUCCEEDED, 2, 60));
  EXPECT_THAT(end, HasSubstr("SUCCEEDED (attempt 2)\n"));
  EXPECT_EQ(end.back(), '\n');  // no live line after the end
  EXPECT_EQ(renderer.Finish(), "");
}

TEST(WatchTest, LiveLineIsCutToTheTerminalWidth) {
  WatchRenderer renderer("job-000001",
                         {.tty = true, .columns = 20, .time_zone = absl::UTCTimeZone()});
  renderer.Consume(State(v1::JOB_STATE_RUNNING, 1, 1));
  const std::string point = renderer.Consume(Point(1, 10, 10, 0.9));
  const std::string prefix = "\r\033[K";
  ASSERT_EQ(point.rfind(prefix, 0), 0u);
  EXPECT_EQ(point.substr(prefix.size()), "RUNNING  attempt 1 ");  // 19 characters
}

TEST(WatchTest, TerminalStates) {
  for (v1::JobState state :
       {v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED, v1::JOB_STATE_CANCELLED}) {
    WatchRenderer renderer("job-000001", Plain());
    renderer.Consume(State(v1::JOB_STATE_RUNNING, 1, 1));
    renderer.Consume(State(v1::JOB_STATE_RESTARTING, 1, 2));
    EXPECT_FALSE(renderer.done());
    const std::string out = renderer.Consume(State(state, 2, 3, "the reason"));
    EXPECT_TRUE(renderer.done());
    EXPECT_THAT(out, HasSubstr("the reason"));
    // A replayed change of the same attempt after the end changes nothing.
    EXPECT_EQ(renderer.Consume(State(v1::JOB_STATE_RUNNING, 2, 4)), "");
    EXPECT_EQ(renderer.progress().state, state);
  }
}

TEST(WatchTest, AResumeAfterATerminalStateIsFollowed) {
  // The history of a cancelled and resumed job: CANCELLED is not the end.
  WatchRenderer renderer("job-000001", Plain());
  renderer.Consume(State(v1::JOB_STATE_RUNNING, 1, 1));
  renderer.Consume(State(v1::JOB_STATE_CANCELLED, 1, 2));
  EXPECT_TRUE(renderer.done());
  EXPECT_THAT(renderer.Consume(State(v1::JOB_STATE_RESTARTING, 1, 3)), HasSubstr("RESTARTING"));
  EXPECT_FALSE(renderer.done());
  renderer.Consume(State(v1::JOB_STATE_ASSIGNED, 2, 4));
  renderer.Consume(State(v1::JOB_STATE_SUCCEEDED, 2, 5));
  EXPECT_TRUE(renderer.done());
  EXPECT_EQ(renderer.progress().state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(renderer.progress().attempt, 2);
}

TEST(WatchTest, ReplayedEventsAreDropped) {
  const std::vector<v1::WatchJobEvent> history = {State(v1::JOB_STATE_RUNNING, 1, 1),
                                                  Start(1, 0, 100, 2), Point(1, 10, 10, 0.9),
                                                  Point(1, 20, 20, 0.5)};
  WatchRenderer renderer("job-000001", Plain());
  EXPECT_FALSE(ConsumeAll(renderer, history).empty());
  EXPECT_EQ(renderer.events_consumed(), 4);
  EXPECT_EQ(ConsumeAll(renderer, history), "");  // a reconnect replays the history
  EXPECT_EQ(renderer.events_consumed(), 4);
  EXPECT_EQ(renderer.progress().recent.size(), 2u);
}

TEST(WatchTest, NewAttemptResetsProgressAndOldAttemptsAreIgnored) {
  WatchRenderer renderer("job-000001", Plain());
  ConsumeAll(renderer,
             {State(v1::JOB_STATE_RUNNING, 1, 0), Start(1, 0, 100, 1), Point(1, 60, 60, 0.4),
              Point(1, 70, 70, 0.3), State(v1::JOB_STATE_RESTARTING, 1, 75),
              State(v1::JOB_STATE_RUNNING, 2, 80), Start(2, 50, 100, 81)});
  EXPECT_EQ(renderer.progress().attempt, 2);
  EXPECT_EQ(renderer.progress().step, 50);  // resumed from the step-50 checkpoint
  EXPECT_TRUE(renderer.progress().recent.empty());
  EXPECT_EQ(EstimateEta(renderer.progress()), std::nullopt);

  // A late point of attempt 1 and points of other ranks do not move the progress.
  EXPECT_EQ(renderer.Consume(Point(1, 80, 82, 0.2)), "");
  EXPECT_EQ(renderer.Consume(Point(2, 60, 90, 0.25, /*rank=*/1)), "");
  EXPECT_EQ(renderer.progress().step, 50);

  renderer.Consume(Point(2, 60, 90, 0.25));
  renderer.Consume(Point(2, 70, 100, 0.2));
  EXPECT_THAT(EstimateEta(renderer.progress()), Optional(absl::Seconds(30)));
}

TEST(WatchTest, ErrorsFromAnyRankAreShown) {
  WatchRenderer renderer("job-000001", Plain());
  const std::string out = renderer.Consume(
      Trainer(1, "error", 5, R"({"event":"error","code":3,"message":"loss is NaN"})", 5, 1));
  EXPECT_THAT(out, HasSubstr("rank 1 error: loss is NaN"));
  EXPECT_THAT(renderer.Consume(Trainer(1, "phase", 5, "{}", 6)), Not(HasSubstr("phase")));
}

}  // namespace
}  // namespace peco::cli
