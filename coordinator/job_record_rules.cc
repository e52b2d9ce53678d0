#include "coordinator/job_record_rules.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "coordinator/job_state_machine.h"
#include "google/protobuf/util/message_differencer.h"

namespace peco::coordinator {
namespace {

absl::Status CheckLegal(const char* operation, const v1::Job& job, v1::JobState to) {
  absl::Status legal = CheckTransition(job.state(), to);
  if (legal.ok()) return legal;
  return absl::Status(legal.code(),
                      absl::StrCat(operation, ": job ", job.id(), ": ", legal.message()));
}

}  // namespace

absl::Status ValidateNewJob(const char* operation, const NewJob& new_job) {
  if (new_job.initial_state == v1::JOB_STATE_QUEUED ||
      new_job.initial_state == v1::JOB_STATE_WAITING) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(operation,
                                                 ": initial state must be queued or waiting, not ",
                                                 JobStateName(new_job.initial_state)));
}

absl::Status CheckAuditEntry(const char* operation, const v1::AuditEntry& entry) {
  if (entry.job_id().empty() || entry.actor().empty() || entry.action().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(operation, ": an audit entry needs a job id, an actor and an action"));
  }
  return absl::OkStatus();
}

absl::Status CheckRequestReplay(const char* operation, const v1::Job& existing,
                                const NewJob& new_job) {
  const std::string owner = new_job.owner.empty() ? std::string(kAdminUser) : new_job.owner;
  if (JobOwner(existing) != owner) {
    // Another user's key: neither their job nor its existence is this caller's business.
    return absl::AlreadyExistsError(absl::StrCat(operation, ": client_request_id ",
                                                 new_job.client_request_id,
                                                 " is taken by another user; choose another"));
  }
  if (google::protobuf::util::MessageDifferencer::Equals(existing.spec(), new_job.spec)) {
    return absl::OkStatus();
  }
  return absl::AlreadyExistsError(absl::StrCat(operation, ": client_request_id ",
                                               new_job.client_request_id, " was used for job ",
                                               existing.id(), " with a different spec"));
}

v1::Job NewJobRecord(const NewJob& new_job, int64_t seq) {
  v1::Job job;
  job.set_id(absl::StrFormat("job-%06d", seq));
  *job.mutable_spec() = new_job.spec;
  job.set_state(new_job.initial_state);
  job.set_submit_time_us(new_job.submit_time_us);
  job.set_client_request_id(new_job.client_request_id);
  job.set_owner(new_job.owner);
  job.set_submit_seq(seq);
  return job;
}

absl::Status CheckAttemptFence(const char* operation, const v1::Job& job, int64_t expected,
                               const char* what) {
  if (job.attempt() == expected) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(operation, ": job ", job.id(),
                                                    " is at attempt ", job.attempt(), ", ", what,
                                                    " names attempt ", expected));
}

absl::Status CheckStateUpdate(const char* operation, const v1::Job& job,
                              const JobStateUpdate& update) {
  RETURN_IF_ERROR(CheckAttemptFence(operation, job, update.expected_attempt, "the update"));
  return CheckLegal(operation, job, update.new_state);
}

bool ApplyStateUpdate(const JobStateUpdate& update, v1::Job* job) {
  const bool was_terminal = IsTerminal(job->state());
  job->set_state(update.new_state);
  if (update.new_state == v1::JOB_STATE_RUNNING && job->start_time_us() == 0) {
    job->set_start_time_us(update.time_us);
  }
  if (IsTerminal(update.new_state)) job->set_end_time_us(update.time_us);
  if (was_terminal) job->set_end_time_us(0);  // resumed
  if (update.new_state == v1::JOB_STATE_FAILED) job->set_failure_reason(update.reason);
  // The attempt record follows the job until the attempt ends (RESTARTING or terminal).
  return job->attempt() > 0 && !was_terminal;
}

void ApplyAttemptUpdate(const JobStateUpdate& update, v1::Attempt* attempt) {
  attempt->set_state(update.new_state);
  if (update.new_state == v1::JOB_STATE_RESTARTING || IsTerminal(update.new_state)) {
    attempt->set_end_time_us(update.time_us);
    attempt->set_failure_reason(update.reason);
    attempt->set_cause(update.cause);
  }
}

