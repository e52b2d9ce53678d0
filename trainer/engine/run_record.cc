#include "trainer/engine/run_record.h"

#include <unistd.h>

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/json_line.h"
#include "common/json_writer.h"
#include "common/rfc3339.h"
#include "common/tensorboard_events.h"
#include "common/trainer_protocol.h"

namespace peco::trainer {

absl::StatusOr<std::unique_ptr<RunRecorder>> RunRecorder::Open(const std::string& dir,
                                                               const std::string& config_text,
                                                               int64_t step) {
  const absl::Time now = absl::Now();
  absl::StatusOr<std::unique_ptr<RunRecordWriter>> writer = RunRecordWriter::Open(dir, now);
  if (!writer.ok()) return absl::InternalError(writer.status().message());
  std::unique_ptr<RunRecorder> recorder(new RunRecorder(*std::move(writer)));
  absl::MutexLock lock(&recorder->mu_);
  recorder->Check(recorder->writer_->AddText("config", step, config_text, now));
  if (recorder->writer_ != nullptr) recorder->Check(recorder->writer_->Flush());
  return recorder;
}

void RunRecorder::Check(const absl::Status& status) {
  if (status.ok() || writer_ == nullptr) return;
  const std::string line = absl::StrCat("run record: ", status.message(),
                                        "; training goes on without metrics.jsonl and events\n");
  [[maybe_unused]] ssize_t n = ::write(2, line.data(), line.size());
  writer_.reset();
}

void RunRecorder::OnEvent(absl::string_view line) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  if (writer_ == nullptr || line.size() < 2 || line.front() != '{') return;
  // {"time":"<RFC 3339>", <the event's fields>}
  std::string record = absl::StrCat("{\"time\":", JsonWriter::Quote(Rfc3339(now)),
                                    line.size() > 2 ? "," : "", line.substr(1));
  Check(writer_->AppendJson(record));
  std::optional<JsonFields> fields = ParseJsonObjectLine(line);
  if (writer_ != nullptr && fields.has_value()) {
    const std::string type = fields->String("event").value_or("");
    const std::optional<int64_t> step = fields->Int("step");
    if ((type == trainer_protocol::kEventStep || type == trainer_protocol::kEventEval) && step) {
      for (const auto& [name, text] : fields->fields()) {
        if (name == "event" || name == "step") continue;
        std::optional<double> value = fields->Number(name);
        if (!value || writer_ == nullptr) continue;  // strings and booleans are not metrics
        Check(writer_->AddScalar(tensorboard::MetricTag(name), *step, *value, now));
      }
    }
  }
  if (writer_ != nullptr) Check(writer_->Flush());
}

void RunRecorder::AddCheckpointImages(int64_t step, const CheckpointFiles& files) {
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  for (const auto& [name, data] : files) {
    if (writer_ == nullptr || !absl::EndsWith(name, ".png")) continue;
    Check(writer_->AddImage(std::filesystem::path(name).stem().string(), step, data, now));
  }
  if (writer_ != nullptr) Check(writer_->Flush());
}

}  // namespace peco::trainer
