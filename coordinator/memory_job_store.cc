#include "coordinator/memory_job_store.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/job_record_rules.h"
#include "coordinator/job_state_machine.h"
#include "google/protobuf/util/message_differencer.h"

namespace peco::coordinator {
namespace {

using ::google::protobuf::util::MessageDifferencer;

}  // namespace

absl::StatusOr<MemoryJobStore::JobEntry*> MemoryJobStore::FindJob(const std::string& job_id,
                                                                  const char* operation) {
  auto it = job_index_by_id_.find(job_id);
  if (it == job_index_by_id_.end()) {
    return absl::NotFoundError(absl::StrCat(operation, ": no job ", job_id));
  }
  return &jobs_[it->second];
}

// ---- Jobs ----

absl::StatusOr<CreateJobResult> MemoryJobStore::CreateJob(const NewJob& new_job) {
  constexpr const char* kOp = "creating a job";
  RETURN_IF_ERROR(ValidateNewJob(kOp, new_job));
  absl::MutexLock lock(&mu_);
  if (!new_job.client_request_id.empty()) {
    auto it = job_index_by_request_id_.find(new_job.client_request_id);
    if (it != job_index_by_request_id_.end()) {
      const v1::Job& existing = jobs_[it->second].job;
      RETURN_IF_ERROR(CheckRequestReplay(kOp, existing, new_job));
      return CreateJobResult{existing, false};
    }
  }
  const int64_t seq = static_cast<int64_t>(jobs_.size()) + 1;
  JobEntry& entry = jobs_.emplace_back();
  entry.job = NewJobRecord(new_job, seq);
  const v1::Job& job = entry.job;
  const v1::Dependency& dependency = job.spec().depends_on();
  if (dependency.has_checkpoint_id()) {
    auto checkpoint = checkpoints_.find(dependency.checkpoint_id());
    if (checkpoint != checkpoints_.end()) entry.depends_on = checkpoint->second.job_id();
  } else {
    entry.depends_on = dependency.job_id();
  }
  job_index_by_id_[job.id()] = jobs_.size() - 1;
  if (!new_job.client_request_id.empty()) {
    job_index_by_request_id_[new_job.client_request_id] = jobs_.size() - 1;
  }
  return CreateJobResult{job, true};
}

absl::StatusOr<v1::Job> MemoryJobStore::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id, "getting a job"));
  return entry->job;
}

absl::Status MemoryJobStore::Sync() { return absl::OkStatus(); }

absl::StatusOr<JobPage> MemoryJobStore::ListJobs(const JobQuery& query) {
  constexpr const char* kOp = "listing jobs";
  ASSIGN_OR_RETURN(const int64_t after_seq, PageStart(kOp, query));
  absl::MutexLock lock(&mu_);
  JobPage page;
  for (size_t i = static_cast<size_t>(std::min<int64_t>(after_seq, jobs_.size())); i < jobs_.size();
       ++i) {
    const v1::Job& job = jobs_[i].job;
    if (!query.states.empty() &&
        std::find(query.states.begin(), query.states.end(), job.state()) == query.states.end()) {
      continue;
    }
    if (!query.owner.empty() && JobOwner(job) != query.owner) continue;
    if (!query.depends_on_job_id.empty() && jobs_[i].depends_on != query.depends_on_job_id) {
      continue;
    }
    const auto& labels = job.spec().labels();
    if (!std::all_of(query.labels.begin(), query.labels.end(), [&](const auto& label) {
          auto it = labels.find(label.first);
          return it != labels.end() && it->second == label.second;
        })) {
      continue;
    }
    if (static_cast<int>(page.jobs.size()) == query.page_size) {
      page.next_page_token = absl::StrCat(page.jobs.back().submit_seq());
      break;
    }
    page.jobs.push_back(job);
  }
  return page;
}

absl::StatusOr<v1::Job> MemoryJobStore::UpdateJobState(const JobStateUpdate& update) {
  constexpr const char* kOp = "updating a job state";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(update.job_id, kOp));
  RETURN_IF_ERROR(CheckStateUpdate(kOp, entry->job, update));
  if (ApplyStateUpdate(update, &entry->job)) {
    ApplyAttemptUpdate(update, &entry->attempts[entry->job.attempt() - 1]);
  }
  return entry->job;
}

