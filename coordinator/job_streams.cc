#include "coordinator/job_streams.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "coordinator/job_state_machine.h"

namespace peco::coordinator {
namespace {

bool IsTerminalEvent(const v1::WatchJobEvent& event) {
  return event.has_state_change() && IsTerminal(event.state_change().state());
}

}  // namespace

absl::Status WatchJobEvents(Coordinator& coordinator, JobEventHub& events,
                            const v1::WatchJobRequest& request,
                            const std::function<bool(const v1::WatchJobEvent&)>& sink,
                            const std::function<bool()>& cancelled) {
  // Take the cursor first, then read the history: nothing can fall between the two.
  int64_t cursor = events.Cursor(request.job_id());
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = coordinator.JobHistory(request.job_id());
  if (!history.ok()) return history.status();
  std::set<std::tuple<int64_t, int32_t, int64_t>> sent_points;  // (attempt, rank, step)
  auto first_time = [&](const v1::WatchJobEvent& event) {
    if (!event.has_metric_point()) return true;
    const v1::MetricPoint& p = event.metric_point();
    return sent_points.insert({p.attempt(), p.rank(), p.step()}).second;
  };
  const v1::WatchJobEvent& current = history->back();
  if (request.include_history()) {
    for (const v1::WatchJobEvent& event : *history) {
      first_time(event);
      if (!sink(event)) return absl::OkStatus();
    }
  } else if (!sink(current)) {
    return absl::OkStatus();
  }
  if (IsTerminalEvent(current)) return absl::OkStatus();

  while (!cancelled()) {
    if (events.shut_down()) return absl::UnavailableError("the coordinator is shutting down");
    int64_t lost = 0;
    std::vector<v1::WatchJobEvent> batch =
        events.Wait(request.job_id(), &cursor, absl::Now() + absl::Milliseconds(500), &lost);
    for (const v1::WatchJobEvent& event : batch) {
      if (!first_time(event)) continue;
      if (!sink(event)) return absl::OkStatus();
      if (IsTerminalEvent(event)) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status FollowJobLogs(Coordinator& coordinator, JobLogStore& logs,
                           const v1::StreamLogsRequest& request, int64_t piece_bytes,
                           const std::function<bool(v1::StreamLogsResponse)>& sink,
                           const std::function<bool()>& cancelled) {
  v1::GetJobRequest get;
  get.set_job_id(request.job_id());
  absl::StatusOr<v1::GetJobResponse> job = coordinator.GetJob(get);
  if (!job.ok()) return job.status();
  const std::set<int32_t> ranks(request.ranks().begin(), request.ranks().end());
  std::map<std::pair<int64_t, int32_t>, int64_t> sent;  // bytes sent per (attempt, rank)
  while (true) {
    const uint64_t version = logs.Version(request.job_id());
    // Read before listing: a job seen terminal here has every log stored already.
    const bool terminal = IsTerminal(job->job().state());
    absl::StatusOr<std::vector<StoredLog>> stored = logs.List(request.job_id());
    if (!stored.ok()) return stored.status();
    for (const StoredLog& log : *stored) {
      if ((request.attempt() != 0 && log.attempt != request.attempt()) ||
          (!ranks.empty() && ranks.count(log.rank) == 0)) {
        continue;
      }
      int64_t& offset = sent[{log.attempt, log.rank}];
      while (offset < log.bytes) {
        if (cancelled()) return absl::CancelledError("cancelled");
        absl::StatusOr<std::string> data =
            logs.Read(request.job_id(), log.attempt, log.rank, offset,
                      std::min<int64_t>(log.bytes - offset, piece_bytes));
        if (!data.ok()) return data.status();
        if (data->empty()) break;
        offset += static_cast<int64_t>(data->size());
        v1::StreamLogsResponse piece;
        piece.set_attempt(log.attempt);
        piece.set_rank(log.rank);
        *piece.mutable_data() = *std::move(data);
        if (!sink(std::move(piece))) return absl::CancelledError("client went away");
      }
    }
    if (!request.follow() || terminal) return absl::OkStatus();
    // Wake for new bytes, and at least every second to see the job's state and the client.
    logs.WaitForChange(request.job_id(), version, absl::Now() + absl::Seconds(1));
    if (cancelled()) return absl::CancelledError("cancelled");
    if (logs.shut_down()) return absl::UnavailableError("the coordinator is shutting down");
    job = coordinator.GetJob(get);
    if (!job.ok()) return job.status();
  }
}

}  // namespace peco::coordinator
