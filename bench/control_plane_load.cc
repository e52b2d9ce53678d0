// Control-plane load: simulated workers and users against a real peco-coordinator.
//
//   peco-bench-control-plane [--phases steady,dispatch] [--workers 1000] [--clients 10]
//       [--submit_rate 100] [--seconds 30] [--warmup 5] [--json]
//       [--coordinator_binary PATH] [--trainer_binary PATH] [--coordinator_args=--flag=v,...]
//       [--coordinator HOST:PORT --data_dir DIR [--coordinator_pid PID]]
//
// Starts `peco-coordinator` itself on 127.0.0.1 (port 0) over a fresh temporary data directory
// for each phase (or targets a running one with --coordinator, reading its tokens from
// --data_dir), and drives it through the real protocol (bench/sim_cluster.h):
//
//  - steady: --workers simulated workers register, then heartbeat every --heartbeat_interval
//    each, spread evenly; --clients users submit --submit_rate jobs/s in total (the small
//    tokenizer preset, each config made distinct by a comment) and watch each one to its end
//    like `peco watch`; workers take the assignments, report progress and success. After
//    --warmup seconds, --seconds are measured: rates achieved, client-side latency per method,
//    the coordinator's CPU (utime + stime from /proc/<pid>/stat, in cores) and memory (VmRSS,
//    VmHWM), its validator processes' CPU, and this generator's own CPU.
//  - dispatch: --dispatch_jobs jobs are submitted while no worker exists; then
//    --dispatch_workers workers with --dispatch_slots CPU slots each (enough for every job at
//    once) come up and heartbeat; the rate is the number of assignments over the time from the
//    first assignment a worker receives to the last. Workers complete each job at once, as in
//    steady.
//
// Prints a Markdown table per phase; with --json also one JSON line per phase.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "bench/job_audit.h"
#include "bench/load_stats.h"
#include "bench/sim_cluster.h"
#include "common/file_util.h"
#include "common/json_writer.h"
#include "common/process_launcher.h"

ABSL_FLAG(std::vector<std::string>, phases, std::vector<std::string>({"steady", "dispatch"}),
          "Phases to run, in order: steady, dispatch, soak (on demand: 10 minutes and an audit)");
ABSL_FLAG(std::string, coordinator, "",
          "host:port of a running coordinator (default: start one per phase)");
ABSL_FLAG(std::string, data_dir, "",
          "With --coordinator: its data directory (user.token, worker.token)");
ABSL_FLAG(int, coordinator_pid, 0, "With --coordinator: its pid, for CPU and memory");
ABSL_FLAG(std::string, coordinator_binary, PECO_COORDINATOR_BINARY, "peco-coordinator to start");
ABSL_FLAG(std::string, trainer_binary, PECO_TRAIN_BINARY,
          "peco-train the started coordinator validates configs with");
ABSL_FLAG(std::vector<std::string>, coordinator_args, {},
          "Extra flags for the started coordinator (comma-separated)");
ABSL_FLAG(std::string, dir, "", "Scratch directory (default: $TMPDIR or /tmp)");
ABSL_FLAG(bool, keep, false, "Keep the coordinators' data directories (coordinator.log)");
ABSL_FLAG(int, workers, 1000, "steady: simulated workers");
ABSL_FLAG(int, worker_slots, 2, "steady: CPU slots per worker");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(1), "Heartbeat interval per worker");
ABSL_FLAG(int, worker_connections, 8, "TCP connections the simulated workers share");
ABSL_FLAG(int, clients, 10, "steady: simulated users");
ABSL_FLAG(double, submit_rate, 100, "steady: submissions per second, all users together");
ABSL_FLAG(bool, watch, true, "steady: watch every job to its end, then GetJob it");
ABSL_FLAG(int, seconds, 30, "steady: measured seconds");
ABSL_FLAG(int, warmup, 5, "steady: seconds of load before the measurement");
ABSL_FLAG(std::string, config, PECO_SOURCE_DIR "/configs/tokenizer_small.yaml",
          "Trainer config every job submits (a tokenizer config)");
ABSL_FLAG(bool, distinct_configs, true, "Make every submitted config text unique");
ABSL_FLAG(int, dispatch_jobs, 10000, "dispatch: jobs queued before any worker exists");
ABSL_FLAG(int, dispatch_workers, 1000, "dispatch: workers that come up");
ABSL_FLAG(int, dispatch_slots, 10, "dispatch: CPU slots per worker");
ABSL_FLAG(int, dispatch_submitters, 16, "dispatch: submissions in flight while queueing");
ABSL_FLAG(int, dispatch_job_seconds, 600,
          "dispatch: how long each job runs on its worker (0: it completes at once, and its "
          "progress and result reach the coordinator during the dispatch)");
