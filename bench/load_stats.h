// Measurement helpers of the control-plane load generator (bench/control_plane_load.cc):
// client-side latency per RPC method, and CPU and memory of processes from /proc.
//
// Thread-safety: LatencyRecorder is thread-safe; the /proc readers are pure functions.
#ifndef PECO_BENCH_LOAD_STATS_H_
#define PECO_BENCH_LOAD_STATS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace peco::bench {

// Latencies and outcomes of one kind of call.
struct MethodStats {
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;  // status code name -> count
  double p50_ms = 0, p99_ms = 0, max_ms = 0;

  int64_t error_count() const;
};

// Collects one sample per finished call, by method name. Latencies of failed calls count in
// the percentiles too (a slow error is still slow).
class LatencyRecorder {
 public:
  // Records a call that took `latency`; `error` is "" for success, else the status code name.
  void Record(const std::string& method, absl::Duration latency, const std::string& error)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns the statistics of every method recorded so far.
  std::map<std::string, MethodStats> Summarize() const ABSL_LOCKS_EXCLUDED(mu_);
  // Forgets everything (the start of a measurement window).
  void Clear() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Samples {
    std::vector<double> ms;
    int64_t ok = 0;
    std::map<std::string, int64_t> errors;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Samples> methods_ ABSL_GUARDED_BY(mu_);
};

// CPU time of a process (user + system) and its memory, from /proc/<pid>/stat and status.
struct ProcessSample {
  double cpu_seconds = 0;           // utime + stime
  double reaped_child_seconds = 0;  // cutime + cstime: children it has waited for
  int64_t rss_kib = 0;              // VmRSS
  int64_t hwm_kib = 0;              // VmHWM
};

// Reads /proc/<pid>; std::nullopt when the process is gone or unreadable.
std::optional<ProcessSample> SampleProcess(pid_t pid);

// Returns the pids whose parent is `parent` (from /proc/*/stat).
std::vector<pid_t> ChildrenOf(pid_t parent);

// Returns the CPU seconds this process has used (getrusage), all threads.
double SelfCpuSeconds();

// Returns the 1-minute load average (/proc/loadavg), or -1.
double LoadAverage1m();

}  // namespace peco::bench

#endif  // PECO_BENCH_LOAD_STATS_H_
