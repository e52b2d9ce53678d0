#include "common/run_record_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/tensorboard_events.h"

namespace peco {
namespace {

double Seconds(absl::Time time) { return absl::ToDoubleSeconds(time - absl::UnixEpoch()); }

std::string HostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

absl::Status Write(std::FILE* file, const std::string& path, absl::string_view bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), file) != bytes.size()) {
    return ErrnoStatus("writing", path, errno);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RunRecordWriter>> RunRecordWriter::Open(const std::string& dir,
                                                                       absl::Time now) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat("creating ", dir, ": ", error.message()));
  }
  const std::string metrics_path = (std::filesystem::path(dir) / kMetricsFile).string();
  std::FILE* metrics = std::fopen(metrics_path.c_str(), "ae");
  if (metrics == nullptr) return ErrnoStatus("opening", metrics_path, errno);
  // O_EXCL: a second writer in the same second takes the next suffix instead of clobbering.
  const std::string base =
      (std::filesystem::path(dir) / tensorboard::EventFileName(now, HostName(), ::getpid()))
          .string();
  std::string event_path;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    event_path = attempt == 0 ? base : absl::StrCat(base, ".", attempt);
    fd = ::open(event_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int open_error = errno;
    std::fclose(metrics);
    return ErrnoStatus("creating", event_path, open_error);
  }
  std::FILE* events = ::fdopen(fd, "w");
  if (events == nullptr) {
    const int open_error = errno;
    ::close(fd);
    std::fclose(metrics);
    return ErrnoStatus("opening", event_path, open_error);
  }
  std::unique_ptr<RunRecordWriter> writer(
      new RunRecordWriter(metrics_path, metrics, event_path, events));
  RETURN_IF_ERROR(writer->WriteEvent(tensorboard::FileVersionEvent(Seconds(now))));
  RETURN_IF_ERROR(writer->Flush());
  return writer;
}

RunRecordWriter::RunRecordWriter(std::string metrics_path, std::FILE* metrics,
                                 std::string event_path, std::FILE* events)
    : metrics_path_(std::move(metrics_path)),
      metrics_(metrics),
      event_path_(std::move(event_path)),
      events_(events) {}

RunRecordWriter::~RunRecordWriter() {
  std::fclose(metrics_);
  std::fclose(events_);
}

absl::Status RunRecordWriter::AppendJson(absl::string_view json_object) {
  return Write(metrics_, metrics_path_, absl::StrCat(json_object, "\n"));
}

absl::Status RunRecordWriter::WriteEvent(absl::string_view event) {
  return Write(events_, event_path_, tensorboard::FrameRecord(event));
}

absl::Status RunRecordWriter::AddScalar(absl::string_view tag, int64_t step, double value,
                                        absl::Time time) {
  return WriteEvent(tensorboard::ScalarEvent(Seconds(time), step, tag, static_cast<float>(value)));
}

absl::Status RunRecordWriter::AddImage(absl::string_view tag, int64_t step, absl::string_view png,
                                       absl::Time time) {
  absl::StatusOr<std::string> event = tensorboard::ImageEvent(Seconds(time), step, tag, png);
  if (!event.ok()) return event.status();
  return WriteEvent(*event);
}

absl::Status RunRecordWriter::AddText(absl::string_view tag, int64_t step, absl::string_view text,
                                      absl::Time time) {
  return WriteEvent(tensorboard::TextEvent(Seconds(time), step, tag, text));
}

absl::Status RunRecordWriter::Flush() {
  if (std::fflush(metrics_) != 0) return ErrnoStatus("writing", metrics_path_, errno);
  if (std::fflush(events_) != 0) return ErrnoStatus("writing", event_path_, errno);
  return absl::OkStatus();
}

}  // namespace peco