ABSL_FLAG(int, dispatch_timeout, 600, "dispatch: seconds to wait for every assignment");
ABSL_FLAG(int, soak_seconds, 600, "soak: seconds of load (submits stop after them)");
ABSL_FLAG(absl::Duration, churn_interval, absl::Seconds(30),
          "soak: every this long, --churn_fraction of the workers leave and as many new join");
ABSL_FLAG(double, churn_fraction, 0.05, "soak: share of the workers replaced at each churn");
ABSL_FLAG(int, soak_job_seconds, 10, "soak: how long each job runs on its worker");
ABSL_FLAG(int, drain_timeout, 300, "soak: seconds to wait for every job to end after the load");
ABSL_FLAG(double, max_rss_mib, 2048, "soak: the coordinator's VmRSS may not exceed this");
ABSL_FLAG(int, audit_threads, 8, "soak: connections reading back the histories");
ABSL_FLAG(bool, json, false, "Also print one JSON line per phase");

namespace peco::bench {
namespace {

namespace fs = std::filesystem;

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "peco-bench-control-plane: " << what << "\n";
  std::exit(1);
}

// The coordinator this phase measures: one it started, or the one --coordinator names.
class Target {
 public:
  static std::unique_ptr<Target> Open(const std::string& phase) {
    auto target = std::unique_ptr<Target>(new Target());
    if (!absl::GetFlag(FLAGS_coordinator).empty()) {
      target->endpoint_.address = absl::GetFlag(FLAGS_coordinator);
      target->data_dir_ = absl::GetFlag(FLAGS_data_dir);
      target->pid_ = absl::GetFlag(FLAGS_coordinator_pid);
      if (target->data_dir_.empty()) Die("--coordinator needs --data_dir (for its tokens)");
      target->ReadTokens();
      return target;
    }
    std::string scratch = absl::GetFlag(FLAGS_dir);
    if (scratch.empty())
      scratch = std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp";
    std::string pattern = absl::StrCat(scratch, "/peco-bench-cp-", phase, "-XXXXXX");
    if (::mkdtemp(pattern.data()) == nullptr) Die("cannot create a directory in " + scratch);
    target->data_dir_ = pattern;
    target->owned_ = true;
    LaunchSpec spec;
    spec.argv = {absl::GetFlag(FLAGS_coordinator_binary),
                 absl::StrCat("--data_dir=", pattern),
                 "--listen=127.0.0.1:0",
                 "--metrics_listen=127.0.0.1:0",
                 absl::StrCat("--trainer=", absl::GetFlag(FLAGS_trainer_binary)),
                 absl::StrCat("--heartbeat_interval=",
                              absl::FormatDuration(absl::GetFlag(FLAGS_heartbeat_interval)))};
    for (const std::string& arg : absl::GetFlag(FLAGS_coordinator_args)) spec.argv.push_back(arg);
    spec.stderr_path = pattern + "/coordinator.log";
    absl::StatusOr<std::unique_ptr<Process>> process = launcher_.Launch(spec);
    if (!process.ok()) Die(absl::StrCat("starting the coordinator: ", process.status().message()));
    target->process_ = *std::move(process);
    target->pid_ = target->process_->pid();
    // It writes coordinator.addr once it listens.
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (true) {
      absl::StatusOr<std::string> addr = ReadFileToString(pattern + "/coordinator.addr");
      if (addr.ok() && !addr->empty()) {
        target->endpoint_.address = std::string(absl::StripAsciiWhitespace(*addr));
        break;
      }
      absl::StatusOr<std::optional<ExitStatus>> exited = target->process_->Poll();
      if (!exited.ok() || exited->has_value() || absl::Now() > deadline) {
        Die(absl::StrCat("the coordinator did not start; see ", spec.stderr_path));
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    target->ReadTokens();
    return target;
  }

  ~Target() {
    if (process_ != nullptr) {
      process_->Signal(SIGTERM).IgnoreError();
      process_->Wait().IgnoreError();
    }
    if (owned_ && !absl::GetFlag(FLAGS_keep)) {
      std::error_code error;
      fs::remove_all(data_dir_, error);
    }
  }

  const Endpoint& endpoint() const { return endpoint_; }
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }

 private:
  Target() = default;
  void ReadTokens() {
    for (auto [file, token] : {std::pair{"/user.token", &endpoint_.user_token},
                               std::pair{"/worker.token", &endpoint_.worker_token}}) {
      absl::StatusOr<std::string> text = ReadFileToString(data_dir_ + file);
      if (!text.ok()) Die(absl::StrCat("reading ", data_dir_, file, ": ", text.status().message()));
      *token = std::string(absl::StripAsciiWhitespace(*text));
    }
  }

  static inline PosixProcessLauncher launcher_;
  Endpoint endpoint_;
  std::string data_dir_;
  pid_t pid_ = 0;
  bool owned_ = false;
  std::unique_ptr<Process> process_;
};

// CPU and memory at one instant.
struct Snapshot {
  absl::Time time;
  std::optional<ProcessSample> coordinator;
  std::map<pid_t, double> children_cpu;  // the coordinator's live children (validators)
  double self_cpu = 0;
  double load = -1;
};

Snapshot Take(pid_t pid) {
  Snapshot snapshot;
  snapshot.time = absl::Now();
  if (pid > 0) {
    snapshot.coordinator = SampleProcess(pid);
    for (pid_t child : ChildrenOf(pid)) {
      if (std::optional<ProcessSample> sample = SampleProcess(child)) {
        snapshot.children_cpu[child] = sample->cpu_seconds;
      }
    }
  }
  snapshot.self_cpu = SelfCpuSeconds();
  snapshot.load = LoadAverage1m();
  return snapshot;
}

// What the window cost each party, in cores (CPU seconds per second); -1 when unknown.
struct Usage {
  double seconds = 0;
  double coordinator_cores = -1;
  double validator_cores = -1;
  double generator_cores = 0;
  double rss_mib = -1, hwm_mib = -1;
  double load_before = -1, load_after = -1;
};

Usage Between(const Snapshot& before, const Snapshot& after) {
  Usage usage;
  usage.seconds = absl::ToDoubleSeconds(after.time - before.time);
  usage.generator_cores = (after.self_cpu - before.self_cpu) / usage.seconds;
  usage.load_before = before.load;
  usage.load_after = after.load;
  if (before.coordinator && after.coordinator) {
    usage.coordinator_cores =
        (after.coordinator->cpu_seconds - before.coordinator->cpu_seconds) / usage.seconds;
    // Live children's growth, plus what children that ended in between left in cutime.
    double children =
        after.coordinator->reaped_child_seconds - before.coordinator->reaped_child_seconds;
    for (const auto& [pid, cpu] : after.children_cpu) {
      auto it = before.children_cpu.find(pid);
      children += cpu - (it == before.children_cpu.end() ? 0 : it->second);
    }
    usage.validator_cores = children / usage.seconds;
    usage.rss_mib = after.coordinator->rss_kib / 1024.0;
    usage.hwm_mib = after.coordinator->hwm_kib / 1024.0;
  }
  return usage;
}

std::string Cores(double cores) {
  return cores < 0 ? std::string("n/a") : absl::StrFormat("%.3f cores", cores);
}

std::string MethodTable(const std::map<std::string, MethodStats>& methods, double seconds) {
  std::string out =
      "| method | completed/s | p50 ms | p99 ms | max ms | errors |\n|---|---|---|---|---|---|\n";
  for (const auto& [name, stats] : methods) {
    std::string errors = "0";
    if (stats.error_count() > 0) {
      std::vector<std::string> parts;
      for (const auto& [code, count] : stats.errors)
        parts.push_back(absl::StrCat(count, " ", code));
      errors = absl::StrJoin(parts, ", ");
    }
    absl::StrAppendFormat(&out, "| %s | %.1f | %.2f | %.2f | %.2f | %s |\n", name,
                          (stats.ok + stats.error_count()) / seconds, stats.p50_ms, stats.p99_ms,
                          stats.max_ms, errors);
  }
  return out;
}

std::string UsageRows(const Usage& usage) {
  return absl::StrFormat(
      "| coordinator CPU | %s |\n| coordinator's validator processes CPU | %s |\n"
      "| coordinator memory (VmRSS / VmHWM) | %.1f / %.1f MiB |\n"
      "| load generator CPU (this process) | %s |\n"
      "| load average (1 min) before / after | %.2f / %.2f |\n",
      Cores(usage.coordinator_cores), Cores(usage.validator_cores), usage.rss_mib, usage.hwm_mib,
      Cores(usage.generator_cores), usage.load_before, usage.load_after);
}

std::string MethodsJson(const std::map<std::string, MethodStats>& methods, double seconds) {
  JsonWriter all;
  for (const auto& [name, stats] : methods) {
    JsonWriter one;
    one.Add("per_s", (stats.ok + stats.error_count()) / seconds)
        .Add("ok", stats.ok)
        .Add("errors", stats.error_count())
        .Add("p50_ms", stats.p50_ms)
        .Add("p99_ms", stats.p99_ms)
        .Add("max_ms", stats.max_ms);
    all.AddRaw(name, one.str());
  }
  return all.str();
}

void AddUsage(JsonWriter* writer, const Usage& usage) {
  writer->Add("coordinator_cpu_cores", usage.coordinator_cores)
      .Add("validator_cpu_cores", usage.validator_cores)
      .Add("coordinator_rss_mib", usage.rss_mib)
      .Add("coordinator_hwm_mib", usage.hwm_mib)
      .Add("generator_cpu_cores", usage.generator_cores)
      .Add("load_1m_before", usage.load_before)
      .Add("load_1m_after", usage.load_after);
}

std::string ConfigText() {
  absl::StatusOr<std::string> text = ReadFileToString(absl::GetFlag(FLAGS_config));
  if (!text.ok()) Die(absl::StrCat("--config: ", text.status().message()));
  return *text;
}

void RunSteady(const std::string& run_id) {
  const int worker_count = absl::GetFlag(FLAGS_workers);
  const int clients = absl::GetFlag(FLAGS_clients);
  const double rate = absl::GetFlag(FLAGS_submit_rate);
  const absl::Duration interval = absl::GetFlag(FLAGS_heartbeat_interval);
  std::unique_ptr<Target> target = Target::Open("steady");
  LatencyRecorder recorder;
  std::atomic<bool> measuring{false};

  SimulatedWorkers::Options worker_options;
  worker_options.count = worker_count;
  worker_options.cpu_slots = absl::GetFlag(FLAGS_worker_slots);
  worker_options.connections = absl::GetFlag(FLAGS_worker_connections);
  SimulatedWorkers workers(target->endpoint(), worker_options, &recorder, &measuring);
  const int registered = workers.RegisterAll(/*in_flight=*/64, absl::Seconds(120));
  if (registered < worker_count) {
    std::cerr << "steady: only " << registered << " of " << worker_count << " workers registered\n";
  }
  SimulatedUsers::Options user_options;
  user_options.config_yaml = ConfigText();
  user_options.distinct_configs = absl::GetFlag(FLAGS_distinct_configs);
  user_options.watch = absl::GetFlag(FLAGS_watch);
  user_options.connections = std::max(1, std::min(clients, 4));
  user_options.run_id = run_id;
  SimulatedUsers users(target->endpoint(), user_options, &recorder, &measuring);

  const absl::Duration beat_step = interval / std::max(worker_count, 1);
  const absl::Duration submit_step =
      rate > 0 ? absl::Seconds(1.0 / rate) : absl::InfiniteDuration();
  const absl::Time start = absl::Now();
  const absl::Time window_start = start + absl::Seconds(absl::GetFlag(FLAGS_warmup));
  const absl::Time window_end = window_start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  absl::Time next_beat = start, next_submit = start;
  int64_t beat_index = 0, submit_index = 0, skipped = 0, late = 0;
  Snapshot before;
  while (true) {
    const absl::Time now = absl::Now();
    if (!measuring.load() && now >= window_start) {
      before = Take(target->pid());
      measuring.store(true);
    }
    if (now >= window_end) break;
    // Open loop: what fell due is issued now, however late; lateness is counted.
    while (next_beat <= now) {
      if (now - next_beat > absl::Milliseconds(10) && measuring.load()) ++late;
      if (!workers.Beat(static_cast<int>(beat_index++ % worker_count)) && measuring.load()) {
        ++skipped;
      }
      next_beat += beat_step;
    }
    while (next_submit <= now) {
      if (now - next_submit > absl::Milliseconds(10) && measuring.load()) ++late;
      users.Submit(static_cast<int>(submit_index++ % clients));
      next_submit += submit_step;
    }
    const absl::Time wake =
        std::min({next_beat, next_submit, measuring.load() ? window_end : window_start});
    if (wake > now) absl::SleepFor(wake - now);
  }
  measuring.store(false);
  const Snapshot after = Take(target->pid());
  users.Shutdown(absl::Seconds(60));
  workers.WaitIdle(absl::Seconds(60));

  const Usage usage = Between(before, after);
  const std::map<std::string, MethodStats> methods = recorder.Summarize();
  auto rate_of = [&](const std::string& method) {
    auto it = methods.find(method);
    return it == methods.end() ? 0.0 : it->second.ok / usage.seconds;
  };
  const std::map<std::string, int64_t> outcomes = users.Outcomes();
  std::string outcome_text;
  for (const auto& [state, count] : outcomes) {
    absl::StrAppend(&outcome_text, outcome_text.empty() ? "" : ", ", count, " ", state);
  }

  std::cout << absl::StrFormat(
      "\n### steady: %d workers, 1 heartbeat per %s each; %d users submitting %.0f jobs/s; "
      "%.1f s measured after %d s warm-up\n\n",
      worker_count, absl::FormatDuration(interval), clients, rate, usage.seconds,
      absl::GetFlag(FLAGS_warmup));
  std::cout << MethodTable(methods, usage.seconds) << "\n";
  std::cout << "| measure | value |\n|---|---|\n";
  std::cout << absl::StrFormat("| heartbeats answered OK | %.1f /s (offered %.1f /s) |\n",
                               rate_of("Heartbeat"),
                               worker_count / absl::ToDoubleSeconds(interval));
  std::cout << absl::StrFormat("| submits answered OK | %.1f /s (offered %.1f /s) |\n",
                               rate_of("SubmitJob"), rate);
  std::cout << absl::StrFormat("| jobs seen ending by the watchers (whole run) | %s |\n",
                               outcome_text.empty() ? "none" : outcome_text);
  std::cout << absl::StrFormat(
      "| heartbeats not sent (previous still in flight) / calls issued > 10 ms late | %d / %d |\n",
      skipped, late);
  std::cout << UsageRows(usage);
  if (absl::GetFlag(FLAGS_json)) {
    JsonWriter line;
    line.Add("bench", "control_plane")
        .Add("phase", "steady")
        .Add("workers", worker_count)
        .Add("clients", clients)
        .Add("offered_submits_per_s", rate)
        .Add("seconds", usage.seconds)
        .Add("heartbeats_per_s", rate_of("Heartbeat"))
        .Add("submits_per_s", rate_of("SubmitJob"))
        .Add("heartbeats_skipped", skipped)
        .Add("late_calls", late);
    AddUsage(&line, usage);
    line.AddRaw("methods", MethodsJson(methods, usage.seconds));
    std::cout << line.str() << "\n";
  }
}

void RunDispatch(const std::string& run_id) {
  const int jobs = absl::GetFlag(FLAGS_dispatch_jobs);
  std::unique_ptr<Target> target = Target::Open("dispatch");
  LatencyRecorder recorder;
  std::atomic<bool> measuring{true};

  // Fill the queue with no worker registered.
  SimulatedUsers::Options user_options;
  user_options.config_yaml = ConfigText();
  user_options.distinct_configs = absl::GetFlag(FLAGS_distinct_configs);
  user_options.watch = false;
  user_options.run_id = run_id;
  SimulatedUsers users(target->endpoint(), user_options, &recorder, &measuring);
  const Snapshot queue_start = Take(target->pid());
  const int submitters = std::max(1, absl::GetFlag(FLAGS_dispatch_submitters));
  for (int i = 0; i < jobs;) {
    if (users.in_flight() >= submitters) {
      absl::SleepFor(absl::Microseconds(200));
      continue;
    }
    users.Submit(i++);
  }
  users.Shutdown(absl::Seconds(120));
  const Snapshot queue_end = Take(target->pid());
  const Usage queue_usage = Between(queue_start, queue_end);
  const std::map<std::string, MethodStats> submit_methods = recorder.Summarize();
  if (users.submitted() < jobs) {
    std::cerr << "dispatch: only " << users.submitted() << " of " << jobs << " jobs queued ("
              << users.submit_failures() << " failed)\n";
  }
  recorder.Clear();

  // Workers come up; every job fits at once.
  const int worker_count = absl::GetFlag(FLAGS_dispatch_workers);
  const absl::Duration interval = absl::GetFlag(FLAGS_heartbeat_interval);
  SimulatedWorkers::Options worker_options;
  worker_options.count = worker_count;
  worker_options.cpu_slots = absl::GetFlag(FLAGS_dispatch_slots);
  worker_options.connections = absl::GetFlag(FLAGS_worker_connections);
  worker_options.job_duration = absl::Seconds(absl::GetFlag(FLAGS_dispatch_job_seconds));
  SimulatedWorkers workers(target->endpoint(), worker_options, &recorder, &measuring);
  const Snapshot up_start = Take(target->pid());
  workers.RegisterAll(/*in_flight=*/64, absl::Seconds(120));
  const absl::Duration beat_step = interval / std::max(worker_count, 1);
  const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_dispatch_timeout));
  absl::Time next_beat = absl::Now();
  int64_t beat_index = 0;
  const int64_t expected = users.submitted();
  while (workers.assignments() < expected && absl::Now() < deadline) {
    const absl::Time now = absl::Now();
    while (next_beat <= now) {
      workers.Beat(static_cast<int>(beat_index++ % worker_count));
      next_beat += beat_step;
    }
    if (next_beat > absl::Now()) absl::SleepFor(next_beat - absl::Now());
  }
  const Snapshot up_end = Take(target->pid());
  measuring.store(false);
  workers.WaitIdle(absl::Seconds(60));
  const Usage usage = Between(up_start, up_end);
  std::vector<absl::Time> times = workers.AssignmentTimes();
  std::sort(times.begin(), times.end());
  const double span = times.size() > 1 ? absl::ToDoubleSeconds(times.back() - times.front()) : 0;
  const double per_s = span > 0 ? (times.size() - 1) / span : 0;
  const double up_to_last = times.empty() ? 0 : absl::ToDoubleSeconds(times.back() - up_start.time);
  const std::map<std::string, MethodStats> methods = recorder.Summarize();