void ApplyControlUpdate(const JobControlUpdate& update, v1::Job* job) {
  if (update.cancel_requested_time_us.has_value()) {
    job->set_cancel_requested_time_us(*update.cancel_requested_time_us);
  }
  if (update.cancel_reason.has_value()) job->set_cancel_reason(*update.cancel_reason);
  if (update.next_resume_checkpoint_id.has_value()) {
    job->set_next_resume_checkpoint_id(*update.next_resume_checkpoint_id);
  }
  if (update.config_yaml.has_value()) job->mutable_spec()->set_config_yaml(*update.config_yaml);
}

absl::Status ValidateNewAttempt(const char* operation, const NewAttempt& request) {
  if (request.placements.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": no rank placements"));
  }
  if (request.resume_step < 0) {
    return absl::InvalidArgumentError(absl::StrCat(operation, ": negative resume_step"));
  }
  return absl::OkStatus();
}

absl::Status CheckNewAttempt(const char* operation, const v1::Job& job, const NewAttempt& request) {
  RETURN_IF_ERROR(CheckAttemptFence(operation, job, request.expected_attempt, "the request"));
  return CheckLegal(operation, job, v1::JOB_STATE_ASSIGNED);
}

v1::Attempt StartAttempt(const NewAttempt& request, v1::Job* job) {
  if (job->state() == v1::JOB_STATE_RESTARTING) job->set_restart_count(job->restart_count() + 1);
  job->set_attempt(job->attempt() + 1);
  job->set_state(v1::JOB_STATE_ASSIGNED);
  job->set_cancel_requested_time_us(0);
  job->set_cancel_reason("");
  job->set_next_resume_checkpoint_id("");
  v1::Attempt attempt;
  attempt.set_job_id(job->id());
  attempt.set_number(job->attempt());
  attempt.set_state(v1::JOB_STATE_ASSIGNED);
  attempt.set_resume_checkpoint_id(request.resume_checkpoint_id);
  attempt.set_resume_step(request.resume_step);
  for (const v1::RankPlacement& placement : request.placements) {
    *attempt.add_placements() = placement;
  }
  attempt.set_master_addr(request.master_addr);
  attempt.set_master_port(request.master_port);
  attempt.set_start_time_us(request.time_us);
  for (const v1::InputCheckpoint& input : request.inputs) *attempt.add_inputs() = input;
  return attempt;
}

absl::Status CheckMetricPoints(const char* operation, const std::string& job_id, int64_t attempt,
                               const std::vector<v1::MetricPoint>& points) {
  for (const v1::MetricPoint& point : points) {
    if (point.job_id() != job_id || point.attempt() != attempt) {
      return absl::FailedPreconditionError(
          absl::StrCat(operation, ": a point of job ", point.job_id(), " attempt ", point.attempt(),
                       " was sent as job ", job_id, " attempt ", attempt));
    }
  }
  return absl::OkStatus();
}

void AppendMetricValue(const std::string& job_id, int64_t attempt, int32_t rank, int64_t step,
                       int64_t time_us, const std::string& name, double value,
                       std::vector<v1::MetricPoint>* points) {
  if (points->empty() || points->back().attempt() != attempt || points->back().rank() != rank ||
      points->back().step() != step) {
    v1::MetricPoint& point = points->emplace_back();
    point.set_job_id(job_id);
    point.set_attempt(attempt);
    point.set_rank(rank);
    point.set_step(step);
    point.set_time_us(time_us);
  }
  (*points->back().mutable_values())[name] = value;
}

absl::StatusOr<int64_t> PageStart(const char* operation, const JobQuery& query) {
  if (query.page_size < 1 || query.page_size > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat(operation, ": page_size ", query.page_size, " is outside 1..1000"));
  }
  for (v1::JobState state : query.states) {
    if (state == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(state) || state >= 63) {
      return absl::InvalidArgumentError(
          absl::StrCat(operation, ": states: ", static_cast<int>(state), " is not a job state"));
    }
  }
  for (const auto& [key, value] : query.labels) {
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(operation, ": labels: a key is empty"));
    }
  }
  int64_t after_seq = 0;
  if (!query.page_token.empty() &&
      (!absl::SimpleAtoi(query.page_token, &after_seq) || after_seq < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(operation, ": bad page_token ", query.page_token));
  }
  return after_seq;
}

}  // namespace peco::coordinator
