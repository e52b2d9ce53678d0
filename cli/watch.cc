#include "cli/watch.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/format.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace peco::cli {
namespace {

constexpr char kClearLine[] = "\r\033[K";

// The fields of a trainer event's JSON line; empty when it does not parse.
google::protobuf::Struct ParseMessage(const std::string& json) {
  google::protobuf::Struct fields;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (!google::protobuf::util::JsonStringToMessage(json, &fields, options).ok()) fields.Clear();
  return fields;
}

std::optional<double> NumberField(const google::protobuf::Struct& fields, const std::string& key) {
  auto it = fields.fields().find(key);
  if (it == fields.fields().end() || !it->second.has_number_value()) return std::nullopt;
  return it->second.number_value();
}

std::string TextField(const google::protobuf::Struct& fields, const std::string& key) {
  auto it = fields.fields().find(key);
  if (it == fields.fields().end()) return "";
  if (it->second.has_string_value()) return it->second.string_value();
  if (it->second.has_number_value()) return absl::StrCat(it->second.number_value());
  if (it->second.has_bool_value()) return it->second.bool_value() ? "true" : "false";
  return "";
}

std::optional<double> Value(const v1::MetricPoint& point, const std::string& name) {
  auto it = point.values().find(name);
  if (it == point.values().end() || !std::isfinite(it->second)) return std::nullopt;
  return it->second;
}

}  // namespace

std::optional<double> StepsPerSecond(const WatchProgress& progress) {
  if (progress.recent.size() < 2) return std::nullopt;
  const auto& [first_us, first_step] = progress.recent.front();
  const auto& [last_us, last_step] = progress.recent.back();
  if (last_us <= first_us || last_step <= first_step) return std::nullopt;
  return static_cast<double>(last_step - first_step) /
         (static_cast<double>(last_us - first_us) / 1e6);
}

std::optional<absl::Duration> EstimateEta(const WatchProgress& progress) {
  if (progress.state != v1::JOB_STATE_RUNNING || progress.max_steps <= 0 || progress.step < 0) {
    return std::nullopt;
  }
  std::optional<double> rate = StepsPerSecond(progress);
  if (!rate.has_value()) return std::nullopt;
  const int64_t left = std::max<int64_t>(0, progress.max_steps - progress.step);
  return absl::Seconds(static_cast<double>(left) / *rate);
}

std::string RenderProgressLine(const WatchProgress& progress) {
  std::vector<std::string> parts;
  parts.push_back(JobStateName(progress.state));
  if (progress.attempt > 0) parts.push_back(absl::StrCat("attempt ", progress.attempt));
  if (progress.step >= 0) {
    if (progress.max_steps > 0) {
      const double percent =
          100.0 * static_cast<double>(progress.step) / static_cast<double>(progress.max_steps);
      parts.push_back(
          absl::StrFormat("step %d/%d (%.0f%%)", progress.step, progress.max_steps, percent));
    } else {
      parts.push_back(absl::StrCat("step ", progress.step));
    }
  }
  if (progress.loss.has_value()) parts.push_back(absl::StrFormat("loss %.4f", *progress.loss));
  if (progress.lr.has_value()) parts.push_back(absl::StrFormat("lr %.2e", *progress.lr));
  if (progress.images_per_second.has_value()) {
    parts.push_back(absl::StrFormat("%.1f img/s", *progress.images_per_second));
  }
  if (std::optional<absl::Duration> eta = EstimateEta(progress); eta.has_value()) {
    parts.push_back(absl::StrCat("ETA ", HumanDuration(*eta)));
  }
  return absl::StrJoin(parts, "  ");
}

WatchRenderer::WatchRenderer(std::string job_id, Options options)
    : job_id_(std::move(job_id)), options_(std::move(options)) {}

bool WatchRenderer::done() const { return IsTerminal(progress_.state); }

std::string WatchRenderer::Consume(const v1::WatchJobEvent& event) {
  switch (event.event_case()) {
    case v1::WatchJobEvent::kStateChange:
      return OnStateChange(event.state_change());
    case v1::WatchJobEvent::kMetricPoint:
      return OnMetricPoint(event.metric_point());
    case v1::WatchJobEvent::kTrainerEvent:
      return OnTrainerEvent(event.trainer_event());
    default:
      return "";
  }
}

std::string WatchRenderer::Finish() {
  if (!live_line_shown_) return "";
  live_line_shown_ = false;
  return "\n";
}

void WatchRenderer::SeeAttempt(int64_t attempt) {
  if (attempt <= progress_.attempt) return;
  progress_.attempt = attempt;
  progress_.step = -1;
  progress_.recent.clear();
  progress_.loss.reset();
  progress_.lr.reset();
  progress_.images_per_second.reset();
}