  std::cout << absl::StrFormat(
      "\n### dispatch: %d jobs queued, then %d workers with %d CPU slots each, 1 heartbeat per "
      "%s each; each job runs %s\n\n",
      jobs, worker_count, worker_options.cpu_slots, absl::FormatDuration(interval),
      worker_options.job_duration == absl::ZeroDuration()
          ? std::string("and completes at once")
          : absl::StrCat("for ", absl::FormatDuration(worker_options.job_duration)));
  std::cout << "| measure | value |\n|---|---|\n";
  const MethodStats submit =
      submit_methods.count("SubmitJob") > 0 ? submit_methods.at("SubmitJob") : MethodStats();
  std::cout << absl::StrFormat(
      "| queueing: jobs accepted / failed | %d / %d in %.1f s (%.1f submits/s, %d in flight; "
      "p50 %.2f ms, p99 %.2f ms) |\n",
      users.submitted(), users.submit_failures(), queue_usage.seconds,
      users.submitted() / queue_usage.seconds, submitters, submit.p50_ms, submit.p99_ms);
  std::cout << absl::StrFormat("| queueing: coordinator / validators CPU | %s / %s |\n",
                               Cores(queue_usage.coordinator_cores),
                               Cores(queue_usage.validator_cores));
  std::cout << absl::StrFormat(
      "| **dispatch rate** (first to last assignment received) | **%.0f jobs/s** (%d in %.2f "
      "s) |\n",
      per_s, static_cast<int64_t>(times.size()), span);
  std::cout << absl::StrFormat("| workers registering -> last assignment | %.2f s |\n", up_to_last);
  std::cout << UsageRows(usage) << "\n";
  std::cout << MethodTable(methods, usage.seconds);
  if (absl::GetFlag(FLAGS_json)) {
    JsonWriter line;
    line.Add("bench", "control_plane")
        .Add("phase", "dispatch")
        .Add("jobs", jobs)
        .Add("workers", worker_count)
        .Add("slots_per_worker", worker_options.cpu_slots)
        .Add("job_seconds", absl::GetFlag(FLAGS_dispatch_job_seconds))
        .Add("queued", users.submitted())
        .Add("queue_seconds", queue_usage.seconds)
        .Add("queue_submits_per_s", users.submitted() / queue_usage.seconds)
        .Add("assigned", static_cast<int64_t>(times.size()))
        .Add("dispatch_seconds", span)
        .Add("dispatch_jobs_per_s", per_s)
        .Add("up_to_last_assignment_s", up_to_last);
    AddUsage(&line, usage);
    line.AddRaw("methods", MethodsJson(methods, usage.seconds));
    std::cout << line.str() << "\n";
  }
}

