#include "common/process_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/line_io.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util/files.h"

namespace peco {
namespace {

using ::testing::HasSubstr;

// Reads `fd` until end of file; fails the test if nothing happens for 30 s (a hang, not timing).
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  while (true) {
    pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 30000) <= 0) {
      ADD_FAILURE() << "no end of file on the child's stdout";
      return out;
    }
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

LaunchSpec Shell(const std::string& script) { return LaunchSpec{{"/bin/sh", "-c", script}}; }

TEST(ProcessLauncherTest, ReadsStdoutAndExitCode) {
  PosixProcessLauncher launcher;
  auto process = launcher.Launch(Shell("echo hello; exit 7"));
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "hello\n");
  auto exit = (*process)->Wait();
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(exit->exited());
  EXPECT_EQ(exit->exit_code, 7);
  EXPECT_EQ(exit->ToString(), "exit code 7");
  // Poll after Wait returns the same status.
  auto again = (*process)->Poll();
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->has_value());
  EXPECT_EQ((*again)->exit_code, 7);
}

TEST(ProcessLauncherTest, EnvironmentOverridesAndReplaces) {
  PosixProcessLauncher launcher;
  ::setenv("PECO_LAUNCHER_TEST_INHERITED", "parent", 1);
  LaunchSpec spec = Shell("echo \"$PECO_LAUNCHER_TEST_INHERITED/$PECO_X\"");
  spec.env = {"PECO_X=1", "PECO_X=2"};
  auto process = launcher.Launch(spec);
  ASSERT_TRUE(process.ok()) << process.status();
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "parent/2\n");

  spec.inherit_environment = false;
  auto bare = launcher.Launch(spec);
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(ReadAll((*bare)->stdout_fd()), "/2\n");
}

TEST(ProcessLauncherTest, BuildChildEnvironmentKeepsOneEntryPerName) {
  LaunchSpec spec;
  spec.inherit_environment = false;
  spec.env = {"A=1", "B=2", "A=3"};
  EXPECT_THAT(BuildChildEnvironment(spec), ::testing::ElementsAre("A=3", "B=2"));
}

TEST(ProcessLauncherTest, WorkingDirectoryAndStderrLogAppended) {
  ::peco::testing::ScopedTempDir temp("peco_launcher");
  PosixProcessLauncher launcher;
  const std::string dir = temp.path();
  LaunchSpec spec = Shell("pwd; echo oops >&2");
  spec.working_dir = dir;
  spec.stderr_path = dir + "/err.log";
  for (int i = 0; i < 2; ++i) {
    auto process = launcher.Launch(spec);
    ASSERT_TRUE(process.ok()) << process.status();
    EXPECT_EQ(ReadAll((*process)->stdout_fd()), dir + "\n");
    ASSERT_TRUE((*process)->Wait().ok());
  }
  EXPECT_EQ(::peco::testing::ReadFileForTest(dir + "/err.log"), "oops\noops\n");
}

TEST(ProcessLauncherTest, StdinIsDevNull) {
  PosixProcessLauncher launcher;
  auto process = launcher.Launch(Shell("if read x; then echo got; else echo eof; fi"));
  ASSERT_TRUE(process.ok());
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "eof\n");
}

TEST(ProcessLauncherTest, ParentDescriptorsAreNotInherited) {
  PosixProcessLauncher launcher;
  int leaked = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaked, 3);
  const std::string fd = std::to_string(leaked);
  auto process = launcher.Launch(
      Shell("if [ -e /proc/self/fd/" + fd + " ]; then echo open; else echo closed; fi"));
  ::close(leaked);
  ASSERT_TRUE(process.ok());
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "closed\n");
}

