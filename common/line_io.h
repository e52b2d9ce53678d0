// Line-oriented I/O on descriptors with deadlines: the transport of request/response protocols
// spoken over a child's stdin and stdout (`peco-train validate --serve`,
// common/validation_protocol.h).
//
// Both helpers borrow the descriptor (they never close it) and never block past their deadline.
// A peer that has gone away is an error, never a signal: writes to a stream socket use
// MSG_NOSIGNAL (writes to a pipe rely on SIGPIPE being ignored or fatal, as the caller chooses).
#ifndef PECO_COMMON_LINE_IO_H_
#define PECO_COMMON_LINE_IO_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peco {

// Writes all of `data` to `fd` (a pipe or a stream socket) before `deadline`
// (absl::InfiniteFuture() waits as long as it takes). Errors: DeadlineExceeded when the reader
// did not take everything in time (part may have been written); Unavailable when the reader
// has gone (EPIPE, ECONNRESET); Internal for other failures. With a finite deadline it sets
// O_NONBLOCK on `fd` (and leaves it set).
absl::Status WriteAllBefore(int fd, absl::string_view data, absl::Time deadline);

// Reads newline-terminated lines from a descriptor it borrows, keeping what follows a line for
// the next call.
//
// Usage:
//   LineReader reader(process->stdout_fd());
//   ASSIGN_OR_RETURN(std::string line, reader.ReadLine(absl::Now() + absl::Seconds(5)));
//
// Thread-compatible: one thread at a time.
class LineReader {
 public:
  // `max_line_bytes` bounds one line (without its newline).
  explicit LineReader(int fd, size_t max_line_bytes = size_t{16} << 20);
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Returns the next line without its '\n'. Errors: DeadlineExceeded when no whole line came
  // before `deadline` (what came is kept for the next call); OutOfRange at end of file (an
  // unterminated last line is dropped); ResourceExhausted for a line longer than
  // max_line_bytes; Internal for read errors.
  absl::StatusOr<std::string> ReadLine(absl::Time deadline);

 private:
  const int fd_;
  const size_t max_line_bytes_;
  std::string buffer_;
  size_t scanned_ = 0;  // bytes of buffer_ known to hold no '\n'
};

}  // namespace peco

#endif  // PECO_COMMON_LINE_IO_H_
