#include "bench/job_audit.h"

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace peco::bench {
namespace {

absl::Status FromGrpc(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

std::unique_ptr<grpc::ClientContext> Context(const Endpoint& endpoint) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->AddMetadata("authorization", absl::StrCat("Bearer ", endpoint.user_token));
  context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  return context;
}

// What one job's history shows.
struct HistoryCheck {
  bool complete = false;
  int64_t repeats = 0;
  int64_t events = 0;
  std::string why;
};

absl::StatusOr<HistoryCheck> CheckHistory(v1::JobService::Stub* stub, const Endpoint& endpoint,
                                          const v1::Job& job) {
  v1::WatchJobRequest request;
  request.set_job_id(job.id());
  request.set_include_history(true);
  std::unique_ptr<grpc::ClientContext> context = Context(endpoint);
  std::unique_ptr<grpc::ClientReader<v1::WatchJobEvent>> reader =
      stub->WatchJob(context.get(), request);
  HistoryCheck check;
  std::set<std::tuple<int64_t, int32_t, int64_t>> points;  // (attempt, rank, step)
  int terminal_changes = 0;
  bool final_attempt_point = false;
  v1::WatchJobEvent event;
  while (reader->Read(&event)) {
    ++check.events;
    if (event.has_metric_point()) {
      const v1::MetricPoint& point = event.metric_point();
      if (!points.emplace(point.attempt(), point.rank(), point.step()).second) ++check.repeats;
      final_attempt_point |= point.attempt() == job.attempt() && point.step() == 1;
    } else if (event.has_state_change()) {
      const v1::JobState state = event.state_change().state();
      terminal_changes += state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
                          state == v1::JOB_STATE_CANCELLED;
    }
  }
  if (absl::Status status = FromGrpc(reader->Finish(), "WatchJob " + job.id()); !status.ok()) {
    return status;
  }
  if (terminal_changes != 1) {
    check.why = absl::StrCat(terminal_changes, " terminal state changes");
  } else if (!final_attempt_point) {
    check.why = absl::StrCat("no step-1 point of attempt ", job.attempt());
  }
  check.complete = check.why.empty();
  if (check.repeats > 0 && check.why.empty()) {
    check.why = absl::StrCat(check.repeats, " repeated events");
  }
  return check;
}

}  // namespace

bool JobAudit::clean() const {
  auto succeeded = states.find("JOB_STATE_SUCCEEDED");
  return duplicate_request_ids == 0 && incomplete_histories == 0 && repeated_events == 0 &&
         succeeded != states.end() && succeeded->second == jobs;
}

absl::StatusOr<JobAudit> AuditJobs(const Endpoint& endpoint, int threads) {
  std::vector<std::shared_ptr<grpc::Channel>> channels = OpenChannels(endpoint.address, threads);
  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs;
  for (const auto& channel : channels) stubs.push_back(v1::JobService::NewStub(channel));

  std::vector<v1::Job> jobs;
  std::string page_token;
  do {
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    request.set_page_token(page_token);
    v1::ListJobsResponse response;
    std::unique_ptr<grpc::ClientContext> context = Context(endpoint);
    if (absl::Status status =
            FromGrpc(stubs[0]->ListJobs(context.get(), request, &response), "ListJobs");
        !status.ok()) {
      return status;
    }
    for (v1::Job& job : *response.mutable_jobs()) jobs.push_back(std::move(job));
    page_token = response.next_page_token();
  } while (!page_token.empty());

  JobAudit audit;
  audit.jobs = static_cast<int64_t>(jobs.size());
  std::map<std::string, int64_t> per_request;
  for (const v1::Job& job : jobs) {
    ++audit.states[v1::JobState_Name(job.state())];
    audit.restarted += job.attempt() > 1;
    if (!job.client_request_id().empty() && ++per_request[job.client_request_id()] > 1) {
      ++audit.duplicate_request_ids;
      if (audit.examples.size() < 10) {
        audit.examples.push_back(
            absl::StrCat(job.id(), ": second job for request ", job.client_request_id()));
      }
    }
  }

  absl::Mutex mu;
  absl::Status first_error;
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(threads, 1); ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = next.fetch_add(1); i < jobs.size(); i = next.fetch_add(1)) {
        absl::StatusOr<HistoryCheck> check = CheckHistory(stubs[t].get(), endpoint, jobs[i]);
        absl::MutexLock lock(&mu);
        if (!check.ok()) {
          if (first_error.ok()) first_error = check.status();
          continue;
        }
        audit.history_events += check->events;
        audit.repeated_events += check->repeats;
        audit.incomplete_histories += check->complete ? 0 : 1;
        if (!check->why.empty() && audit.examples.size() < 10) {
          audit.examples.push_back(absl::StrCat(jobs[i].id(), ": ", check->why));
        }
      }
    });
  }
  for (std::thread& thread : pool) thread.join();
  if (!first_error.ok()) return first_error;
  return audit;
}

}  // namespace peco::bench