TEST(ProcessLauncherTest, SignalReachesTheWholeProcessGroup) {
  PosixProcessLauncher launcher;
  // The shell's child `sleep` holds the stdout pipe: end of file proves it died too.
  auto process = launcher.Launch(Shell("echo ready; sleep 1000 & wait"));
  ASSERT_TRUE(process.ok());
  char c;
  ASSERT_EQ(::read((*process)->stdout_fd(), &c, 1), 1);  // the shell is running
  EXPECT_EQ(::getpgid((*process)->pid()), (*process)->pid());
  auto running = (*process)->Poll();
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running->has_value());
  ASSERT_TRUE((*process)->Signal(SIGTERM).ok());
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "eady\n");
  auto exit = (*process)->Wait();
  ASSERT_TRUE(exit.ok());
  EXPECT_FALSE(exit->exited());
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_THAT(exit->ToString(), HasSubstr("signal 15"));
  // Signalling a group that is gone is not an error.
  EXPECT_TRUE((*process)->Signal(SIGKILL).ok());
}

TEST(ProcessLauncherTest, DestroyingARunningProcessKillsAndReapsIt) {
  PosixProcessLauncher launcher;
  auto process = launcher.Launch(Shell("exec sleep 1000"));
  ASSERT_TRUE(process.ok());
  const pid_t pid = (*process)->pid();
  process->reset();
  EXPECT_EQ(::kill(pid, 0), -1);  // reaped: not even a zombie is left
  EXPECT_EQ(errno, ESRCH);
}

TEST(ProcessLauncherTest, WritableStdinIsAConversation) {
  PosixProcessLauncher launcher;
  LaunchSpec spec = Shell("while read line; do echo \"got $line\"; done; echo bye");
  spec.writable_stdin = true;
  auto process = launcher.Launch(spec);
  ASSERT_TRUE(process.ok()) << process.status();
  ASSERT_GE((*process)->stdin_fd(), 0);
  LineReader reader((*process)->stdout_fd());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);  // a hang, not timing
  for (const char* word : {"one", "two"}) {
    ASSERT_TRUE(WriteAllBefore((*process)->stdin_fd(), absl::StrCat(word, "\n"), deadline).ok());
    absl::StatusOr<std::string> line = reader.ReadLine(deadline);
    ASSERT_TRUE(line.ok()) << line.status();
    EXPECT_EQ(*line, absl::StrCat("got ", word));
  }
  // Half-closing our end is end of file for the child.
  ASSERT_EQ(::shutdown((*process)->stdin_fd(), SHUT_WR), 0);
  EXPECT_EQ(*reader.ReadLine(deadline), "bye");
  EXPECT_EQ(reader.ReadLine(deadline).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE((*process)->Wait()->success());
  // Writing to a child that has gone is an error, not SIGPIPE.
  EXPECT_EQ(WriteAllBefore((*process)->stdin_fd(), "late\n", deadline).code(),
            absl::StatusCode::kUnavailable);
}

TEST(ProcessLauncherTest, StdinIsDevNullByDefault) {
  PosixProcessLauncher launcher;
  auto process = launcher.Launch(Shell("cat; echo done"));
  ASSERT_TRUE(process.ok());
  EXPECT_EQ((*process)->stdin_fd(), -1);
  EXPECT_EQ(ReadAll((*process)->stdout_fd()), "done\n");
}

TEST(ProcessLauncherTest, Errors) {
  PosixProcessLauncher launcher;
  EXPECT_EQ(launcher.Launch(LaunchSpec{}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(launcher.Launch(LaunchSpec{{"/nonexistent/peco-train"}}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(launcher.Launch(LaunchSpec{{"peco-no-such-program-on-path"}}).status().code(),
            absl::StatusCode::kNotFound);
  LaunchSpec bad_dir = Shell("true");
  bad_dir.working_dir = "/nonexistent/dir";
  EXPECT_EQ(launcher.Launch(bad_dir).status().code(), absl::StatusCode::kFailedPrecondition);
  LaunchSpec bad_log = Shell("true");
  bad_log.stderr_path = "/nonexistent/dir/log";
  EXPECT_EQ(launcher.Launch(bad_log).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace peco
