#include "worker/report_buffer.h"

#include <algorithm>

namespace peco::worker {
namespace {

// The (job, attempt) a report belongs to.
std::pair<const std::string*, int64_t> AttemptOf(const v1::ReportProgressRequest& report) {
  if (report.has_metric_point()) {
    return {&report.metric_point().job_id(), report.metric_point().attempt()};
  }
  if (report.has_log_chunk()) return {&report.log_chunk().job_id(), report.log_chunk().attempt()};
  return {&report.trainer_event().job_id(), report.trainer_event().attempt()};
}

}  // namespace

ReportBuffer::ReportBuffer(size_t capacity, size_t max_bytes)
    : capacity_(std::max<size_t>(capacity, 1)), max_bytes_(std::max<size_t>(max_bytes, 1)) {}

void ReportBuffer::PopFrontLocked() {
  bytes_ -= reports_.front().second.ByteSizeLong();
  reports_.pop_front();
}

void ReportBuffer::Add(v1::ReportProgressRequest report) {
  absl::MutexLock lock(&mu_);
  const size_t size = report.ByteSizeLong();
  while (!reports_.empty() && (reports_.size() >= capacity_ || bytes_ + size > max_bytes_)) {
    PopFrontLocked();
    ++dropped_;
  }
  bytes_ += size;
  reports_.emplace_back(next_seq_++, std::move(report));
}

ReportBuffer::Batch ReportBuffer::Peek(size_t max_reports) const {
  absl::MutexLock lock(&mu_);
  Batch batch;
  for (const auto& [seq, report] : reports_) {
    if (batch.reports.size() >= max_reports) break;
    batch.reports.push_back(report);
    batch.last_seq = seq;
  }
  return batch;
}

void ReportBuffer::Ack(const Batch& batch) {
  absl::MutexLock lock(&mu_);
  while (!reports_.empty() && reports_.front().first <= batch.last_seq) PopFrontLocked();
}

void ReportBuffer::DropAttempt(const std::string& job_id, int64_t attempt) {
  absl::MutexLock lock(&mu_);
  auto first = std::remove_if(reports_.begin(), reports_.end(), [&](const auto& entry) {
    auto [job, number] = AttemptOf(entry.second);
    return *job == job_id && number == attempt;
  });
  bytes_ = 0;
  for (auto it = reports_.begin(); it != first; ++it) bytes_ += it->second.ByteSizeLong();
  reports_.erase(first, reports_.end());
}

size_t ReportBuffer::Pending(const std::string& job_id, int64_t attempt) const {
  absl::MutexLock lock(&mu_);
  return static_cast<size_t>(std::count_if(reports_.begin(), reports_.end(), [&](const auto& e) {
    auto [job, number] = AttemptOf(e.second);
    return *job == job_id && number == attempt;
  }));
}

size_t ReportBuffer::size() const {
  absl::MutexLock lock(&mu_);
  return reports_.size();
}

int64_t ReportBuffer::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

}  // namespace peco::worker
