#include "common/line_io.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace peco {
namespace {

// Waits until `fd` is ready for `events` or the deadline passes. Returns false on timeout.
absl::StatusOr<bool> WaitReady(int fd, short events, absl::Time deadline) {
  while (true) {
    int timeout_ms = -1;
    if (deadline != absl::InfiniteFuture()) {
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      // Rounded up so a wait never ends just before the deadline and spins.
      timeout_ms = static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), int64_t{1} << 30));
    }
    pollfd pfd{fd, events, 0};
    const int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return absl::InternalError(absl::StrCat("poll: ", ::strerror(errno)));
    if (ready > 0) return true;
  }
}

}  // namespace

absl::Status WriteAllBefore(int fd, absl::string_view data, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) {
    // A blocking write could outlast the deadline; poll() below waits for room instead.
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK) == 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  bool socket = true;
  while (!data.empty()) {
    ssize_t n = socket ? ::send(fd, data.data(), data.size(), MSG_NOSIGNAL)
                       : ::write(fd, data.data(), data.size());
    if (n < 0 && socket && errno == ENOTSOCK) {
      socket = false;
      continue;
    }
    if (n >= 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) {
      return absl::UnavailableError("write: the reader has gone");
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return absl::InternalError(absl::StrCat("write: ", ::strerror(errno)));
    }
    absl::StatusOr<bool> ready = WaitReady(fd, POLLOUT, deadline);
    if (!ready.ok()) return ready.status();
    if (!*ready) return absl::DeadlineExceededError("write: the reader did not keep up");
  }
  return absl::OkStatus();
}

LineReader::LineReader(int fd, size_t max_line_bytes) : fd_(fd), max_line_bytes_(max_line_bytes) {}

absl::StatusOr<std::string> LineReader::ReadLine(absl::Time deadline) {
  while (true) {
    const size_t newline = buffer_.find('\n', scanned_);
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      scanned_ = 0;
      return line;
    }
    scanned_ = buffer_.size();
    if (buffer_.size() > max_line_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("read: a line longer than ", max_line_bytes_, " bytes"));
    }
    absl::StatusOr<bool> ready = WaitReady(fd_, POLLIN, deadline);
    if (!ready.ok()) return ready.status();
    if (!*ready) return absl::DeadlineExceededError("read: no whole line before the deadline");
    char chunk[64 * 1024];
    const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("read: ", ::strerror(errno)));
    if (n == 0) return absl::OutOfRangeError("read: end of file");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace peco
