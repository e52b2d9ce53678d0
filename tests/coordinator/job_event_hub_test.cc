// JobEventHub: cursors, per-job wake-ups, shutdown and the pruning of ended jobs' streams.
#include "coordinator/job_event_hub.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace peco::coordinator {
namespace {

v1::WatchJobEvent State(const std::string& job_id, v1::JobState state) {
  v1::WatchJobEvent event;
  event.mutable_state_change()->set_job_id(job_id);
  event.mutable_state_change()->set_state(state);
  return event;
}

// Waits are bounded so that a bug fails the test instead of hanging it.
const absl::Duration kNoHang = absl::Seconds(30);

TEST(JobEventHubTest, WatcherGetsWhatCameAfterItsCursor) {
  JobEventHub hub;
  hub.Publish("a", State("a", v1::JOB_STATE_QUEUED));
  int64_t cursor = hub.Cursor("a");
  hub.Publish("b", State("b", v1::JOB_STATE_QUEUED));  // another job: not for this watcher
  hub.Publish("a", State("a", v1::JOB_STATE_ASSIGNED));
  std::vector<v1::WatchJobEvent> events = hub.Wait("a", &cursor, absl::Now() + kNoHang);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state_change().state(), v1::JOB_STATE_ASSIGNED);
  // Nothing new: returns empty at the deadline.
  EXPECT_TRUE(hub.Wait("a", &cursor, absl::InfinitePast()).empty());
}

TEST(JobEventHubTest, CursorTakenBeforeTheFirstEventSeesIt) {
  JobEventHub hub;
  hub.Publish("other", State("other", v1::JOB_STATE_QUEUED));
  int64_t cursor = hub.Cursor("new");
  std::thread publisher([&] { hub.Publish("new", State("new", v1::JOB_STATE_QUEUED)); });
  std::vector<v1::WatchJobEvent> events;
  while (events.empty()) {
    events = hub.Wait("new", &cursor, absl::Now() + kNoHang);
  }
  publisher.join();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state_change().job_id(), "new");
}

TEST(JobEventHubTest, ShutdownWakesWatchers) {
  JobEventHub hub;
  int64_t cursor = hub.Cursor("a");
  std::thread stopper([&] { hub.Shutdown(); });
  EXPECT_TRUE(hub.Wait("a", &cursor, absl::Now() + kNoHang).empty());
  stopper.join();
  EXPECT_TRUE(hub.shut_down());
}

TEST(JobEventHubTest, ReportsEventsDroppedForSpace) {
  JobEventHub hub(/*max_events_per_job=*/2);
  int64_t cursor = hub.Cursor("a");
  for (int i = 0; i < 5; ++i) hub.Publish("a", State("a", v1::JOB_STATE_RUNNING));
  int64_t lost = 0;
  EXPECT_EQ(hub.Wait("a", &cursor, absl::InfinitePast(), &lost).size(), 2u);
  EXPECT_EQ(lost, 3);
}

TEST(JobEventHubTest, EndedJobsAreForgottenAndAResumeKeepsOldCursorsValid) {
  JobEventHub hub(/*max_events_per_job=*/100, /*retention=*/absl::ZeroDuration());
  hub.Publish("done", State("done", v1::JOB_STATE_FAILED));
  const int64_t old_cursor = hub.Cursor("done");
  hub.Publish("running", State("running", v1::JOB_STATE_RUNNING));
  // Pruning runs every 1024 publications.
  for (int i = 0; i < 1024; ++i) {
    const std::string id = absl::StrCat("job-", i);
    hub.Publish(id, State(id, v1::JOB_STATE_SUCCEEDED));
  }
  EXPECT_LT(hub.StreamCountForTest(), 10u) << "ended jobs without watchers are dropped";
  // The failed job is resumed: its new events come after any cursor handed out before.
  hub.Publish("done", State("done", v1::JOB_STATE_RESTARTING));
  int64_t cursor = old_cursor;
  int64_t lost = -1;
  std::vector<v1::WatchJobEvent> events = hub.Wait("done", &cursor, absl::InfinitePast(), &lost);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state_change().state(), v1::JOB_STATE_RESTARTING);
  EXPECT_EQ(lost, 0);
  // A job that has not ended keeps its events.
  int64_t from_start = 0;
  EXPECT_FALSE(hub.Wait("running", &from_start, absl::InfinitePast()).empty());
}

}  // namespace
}  // namespace peco::coordinator
