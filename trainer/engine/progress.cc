#include "trainer/engine/progress.h"

#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/trainer_protocol.h"

namespace peco::trainer {

JsonWriter ErrorEvent(const absl::Status& status) {
  JsonWriter event;
  event.Add("event", trainer_protocol::kEventError)
      .Add("code", absl::StatusCodeToString(status.code()))
      .Add("message", std::string(status.message()));
  return event;
}

void ProgressSink::WriteAll(int fd, const std::string& text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // The reader went away; training goes on and the checkpoint still lands.
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void ProgressSink::Emit(const JsonWriter& event) {
  const std::string object = event.str();
  absl::MutexLock lock(&mu_);
  WriteAll(machine_fd_, object + "\n");
  if (observer_ != nullptr) observer_->OnEvent(object);
}

void ProgressSink::Heartbeat(absl::string_view phase, int64_t done) {
  JsonWriter event;
  event.Add("event", "heartbeat").Add("phase", std::string(phase)).Add("done", done);
  const std::string line = event.str() + "\n";
  absl::MutexLock lock(&mu_);
  WriteAll(machine_fd_, line);
}

void ProgressSink::SetObserver(ProgressObserver* observer) {
  absl::MutexLock lock(&mu_);
  observer_ = observer;
}

void ProgressSink::Log(absl::string_view line) {
  std::string text(line);
  text += "\n";
  absl::MutexLock lock(&mu_);
  WriteAll(human_fd_, text);
}

}  // namespace peco::trainer