// The soak: the steady load for --soak_seconds while workers leave (they stop heartbeating, so
// their running jobs are lost and restart elsewhere) and new ones join, then a drain until every
// job has ended, then an audit of every job and its history (bench/job_audit.h). Passes when no
// acknowledged job is missing, none is duplicated, every job SUCCEEDED with a complete history,
// and the coordinator's memory stayed under --max_rss_mib. Returns the process exit code.
int RunSoak(const std::string& run_id) {
  const int worker_count = absl::GetFlag(FLAGS_workers);
  const int clients = absl::GetFlag(FLAGS_clients);
  const double rate = absl::GetFlag(FLAGS_submit_rate);
  const absl::Duration interval = absl::GetFlag(FLAGS_heartbeat_interval);
  const absl::Duration load = absl::Seconds(absl::GetFlag(FLAGS_soak_seconds));
  const absl::Duration churn_interval = absl::GetFlag(FLAGS_churn_interval);
  const int churn =
      std::max(1, static_cast<int>(worker_count * absl::GetFlag(FLAGS_churn_fraction) + 0.5));
  const int churns = static_cast<int>(load / churn_interval) + 1;
  std::unique_ptr<Target> target = Target::Open("soak");
  LatencyRecorder recorder;
  std::atomic<bool> measuring{true};

  // Workers [first, first + worker_count) are present; each churn moves `first` on by `churn`,
  // so the oldest leave and never come back and fresh ones register.
  SimulatedWorkers::Options worker_options;
  worker_options.count = worker_count + churn * churns;
  worker_options.cpu_slots = absl::GetFlag(FLAGS_worker_slots);
  worker_options.connections = absl::GetFlag(FLAGS_worker_connections);
  worker_options.job_duration = absl::Seconds(absl::GetFlag(FLAGS_soak_job_seconds));
  SimulatedWorkers workers(target->endpoint(), worker_options, &recorder, &measuring);
  SimulatedUsers::Options user_options;
  user_options.config_yaml = ConfigText();
  user_options.distinct_configs = absl::GetFlag(FLAGS_distinct_configs);
  user_options.watch = true;
  user_options.max_watches = 1 << 30;
  user_options.connections = std::max(1, std::min(clients, 4));
  user_options.run_id = run_id;
  SimulatedUsers users(target->endpoint(), user_options, &recorder, &measuring);

  std::cout << absl::StrFormat(
      "\n### soak: %d workers (%d replaced every %s), 1 heartbeat per %s each; %d users "
      "submitting %.0f jobs/s of %d s each for %s\n\n",
      worker_count, churn, absl::FormatDuration(churn_interval), absl::FormatDuration(interval),
      clients, rate, absl::GetFlag(FLAGS_soak_job_seconds), absl::FormatDuration(load));
  std::cout << "| elapsed | workers present / left | submits OK / failed | jobs ended | "
               "coordinator VmRSS |\n|---|---|---|---|---|\n";
  const absl::Duration beat_step = interval / std::max(worker_count, 1);
  const absl::Duration submit_step =
      rate > 0 ? absl::Seconds(1.0 / rate) : absl::InfiniteDuration();
  const absl::Time start = absl::Now();
  const absl::Time load_end = start + load;
  const absl::Time drain_end = load_end + absl::Seconds(absl::GetFlag(FLAGS_drain_timeout));
  absl::Time next_beat = start, next_submit = start, next_churn = start + churn_interval;
  absl::Time next_report = start + absl::Minutes(1);
  int64_t beat_index = 0, submit_index = 0;
  int first = 0;
  double max_rss_mib = 0;
  auto ended = [&] {
    int64_t count = 0;
    for (const auto& [state, n] : users.Outcomes()) count += n;
    return count;
  };
  auto report = [&](absl::Time now) {
    std::optional<ProcessSample> sample = SampleProcess(target->pid());
    const double rss = sample ? sample->rss_kib / 1024.0 : -1;
    max_rss_mib = std::max(max_rss_mib, rss);
    std::cout << absl::StrFormat("| %s | %d / %d | %d / %d | %d | %.1f MiB |\n",
                                 absl::FormatDuration(absl::Trunc(now - start, absl::Seconds(1))),
                                 worker_count, first, users.submitted(), users.submit_failures(),
                                 ended(), rss)
              << std::flush;
  };
  while (true) {
    const absl::Time now = absl::Now();
    const bool loading = now < load_end;
    // Drained: every acknowledged job ended (after a moment for the last submits' answers).
    if (!loading && ((now >= load_end + absl::Seconds(2) && ended() >= users.submitted()) ||
                     now >= drain_end)) {
      break;
    }
    while (next_beat <= now) {
      workers.Beat(first + static_cast<int>(beat_index++ % worker_count));
      next_beat += beat_step;
    }
    while (loading && next_submit <= now) {
      users.Submit(static_cast<int>(submit_index++ % clients));
      next_submit += submit_step;
    }
    if (loading && next_churn <= now) {
      first += churn;  // the oldest `churn` go silent; as many fresh ones start registering
      next_churn += churn_interval;
    }
    if (next_report <= now) {
      report(now);
      next_report += absl::Minutes(1);
    }
    const absl::Time wake = std::min(
        {next_beat, loading ? next_submit : next_beat + absl::Milliseconds(50), next_report});
    if (wake > now) absl::SleepFor(wake - now);
  }
  report(absl::Now());
  const absl::Duration drained = absl::Now() - load_end;
  users.Shutdown(absl::Seconds(60));
  workers.WaitIdle(absl::Seconds(60));

  absl::StatusOr<JobAudit> audit =
      AuditJobs(target->endpoint(), absl::GetFlag(FLAGS_audit_threads));
  if (!audit.ok()) Die(absl::StrCat("soak audit: ", audit.status().message()));
  const int64_t acknowledged = users.submitted();
  const int64_t lost = std::max<int64_t>(0, acknowledged - audit->jobs);
  std::string states;
  for (const auto& [state, count] : audit->states) {
    absl::StrAppend(&states, states.empty() ? "" : ", ", count, " ", state);
  }
  const bool memory_ok = max_rss_mib <= absl::GetFlag(FLAGS_max_rss_mib);
  const bool pass = lost == 0 && audit->clean() && memory_ok;
  std::cout << "\n| measure | value |\n|---|---|\n";
  std::cout << absl::StrFormat("| submits acknowledged / failed | %d / %d |\n", acknowledged,
                               users.submit_failures());
  std::cout << absl::StrFormat("| jobs read back | %d (%s) |\n", audit->jobs, states);
  std::cout << absl::StrFormat("| lost jobs (acknowledged, not read back) | %d |\n", lost);
  std::cout << absl::StrFormat("| duplicate jobs (same request id) | %d |\n",
                               audit->duplicate_request_ids);
  std::cout << absl::StrFormat("| jobs restarted after their worker left | %d |\n",
                               audit->restarted);
  std::cout << absl::StrFormat(
      "| histories incomplete / repeated points (of %d events) | %d / %d |\n",
      audit->history_events, audit->incomplete_histories, audit->repeated_events);
  std::cout << absl::StrFormat("| workers that left / joined | %d / %d |\n", first, first);
  std::cout << absl::StrFormat("| drain after the load | %s |\n", absl::FormatDuration(drained));
  std::cout << absl::StrFormat("| coordinator VmRSS max (limit) | %.1f MiB (%.0f) |\n", max_rss_mib,
                               absl::GetFlag(FLAGS_max_rss_mib));
  std::cout << absl::StrFormat("| **result** | **%s** |\n", pass ? "PASS" : "FAIL");
  for (const std::string& example : audit->examples) std::cout << "  " << example << "\n";
  if (absl::GetFlag(FLAGS_json)) {
    JsonWriter line;
    line.Add("bench", "control_plane")
        .Add("phase", "soak")
        .Add("workers", worker_count)
        .Add("seconds", absl::ToDoubleSeconds(load))
        .Add("acknowledged", acknowledged)
        .Add("jobs", audit->jobs)
        .Add("lost", lost)
        .Add("duplicates", audit->duplicate_request_ids)
        .Add("restarted", audit->restarted)
        .Add("incomplete_histories", audit->incomplete_histories)
        .Add("repeated_points", audit->repeated_events)
        .Add("max_rss_mib", max_rss_mib)
        .Add("pass", pass);
    std::cout << line.str() << "\n";
  }
  return pass ? 0 : 1;
}

int Run() {
  const std::string run_id =
      absl::StrCat("bench-", ::getpid(), "-", absl::ToUnixSeconds(absl::Now()));
  for (const std::string& phase : absl::GetFlag(FLAGS_phases)) {
    if (phase == "steady") {
      RunSteady(run_id + "-steady");
    } else if (phase == "dispatch") {
      RunDispatch(run_id + "-dispatch");
    } else if (phase == "soak") {
      if (int code = RunSoak(run_id + "-soak"); code != 0) return code;
    } else {
      Die(absl::StrCat("--phases: unknown phase '", phase, "' (steady, dispatch, soak)"));
    }
  }
  return 0;
}

}  // namespace
}  // namespace peco::bench

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  absl::ParseCommandLine(argc, argv);
  return peco::bench::Run();
}
