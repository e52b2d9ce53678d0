#include "common/process_launcher.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

extern char** environ;

namespace peco {
namespace {

std::string ErrnoText(int error) { return ::strerror(error); }

ExitStatus FromWaitStatus(int status) {
  if (WIFSIGNALED(status)) return ExitStatus::Signaled(WTERMSIG(status));
  return ExitStatus::Exited(WEXITSTATUS(status));
}

// Closes a descriptor when it goes out of scope unless released.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

class PosixProcess : public Process {
 public:
  PosixProcess(pid_t pid, int stdout_fd, int stdin_fd)
      : pid_(pid), stdout_fd_(stdout_fd), stdin_fd_(stdin_fd) {}

  ~PosixProcess() override {
    bool reaped;
    {
      absl::MutexLock lock(&mu_);
      reaped = exit_.has_value();
    }
    if (!reaped) {
      ::kill(-pid_, SIGKILL);
      int status = 0;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
    ::close(stdout_fd_);
    if (stdin_fd_ >= 0) ::close(stdin_fd_);
  }

  pid_t pid() const override { return pid_; }
  int stdout_fd() const override { return stdout_fd_; }
  int stdin_fd() const override { return stdin_fd_; }

  absl::Status Signal(int signal) override {
    // The group outlives a reaped leader only while members remain; its id cannot be reused
    // by a new process while it has members, so signalling it stays safe.
    if (::kill(-pid_, signal) == 0 || errno == ESRCH) return absl::OkStatus();
    if (errno == EPERM) {
      // A group whose only members are zombies answers EPERM on some kernels; nothing to do.
      return absl::OkStatus();
    }
    return absl::InternalError(
        absl::StrCat("kill(-", pid_, ", ", signal, ") failed: ", ErrnoText(errno)));
  }

  absl::StatusOr<std::optional<ExitStatus>> Poll() override {
    {
      absl::MutexLock lock(&mu_);
      if (exit_.has_value()) return exit_;
    }
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      return absl::InternalError(absl::StrCat("waitpid(", pid_, ") failed: ", ErrnoText(errno)));
    }
    if (r == 0) return std::optional<ExitStatus>();
    absl::MutexLock lock(&mu_);
    exit_ = FromWaitStatus(status);
    return exit_;
  }

  absl::StatusOr<ExitStatus> Wait() override {
    {
      absl::MutexLock lock(&mu_);
      if (exit_.has_value()) return *exit_;
    }
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid_, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      return absl::InternalError(absl::StrCat("waitpid(", pid_, ") failed: ", ErrnoText(errno)));
    }
    absl::MutexLock lock(&mu_);
    exit_ = FromWaitStatus(status);
    return *exit_;
  }

 private:
  const pid_t pid_;
  const int stdout_fd_;
  const int stdin_fd_;  // -1 when stdin is /dev/null
  mutable absl::Mutex mu_;
  std::optional<ExitStatus> exit_ ABSL_GUARDED_BY(mu_);
};

// Owns posix_spawn's C structures for one Launch call.
struct SpawnState {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnState() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnState() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

std::string ExitStatus::ToString() const {
  if (signal != 0) {
    const char* name = ::strsignal(signal);
    return absl::StrCat("signal ", signal, " (", name != nullptr ? name : "unknown", ")");
  }
  return absl::StrCat("exit code ", exit_code);
}

std::vector<std::string> BuildChildEnvironment(const LaunchSpec& spec) {
  std::vector<std::string> env;
  absl::flat_hash_map<std::string, size_t> index;  // name -> position in env
  auto set = [&](const std::string& entry) {
    std::string name = entry.substr(0, entry.find('='));
    auto it = index.find(name);
    if (it != index.end()) {
      env[it->second] = entry;
    } else {
      index.emplace(std::move(name), env.size());
      env.push_back(entry);
    }
  };
  if (spec.inherit_environment && environ != nullptr) {
    for (char** e = environ; *e != nullptr; ++e) set(*e);
  }
  for (const std::string& entry : spec.env) set(entry);
  return env;
}

absl::StatusOr<std::unique_ptr<Process>> PosixProcessLauncher::Launch(const LaunchSpec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty()) {
    return absl::InvalidArgumentError("launch: empty argv");
  }
  const std::string what = absl::StrCat("launching ", spec.argv[0]);
  if (!spec.working_dir.empty()) {
    struct stat st;
    if (::stat(spec.working_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": working directory ", spec.working_dir, " is not a directory"));
    }
  }
  // Every descriptor made here is close-on-exec; the file actions below dup2 the ones the
  // child needs onto 0, 1 and 2 (which clears the flag on the copies) and closefrom(3) drops
  // anything else the parent has open without the flag.
  ScopedFd log_fd(
      spec.stderr_path.empty()
          ? -1
          : ::open(spec.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!spec.stderr_path.empty()) {
    if (log_fd.get() < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": cannot open log file ", spec.stderr_path, ": ", ErrnoText(errno)));
    }
  }
  ScopedFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.get() < 0) {
    return absl::InternalError(absl::StrCat(what, ": cannot open /dev/null: ", ErrnoText(errno)));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat(what, ": pipe failed: ", ErrnoText(errno)));
  }
  ScopedFd read_end(fds[0]);
  ScopedFd write_end(fds[1]);
  // The child's stdin: [0] is the parent's end, [1] the child's.
  ScopedFd stdin_parent, stdin_child;
  if (spec.writable_stdin) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      return absl::InternalError(absl::StrCat(what, ": socketpair failed: ", ErrnoText(errno)));
    }
    stdin_parent.reset(pair[0]);
    stdin_child.reset(pair[1]);
  }

  SpawnState state;
  posix_spawn_file_actions_adddup2(&state.actions,
                                   spec.writable_stdin ? stdin_child.get() : null_fd.get(), 0);
  posix_spawn_file_actions_adddup2(&state.actions, write_end.get(), 1);
  if (log_fd.get() >= 0) posix_spawn_file_actions_adddup2(&state.actions, log_fd.get(), 2);
  if (!spec.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(&state.actions, spec.working_dir.c_str());
  }
  posix_spawn_file_actions_addclosefrom_np(&state.actions, 3);

  // A new process group (id = child's pid); default dispositions and an empty mask, whatever
  // the daemon blocked or ignored (SIGPIPE, SIGTERM handled by a signal thread, ...).
  sigset_t all;
  sigfillset(&all);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setpgroup(&state.attr, 0);
  posix_spawnattr_setsigdefault(&state.attr, &all);
  posix_spawnattr_setsigmask(&state.attr, &none);
  posix_spawnattr_setflags(&state.attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = BuildChildEnvironment(spec);
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &state.actions, &state.attr, argv.data(), envp.data());
  if (rc != 0) {
    std::string message = absl::StrCat(what, ": ", ErrnoText(rc));
    if (rc == ENOENT) return absl::NotFoundError(message);
    if (rc == EACCES || rc == ENOEXEC || rc == EPERM) {
      return absl::FailedPreconditionError(message);
    }
    return absl::InternalError(message);
  }
  // write_end (and stdin_child) close here: the child holds the only write end, so end of file
  // on read_end means every process that inherited the pipe has gone.
  return std::unique_ptr<Process>(
      new PosixProcess(pid, read_end.release(), stdin_parent.release()));
}

}  // namespace peco
