#include "worker/event_relay.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/trainer_protocol.h"

namespace peco::worker {

RelayedEvent RelayTrainerEvent(const TrainerEvent& event, int64_t last_step,
                               absl::string_view attempt_dir) {
  RelayedEvent relayed;
  relayed.last_step = last_step;
  if (event.type == trainer_protocol::kEventHeartbeat) return relayed;
  const TrainerTag& tag = event.tag;
  int64_t step = last_step;
  if (std::optional<int64_t> event_step = event.Int("step")) {
    if (event.type == trainer_protocol::kEventStep) {
      relayed.last_step = std::max(last_step, *event_step);
    }
    step = *event_step;
  }
  const int64_t time_us = absl::ToUnixMicros(event.received);
  if (event.type == trainer_protocol::kEventStep || event.type == trainer_protocol::kEventEval) {
    v1::ReportProgressRequest report;
    v1::MetricPoint* point = report.mutable_metric_point();
    point->set_job_id(tag.job_id);
    point->set_attempt(tag.attempt);
    point->set_rank(tag.rank);
    point->set_step(step);
    point->set_time_us(time_us);
    for (const auto& [name, text] : event.fields.fields()) {
      if (name == "event" || name == "step") continue;
      std::optional<double> value = event.Number(name);
      if (!value) continue;  // strings and booleans are not metrics
      (*point->mutable_values())[name] = *value;
      relayed.rank_values[name] = *value;
    }
    if (event.type == trainer_protocol::kEventStep) {
      relayed.rank_values["step"] = static_cast<double>(step);
    }
    relayed.reports.push_back(std::move(report));
  }
  if (event.type != trainer_protocol::kEventStep) {
    v1::ReportProgressRequest report;
    v1::TrainerEvent* trainer_event = report.mutable_trainer_event();
    trainer_event->set_job_id(tag.job_id);
    trainer_event->set_attempt(tag.attempt);
    trainer_event->set_rank(tag.rank);
    trainer_event->set_type(event.type);
    trainer_event->set_message(event.json);
    trainer_event->set_step(step);
    trainer_event->set_time_us(time_us);
    relayed.reports.push_back(std::move(report));
  }
  if (event.type != trainer_protocol::kEventCheckpoint) return relayed;
  if (std::optional<double> bytes = event.Number("bytes")) {
    relayed.rank_values["checkpoint_bytes"] = *bytes;
  }
  if (std::optional<double> seconds = event.Number("seconds")) {
    relayed.rank_values["checkpoint_seconds"] = *seconds;
  }
  if (tag.rank != 0) return relayed;
  std::optional<std::string> path = event.String("path");
  if (!path || path->empty()) {
    relayed.problem = absl::StrCat("checkpoint event without a path: ", event.json);
    return relayed;
  }
  std::filesystem::path checkpoint(*path);
  if (checkpoint.is_relative())
    checkpoint = std::filesystem::path(std::string(attempt_dir)) / checkpoint;
  v1::CheckpointHeader header;
  header.set_job_id(tag.job_id);
  header.set_attempt(tag.attempt);
  header.set_rank(tag.rank);
  header.set_step(step);
  header.set_final(event.Bool("final").value_or(false));
  relayed.checkpoint = std::move(header);
  relayed.checkpoint_dir = checkpoint.string();
  return relayed;
}

}  // namespace peco::worker
