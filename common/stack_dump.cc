#include "common/stack_dump.h"

#include <dirent.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/debugging/symbolize.h"

namespace peco {
namespace {

constexpr int kMaxFrames = 48;
std::atomic<bool> installed{false};
std::atomic<bool> dumping{false};
// The thread whose stack is being written; it clears the value when done.
std::atomic<pid_t> answering{0};

int DumpSignal() { return SIGRTMIN + 3; }

// Async-signal-safe formatting: everything goes through write(2).
void Write(const char* text) {
  size_t left = std::strlen(text);
  while (left > 0) {
    const ssize_t n = write(STDERR_FILENO, text, left);
    if (n <= 0) return;
    text += n;
    left -= static_cast<size_t>(n);
  }
}

void WriteNumber(uint64_t value, int base) {
  char buffer[32];
  int i = sizeof(buffer) - 1;
  buffer[i] = '\0';
  do {
    const int digit = static_cast<int>(value % base);
    buffer[--i] = static_cast<char>(digit < 10 ? '0' + digit : 'a' + digit - 10);
    value /= base;
  } while (value != 0 && i > 0);
  Write(buffer + i);
}

pid_t ThreadId() { return static_cast<pid_t>(syscall(SYS_gettid)); }

void WriteOwnStack() {
  // glibc's unwinder reads the DWARF call frame information, so it needs no frame pointers
  // (absl's x86 unwinder does); warmed up at install time, it does not allocate here.
  void* frames[kMaxFrames];
  const int depth = backtrace(frames, kMaxFrames);
  Write("--- thread ");
  WriteNumber(static_cast<uint64_t>(ThreadId()), 10);
  Write(" ---\n");
  char symbol[512];
  for (int i = 0; i < depth; ++i) {
    Write("    @ 0x");
    WriteNumber(reinterpret_cast<uintptr_t>(frames[i]), 16);
    Write("  ");
    // The return address points after the call; its predecessor lies inside the caller.
    const void* pc = static_cast<const char*>(frames[i]) - 1;
    Write(absl::Symbolize(pc, symbol, sizeof(symbol)) ? symbol : "(unknown)");
    Write("\n");
  }
}

void OnDumpSignal(int) {
  const int saved_errno = errno;
  WriteOwnStack();
  answering.store(0);
  errno = saved_errno;
}

void SleepMillis(long millis) {
  timespec delay{0, millis * 1000000L};
  nanosleep(&delay, nullptr);
}

void OnSigquit(int) {
  const int saved_errno = errno;
  if (dumping.exchange(true)) return;  // one dump at a time
  Write("=== SIGQUIT: stacks of every thread (process ");
  WriteNumber(static_cast<uint64_t>(getpid()), 10);
  Write(") ===\n");
  WriteOwnStack();
  const pid_t self = ThreadId();
  const int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    char buffer[4096];
    for (;;) {
      const long n = syscall(SYS_getdents64, dir, buffer, sizeof(buffer));
      if (n <= 0) break;
      for (long offset = 0; offset < n;) {
        const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
        offset += entry->d_reclen;
        pid_t tid = 0;
        for (const char* c = entry->d_name; *c != '\0'; ++c) {
          if (*c < '0' || *c > '9') {
            tid = 0;
            break;
          }
          tid = tid * 10 + (*c - '0');
        }
        if (tid <= 0 || tid == self) continue;
        answering.store(tid);
        if (syscall(SYS_tgkill, getpid(), tid, DumpSignal()) != 0) continue;
        // Each thread writes its own stack; at most 100 ms each, so a thread that cannot
        // answer (it blocks the signal) does not hold the dump up.
        for (int waited = 0; answering.load() == tid && waited < 100; ++waited) SleepMillis(1);
      }
    }
    close(dir);
  }
  Write("=== end of stacks ===\n");
  dumping.store(false);
  errno = saved_errno;
}

}  // namespace

void InstallStackDumpOnSigquit(const char* argv0) {
  if (installed.exchange(true)) return;
  absl::InitializeSymbolizer(argv0);
  // The unwinder's first use loads libgcc_s; do it now, outside any signal handler.
  void* frames[4];
  backtrace(frames, 4);
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  action.sa_handler = OnDumpSignal;
  sigaction(DumpSignal(), &action, nullptr);
  action.sa_handler = OnSigquit;
  sigaction(SIGQUIT, &action, nullptr);
}

}  // namespace peco