absl::StatusOr<v1::Job> MemoryJobStore::UpdateJobControl(const JobControlUpdate& update) {
  constexpr const char* kOp = "updating a job's control fields";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(update.job_id, kOp));
  RETURN_IF_ERROR(CheckAttemptFence(kOp, entry->job, update.expected_attempt, "the update"));
  ApplyControlUpdate(update, &entry->job);
  return entry->job;
}

absl::StatusOr<JobStore::StartedAttempt> MemoryJobStore::BeginAttemptLocked(
    const NewAttempt& request, const char* kOp) {
  RETURN_IF_ERROR(ValidateNewAttempt(kOp, request));
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(request.job_id, kOp));
  RETURN_IF_ERROR(CheckNewAttempt(kOp, entry->job, request));
  // Every check has passed: from here on the attempt is written.
  entry->attempts.push_back(StartAttempt(request, &entry->job));
  return StartedAttempt{entry->job, entry->attempts.back()};
}

absl::StatusOr<v1::Attempt> MemoryJobStore::BeginAttempt(const NewAttempt& request) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(StartedAttempt started, BeginAttemptLocked(request, "beginning an attempt"));
  return std::move(started.attempt);
}

absl::StatusOr<std::vector<absl::StatusOr<JobStore::StartedAttempt>>> MemoryJobStore::BeginAttempts(
    const std::vector<NewAttempt>& requests) {
  absl::MutexLock lock(&mu_);
  std::vector<absl::StatusOr<StartedAttempt>> results;
  results.reserve(requests.size());
  for (const NewAttempt& request : requests) {
    // In order, so a request sees the attempts the ones before it started.
    results.push_back(BeginAttemptLocked(request, "beginning attempts"));
  }
  return results;
}

absl::StatusOr<std::vector<v1::Attempt>> MemoryJobStore::ListAttempts(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id, "listing attempts"));
  return entry->attempts;
}

// ---- Workers ----

absl::Status MemoryJobStore::UpsertWorker(const v1::WorkerInfo& worker) {
  if (worker.id().empty()) return absl::InvalidArgumentError("storing a worker: empty id");
  absl::MutexLock lock(&mu_);
  workers_[worker.id()] = worker;
  return absl::OkStatus();
}

absl::StatusOr<v1::WorkerInfo> MemoryJobStore::GetWorker(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat("getting a worker: no worker ", worker_id));
  }
  return it->second;
}

absl::StatusOr<std::vector<v1::WorkerInfo>> MemoryJobStore::ListWorkers() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::WorkerInfo> workers;
  workers.reserve(workers_.size());
  // std::string orders by bytes, as SQLite's BINARY collation does.
  for (const auto& [id, worker] : workers_) workers.push_back(worker);
  return workers;
}

// ---- Checkpoints ----