std::string WatchRenderer::OnStateChange(const v1::JobStateChange& change) {
  if (!seen_
           .insert(absl::StrCat("s/", change.attempt(), "/", change.state(), "/", change.time_us()))
           .second) {
    return "";
  }
  // After a terminal state only a resume moves on: RESTARTING of the same attempt or any change
  // of a newer attempt. Anything else is a replayed, older change.
  if (done() && change.attempt() <= progress_.attempt &&
      change.state() != v1::JOB_STATE_RESTARTING) {
    return "";
  }
  SeeAttempt(change.attempt());
  progress_.state = change.state();
  progress_.reason = change.reason();
  std::string text = absl::StrCat(job_id_, " ", JobStateName(change.state()));
  if (change.attempt() > 0) absl::StrAppend(&text, " (attempt ", change.attempt(), ")");
  if (!change.reason().empty()) absl::StrAppend(&text, ": ", change.reason());
  return Line(change.time_us(), text);
}

std::string WatchRenderer::OnMetricPoint(const v1::MetricPoint& point) {
  if (!seen_.insert(absl::StrCat("p/", point.attempt(), "/", point.rank(), "/", point.step()))
           .second) {
    return "";
  }
  if (point.rank() != 0 || point.attempt() < progress_.attempt) return "";
  SeeAttempt(point.attempt());
  // Points may arrive out of order across a history/live seam; progress only moves forward.
  if (point.step() <= progress_.step) return "";
  progress_.step = point.step();
  progress_.loss = Value(point, "loss");
  progress_.lr = Value(point, "lr");
  progress_.images_per_second = Value(point, "images_per_second");
  progress_.recent.emplace_back(point.time_us(), point.step());
  while (progress_.recent.size() > kRateWindow) progress_.recent.pop_front();
  if (options_.tty) return LiveLine();
  return Line(point.time_us(), RenderProgressLine(progress_));
}

std::string WatchRenderer::OnTrainerEvent(const v1::TrainerEvent& event) {
  if (!seen_
           .insert(absl::StrCat("e/", event.attempt(), "/", event.rank(), "/", event.type(), "/",
                                event.step(), "/", event.time_us()))
           .second) {
    return "";
  }
  if (event.attempt() < progress_.attempt) return "";
  SeeAttempt(event.attempt());
  const google::protobuf::Struct fields = ParseMessage(event.message());
  if (event.type() == "error") {
    const std::string message = TextField(fields, "message");
    return Line(event.time_us(), absl::StrCat("rank ", event.rank(), " error: ",
                                              message.empty() ? event.message() : message));
  }
  if (event.rank() != 0) return "";
  if (event.type() == "start") {
    if (std::optional<double> max_steps = NumberField(fields, "max_steps")) {
      progress_.max_steps = static_cast<int64_t>(*max_steps);
    }
    const std::optional<double> step = NumberField(fields, "step");
    if (step.has_value() && *step > 0 && static_cast<int64_t>(*step) > progress_.step) {
      progress_.step = static_cast<int64_t>(*step);  // a resumed attempt starts here
    }
    std::string text = absl::StrCat("trainer started at step ", step.value_or(0));
    if (progress_.max_steps > 0) absl::StrAppend(&text, " of ", progress_.max_steps);
    for (const char* key : {"device", "precision", "threads"}) {
      const std::string value = TextField(fields, key);
      if (!value.empty()) absl::StrAppend(&text, ", ", key, " ", value);
    }
    return Line(event.time_us(), text);
  }
  if (event.type() == "checkpoint") {
    std::string text = absl::StrCat("checkpoint at step ", event.step());
    if (std::optional<double> bytes = NumberField(fields, "bytes")) {
      absl::StrAppend(&text, " (", FormatBytes(static_cast<int64_t>(*bytes)), ")");
    }
    if (TextField(fields, "final") == "true") absl::StrAppend(&text, ", final");
    return Line(event.time_us(), text);
  }
  if (event.type() == "completed" || event.type() == "stopped") {
    return Line(event.time_us(), absl::StrCat("trainer ", event.type(), " at step ", event.step()));
  }
  return "";
}

std::string WatchRenderer::Line(int64_t time_us, const std::string& text) {
  std::string out;
  if (options_.tty && live_line_shown_) out = kClearLine;
  const std::string clock =
      time_us > 0 ? absl::FormatTime("%H:%M:%S ", absl::FromUnixMicros(time_us), options_.time_zone)
                  : "";
  absl::StrAppend(&out, clock, text, "\n");
  live_line_shown_ = false;
  if (options_.tty && !done()) absl::StrAppend(&out, LiveLine());
  return out;
}

std::string WatchRenderer::LiveLine() {
  live_line_shown_ = true;
  std::string line = RenderProgressLine(progress_);
  if (options_.columns > 1 && line.size() >= static_cast<size_t>(options_.columns)) {
    line.resize(static_cast<size_t>(options_.columns) - 1);
  }
  return absl::StrCat(kClearLine, line);
}

}  // namespace peco::cli
