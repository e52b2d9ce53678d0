// Runs a program with its stdout on a pipe, for tests that drive peco-train as a process.
//
// Header-only; one Subprocess per child; not thread-safe.
#ifndef PECO_TESTS_TEST_UTIL_SUBPROCESS_H_
#define PECO_TESTS_TEST_UTIL_SUBPROCESS_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

extern char** environ;

namespace peco::testing {

class Subprocess {
 public:
  // Starts `argv`; stdout is readable line by line, stderr goes to `stderr_path` (or is kept).
  explicit Subprocess(const std::vector<std::string>& argv, const std::string& stderr_path = "") {
    int fds[2];
    if (::pipe(fds) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    if (!stderr_path.empty()) {
      posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = ::fdopen(fds[0], "r");
  }

  ~Subprocess() {
    if (out_ != nullptr) std::fclose(out_);
    if (pid_ > 0 && !waited_) {
      ::kill(pid_, SIGKILL);
      Wait();
    }
  }

  bool started() const { return pid_ > 0; }

  // Next stdout line without the newline; false at end of stream.
  bool ReadLine(std::string* line) {
    line->clear();
    if (out_ == nullptr) return false;
    int c;
    while ((c = std::fgetc(out_)) != EOF) {
      if (c == '\n') return true;
      line->push_back(static_cast<char>(c));
    }
    return !line->empty();
  }

  void Signal(int signal) { ::kill(pid_, signal); }

  // Exit code, or 128 + signal number.
  int Wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    waited_ = true;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  bool waited_ = false;
};

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_SUBPROCESS_H_
