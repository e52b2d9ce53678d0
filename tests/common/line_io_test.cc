#include "common/line_io.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/time/clock.h"

namespace peco {
namespace {

// A connected pair of stream sockets, closed at the end of the test.
struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0); }
  ~SocketPair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  void Close(int i) {
    ::close(fds[i]);
    fds[i] = -1;
  }
  int fds[2];
};

const absl::Time kNoHang = absl::InfiniteFuture();

TEST(LineReaderTest, SplitsLinesAcrossWritesAndKeepsTheRest) {
  SocketPair pair;
  LineReader reader(pair.fds[1]);
  ASSERT_TRUE(WriteAllBefore(pair.fds[0], "first\nsec", kNoHang).ok());
  EXPECT_EQ(*reader.ReadLine(kNoHang), "first");
  ASSERT_TRUE(WriteAllBefore(pair.fds[0], "ond\n\nthird\n", kNoHang).ok());
  EXPECT_EQ(*reader.ReadLine(kNoHang), "second");
  EXPECT_EQ(*reader.ReadLine(kNoHang), "");
  EXPECT_EQ(*reader.ReadLine(kNoHang), "third");
}

TEST(LineReaderTest, DeadlineKeepsThePartialLine) {
  SocketPair pair;
  LineReader reader(pair.fds[1]);
  ASSERT_TRUE(WriteAllBefore(pair.fds[0], "half", kNoHang).ok());
  // A deadline in the past: whatever is buffered is looked at, nothing is waited for.
  EXPECT_EQ(reader.ReadLine(absl::InfinitePast()).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(WriteAllBefore(pair.fds[0], " and half\n", kNoHang).ok());
  EXPECT_EQ(*reader.ReadLine(kNoHang), "half and half");
}

TEST(LineReaderTest, EndOfFileAndOverlongLines) {
  SocketPair pair;
  LineReader reader(pair.fds[1], /*max_line_bytes=*/8);
  ASSERT_TRUE(WriteAllBefore(pair.fds[0], "short\n0123456789abcdef", kNoHang).ok());
  EXPECT_EQ(*reader.ReadLine(kNoHang), "short");
  EXPECT_EQ(reader.ReadLine(kNoHang).status().code(), absl::StatusCode::kResourceExhausted);

  SocketPair closing;
  LineReader eof_reader(closing.fds[1]);
  ASSERT_TRUE(WriteAllBefore(closing.fds[0], "unterminated", kNoHang).ok());
  closing.Close(0);
  EXPECT_EQ(eof_reader.ReadLine(kNoHang).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(WriteAllBeforeTest, ReaderThatDoesNotReadMissesTheDeadline) {
  SocketPair pair;
  const std::string big(8 << 20, 'x');  // far more than a socket buffer holds
  EXPECT_EQ(WriteAllBefore(pair.fds[0], big, absl::Now()).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(WriteAllBeforeTest, WorksOnPipesAndReportsAGoneReader) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  LineReader reader(fds[0]);
  ASSERT_TRUE(WriteAllBefore(fds[1], "through a pipe\n", kNoHang).ok());
  EXPECT_EQ(*reader.ReadLine(kNoHang), "through a pipe");
  ::close(fds[0]);
  // SIGPIPE is ignored here so the pipe's EPIPE shows as the status.
  ::signal(SIGPIPE, SIG_IGN);
  EXPECT_EQ(WriteAllBefore(fds[1], "nobody\n", kNoHang).code(), absl::StatusCode::kUnavailable);
  ::close(fds[1]);
}

}  // namespace
}  // namespace peco