absl::Status MemoryJobStore::AddCheckpoint(const v1::CheckpointInfo& info) {
  constexpr const char* kOp = "recording a checkpoint";
  if (info.id().empty()) return absl::InvalidArgumentError(absl::StrCat(kOp, ": empty id"));
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(info.id());
  if (it != checkpoints_.end()) {
    // A retried upload of a committed checkpoint succeeds even after the attempt moved on.
    if (MessageDifferencer::Equals(it->second, info)) return absl::OkStatus();
    return absl::AlreadyExistsError(
        absl::StrCat(kOp, ": checkpoint ", info.id(), " exists with other content"));
  }
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(info.job_id(), kOp));
  const v1::Job& job = entry->job;
  if (job.attempt() != info.attempt()) {
    return absl::FailedPreconditionError(absl::StrCat(kOp, ": job ", job.id(), " is at attempt ",
                                                      job.attempt(), ", checkpoint ", info.id(),
                                                      " comes from attempt ", info.attempt()));
  }
  checkpoints_.emplace(info.id(), info);
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> MemoryJobStore::GetCheckpoint(const std::string& checkpoint_id) {
  absl::MutexLock lock(&mu_);
  auto it = checkpoints_.find(checkpoint_id);
  if (it == checkpoints_.end()) {
    return absl::NotFoundError(absl::StrCat("getting a checkpoint: no checkpoint ", checkpoint_id));
  }
  return it->second;
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> MemoryJobStore::ListCheckpoints(
    const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  // A scan: retention keeps few checkpoints, and this store is for tests. An unknown job has
  // none (not NotFound), as with SQLite.
  std::vector<v1::CheckpointInfo> checkpoints;
  for (const auto& [id, info] : checkpoints_) {
    if (info.job_id() == job_id) checkpoints.push_back(info);
  }
  // checkpoints_ iterates by id, so a stable sort leaves ties on (step, attempt) in id order.
  std::stable_sort(checkpoints.begin(), checkpoints.end(),
                   [](const v1::CheckpointInfo& a, const v1::CheckpointInfo& b) {
                     return std::make_pair(a.step(), a.attempt()) <
                            std::make_pair(b.step(), b.attempt());
                   });
  return checkpoints;
}

absl::Status MemoryJobStore::DeleteCheckpoint(const std::string& checkpoint_id) {
  absl::MutexLock lock(&mu_);
  checkpoints_.erase(checkpoint_id);
  return absl::OkStatus();
}

absl::Status MemoryJobStore::AppendAudit(const v1::AuditEntry& entry) {
  RETURN_IF_ERROR(CheckAuditEntry("appending to the audit log", entry));
  absl::MutexLock lock(&mu_);
  audit_[entry.job_id()].push_back(entry);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::AuditEntry>> MemoryJobStore::ListAudit(const std::string& job_id,
                                                                      int limit) {
  if (limit < 1) {
    return absl::InvalidArgumentError("reading the audit log: limit must be >= 1");
  }
  absl::MutexLock lock(&mu_);
  auto it = audit_.find(job_id);
  if (it == audit_.end()) return std::vector<v1::AuditEntry>();
  const std::vector<v1::AuditEntry>& all = it->second;
  const size_t first = all.size() > static_cast<size_t>(limit) ? all.size() - limit : 0;
  return std::vector<v1::AuditEntry>(all.begin() + first, all.end());
}

// ---- Metrics ----

absl::StatusOr<int64_t> MemoryJobStore::AppendMetricPoints(
    const std::string& job_id, int64_t attempt, const std::vector<v1::MetricPoint>& points) {
  constexpr const char* kOp = "appending metric points";
  RETURN_IF_ERROR(CheckMetricPoints(kOp, job_id, attempt, points));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(job_id, kOp));
  const int64_t current_attempt = entry->job.attempt();
  if (attempt < 1 || current_attempt != attempt) {
    return absl::FailedPreconditionError(absl::StrCat(kOp, ": job ", job_id, " is at attempt ",
                                                      current_attempt, ", points from ", attempt));
  }
  int64_t inserted = 0;
  for (const v1::MetricPoint& point : points) {
    // Sorted names keep the write order (and so the first-write-wins outcome) deterministic.
    std::map<std::string, double> values(point.values().begin(), point.values().end());
    for (const auto& [name, value] : values) {
      // SQLite binds NaN as NULL, which its REAL NOT NULL column skips under INSERT OR IGNORE,
      // and it stores a zero REAL as the integer 0, losing the sign of -0.0.
      if (std::isnan(value)) continue;
      const MetricValue stored{value == 0.0 ? 0.0 : value, point.time_us()};
      if (entry->metrics.try_emplace({point.step(), attempt, point.rank(), name}, stored).second) {
        ++inserted;
      }
    }
  }
  return inserted;
}

absl::StatusOr<std::vector<v1::MetricPoint>> MemoryJobStore::ListMetricPoints(
    const MetricQuery& query) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobEntry * entry, FindJob(query.job_id, "listing metric points"));
  // A point of attempt A at step S is superseded when a later attempt resumed from a step < S:
  // min_later_resume[A] is the smallest resume_step of the attempts numbered above A.
  const std::vector<v1::Attempt>& attempts = entry->attempts;
  std::vector<int64_t> min_later_resume(attempts.size() + 1, std::numeric_limits<int64_t>::max());
  for (size_t a = attempts.size(); a-- > 0;) {
    min_later_resume[a] = std::min(min_later_resume[a + 1], attempts[a].resume_step());
  }
  std::vector<v1::MetricPoint> points;
  for (const auto& [key, stored] : entry->metrics) {
    const auto& [step, attempt, rank, name] = key;
    if (query.rank.has_value() && rank != *query.rank) continue;
    if (!query.include_superseded && attempt >= 0 &&
        attempt < static_cast<int64_t>(min_later_resume.size()) &&
        min_later_resume[attempt] < step) {
      continue;
    }
    // Keys are ordered by (step, attempt, rank, name), as SQLite's listing is.
    AppendMetricValue(query.job_id, attempt, rank, step, stored.time_us, name, stored.value,
                      &points);
  }
  return points;
}

}  // namespace peco::coordinator
