// Starting and controlling child processes (one per trainer rank).
//
// ProcessLauncher is the seam between the worker and the operating system: TrainerSupervisor
// launches `peco-train` through it, and tests can substitute a fake. PosixProcessLauncher is the
// real implementation (posix_spawn).
//
// Each child runs in a new process group whose id is its pid, so Signal() reaches everything the
// child started (a shell's children, data-loader helpers). The child's stdout is a pipe the
// parent reads (the NDJSON progress channel), its stdin is /dev/null or, on request, a stream
// socket the parent writes (a request/response channel: common/line_io.h), its stderr is
// appended to a log file (or inherited), and every other descriptor of the parent is closed in
// the child.
#ifndef PECO_COMMON_PROCESS_LAUNCHER_H_
#define PECO_COMMON_PROCESS_LAUNCHER_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace peco {

// How a process ended: exactly one of `exit_code` (>= 0) and `signal` (> 0) is set.
struct ExitStatus {
  int exit_code = -1;
  int signal = 0;

  static ExitStatus Exited(int code) { return ExitStatus{code, 0}; }
  static ExitStatus Signaled(int sig) { return ExitStatus{-1, sig}; }

  bool exited() const { return signal == 0; }
  bool success() const { return signal == 0 && exit_code == 0; }
  // Returns "exit code 1" or "signal 9 (Killed)".
  std::string ToString() const;
};

// What to run.
struct LaunchSpec {
  // Program and arguments; argv[0] is looked up on PATH when it contains no '/'. Not empty.
  std::vector<std::string> argv;
  // "NAME=value" entries. With `inherit_environment` they override or extend the parent's
  // environment; without it they are the whole environment.
  std::vector<std::string> env;
  bool inherit_environment = true;
  // Directory the child starts in; empty keeps the parent's.
  std::string working_dir;
  // File the child's stderr is appended to (created 0644 if missing); empty inherits the
  // parent's stderr.
  std::string stderr_path;
  // false: the child's stdin is /dev/null. true: it is one end of a Unix stream socket pair
  // whose other end is Process::stdin_fd(); write to it with WriteAllBefore()
  // (common/line_io.h), which uses MSG_NOSIGNAL, so a child that died is an error, not SIGPIPE.
  bool writable_stdin = false;
};

// A started child process. Owned by whoever launched it.
//
// Thread-safety: Signal() may be called from any thread at any time, including concurrently with
// Poll()/Wait(); Poll() and Wait() must not be called concurrently with each other. stdout_fd()
// and stdin_fd() are constant.
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  // Destroying a process that has not been reaped kills its process group (SIGKILL) and reaps
  // it, so no zombie or orphan outlives the handle. Closes stdout_fd() and stdin_fd().
  virtual ~Process() = default;

  // Returns the child's pid (also its process group id).
  virtual pid_t pid() const = 0;

  // Returns the read end of the child's stdout pipe (blocking, close-on-exec), owned by this
  // object and valid until it is destroyed. Read it until end of file.
  virtual int stdout_fd() const = 0;

  // Returns the parent's end of the child's stdin (close-on-exec, owned by this object) when it
  // was launched with LaunchSpec::writable_stdin, else -1.
  virtual int stdin_fd() const { return -1; }

  // Sends `signal` to the child's whole process group. Also works after the child was reaped,
  // to reach processes it left behind; succeeds (does nothing) when no process of the group is
  // left. Internal on other kill() failures.
  virtual absl::Status Signal(int signal) = 0;

  // Reaps the child without blocking: its exit status once it has ended (the same value on
  // every later call), std::nullopt while it runs. Internal if waitpid fails.
  virtual absl::StatusOr<std::optional<ExitStatus>> Poll() = 0;

  // Blocks until the child ends and returns its exit status. Internal if waitpid fails.
  virtual absl::StatusOr<ExitStatus> Wait() = 0;
};

// Starts processes.
//
// Thread-safety: implementations must allow concurrent Launch() calls.
class ProcessLauncher {
 public:
  ProcessLauncher() = default;
  ProcessLauncher(const ProcessLauncher&) = delete;
  ProcessLauncher& operator=(const ProcessLauncher&) = delete;
  virtual ~ProcessLauncher() = default;

  // Starts `spec`. Errors: InvalidArgument for an empty argv; NotFound when the program does
  // not exist; FailedPrecondition when it cannot be executed or the working directory or log
  // file cannot be used; Internal for other failures (pipe, spawn).
  virtual absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) = 0;
};

// The real launcher, on posix_spawn (glibc). Stateless and thread-safe.
class PosixProcessLauncher : public ProcessLauncher {
 public:
  absl::StatusOr<std::unique_ptr<Process>> Launch(const LaunchSpec& spec) override;
};

// Returns the environment a child of this process gets for `spec`: the parent's environment
// (when inherited) with `spec.env` applied, one "NAME=value" entry per name. Exposed for tests.
std::vector<std::string> BuildChildEnvironment(const LaunchSpec& spec);

}  // namespace peco

#endif  // PECO_COMMON_PROCESS_LAUNCHER_H_
