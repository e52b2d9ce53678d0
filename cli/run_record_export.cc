#include "cli/run_record_export.h"

#include <map>
#include <string>

#include "absl/time/time.h"
#include "cli/format.h"
#include "common/json_writer.h"
#include "common/rfc3339.h"
#include "common/status_macros.h"
#include "common/tensorboard_events.h"

namespace peco::cli {
absl::Status RunRecordExporter::AddJob(const v1::Job& job) {
  RETURN_IF_ERROR(writer_->AddText("config", 0, job.spec().config_yaml(),
                                   absl::FromUnixMicros(job.submit_time_us())));
  return writer_->Flush();
}

absl::Status RunRecordExporter::Consume(const v1::WatchJobEvent& event) {
  if (event.has_metric_point()) {
    const v1::MetricPoint& point = event.metric_point();
    if (point.rank() != 0) return absl::OkStatus();
    const absl::Time time = absl::FromUnixMicros(point.time_us());
    JsonWriter line;
    line.Add("time", Rfc3339(time))
        .Add("event", "metrics")
        .Add("attempt", point.attempt())
        .Add("rank", static_cast<int64_t>(point.rank()))
        .Add("step", point.step());
    // The map's order is unspecified; sorted names keep the files reproducible.
    std::map<std::string, double> values(point.values().begin(), point.values().end());
    for (const auto& [name, value] : values) {
      line.Add(name, value);
      RETURN_IF_ERROR(writer_->AddScalar(tensorboard::MetricTag(name), point.step(), value, time));
    }
    RETURN_IF_ERROR(writer_->AppendJson(line.str()));
    ++points_;
    return writer_->Flush();
  }
  if (event.has_state_change()) {
    const v1::JobStateChange& change = event.state_change();
    JsonWriter line;
    line.Add("time", Rfc3339(absl::FromUnixMicros(change.time_us())))
        .Add("event", "state")
        .Add("attempt", change.attempt())
        .Add("state", JobStateName(change.state()))
        .Add("reason", change.reason());
    RETURN_IF_ERROR(writer_->AppendJson(line.str()));
    return writer_->Flush();
  }
  return absl::OkStatus();
}

}  // namespace peco::cli
