#include "bench/load_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace peco::bench {
namespace {

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t index = std::min(sorted.size() - 1, static_cast<size_t>(q * sorted.size()));
  return sorted[index];
}

// The fields of /proc/<pid>/stat after the command name (which may hold spaces): field 3 (state)
// is element 0.
std::optional<std::vector<std::string>> StatFields(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  return std::vector<std::string>(
      absl::StrSplit(text.substr(close + 2), ' ', absl::SkipWhitespace()));
}

}  // namespace

int64_t MethodStats::error_count() const {
  int64_t total = 0;
  for (const auto& [code, count] : errors) total += count;
  return total;
}

void LatencyRecorder::Record(const std::string& method, absl::Duration latency,
                             const std::string& error) {
  absl::MutexLock lock(&mu_);
  Samples& samples = methods_[method];
  samples.ms.push_back(absl::ToDoubleMilliseconds(latency));
  if (error.empty()) {
    ++samples.ok;
  } else {
    ++samples.errors[error];
  }
}

std::map<std::string, MethodStats> LatencyRecorder::Summarize() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, MethodStats> out;
  for (const auto& [method, samples] : methods_) {
    std::vector<double> sorted = samples.ms;
    std::sort(sorted.begin(), sorted.end());
    MethodStats& stats = out[method];
    stats.ok = samples.ok;
    stats.errors = samples.errors;
    stats.p50_ms = Percentile(sorted, 0.50);
    stats.p99_ms = Percentile(sorted, 0.99);
    stats.max_ms = sorted.empty() ? 0 : sorted.back();
  }
  return out;
}

void LatencyRecorder::Clear() {
  absl::MutexLock lock(&mu_);
  methods_.clear();
}

std::optional<ProcessSample> SampleProcess(pid_t pid) {
  std::optional<std::vector<std::string>> fields = StatFields(pid);
  // utime, stime, cutime, cstime are fields 14-17 of stat(5), elements 11-14 here.
  if (!fields || fields->size() < 15) return std::nullopt;
  const double tick = static_cast<double>(::sysconf(_SC_CLK_TCK));
  auto ticks = [&](size_t i) {
    int64_t value = 0;
    (void)absl::SimpleAtoi((*fields)[i], &value);
    return static_cast<double>(value) / tick;
  };
  ProcessSample sample;
  sample.cpu_seconds = ticks(11) + ticks(12);
  sample.reaped_child_seconds = ticks(13) + ticks(14);
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    std::vector<std::string> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipWhitespace());
    if (parts.size() < 2) continue;
    if (parts[0] == "VmRSS:") (void)absl::SimpleAtoi(parts[1], &sample.rss_kib);
    if (parts[0] == "VmHWM:") (void)absl::SimpleAtoi(parts[1], &sample.hwm_kib);
  }
  return sample;
}

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::optional<std::vector<std::string>> fields = StatFields(pid);
    int ppid = 0;
    // ppid is field 4 of stat(5), element 1 here.
    if (fields && fields->size() > 1 && absl::SimpleAtoi((*fields)[1], &ppid) && ppid == parent) {
      children.push_back(pid);
    }
  }
  ::closedir(proc);
  return children;
}

double SelfCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double LoadAverage1m() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return in ? load : -1;
}

}  // namespace peco::bench
