// A real peco cluster on loopback for end-to-end tests: a peco-coordinator and peco-worker
// daemons as child processes over a temporary data directory, the `peco` CLI as a process, and
// a JobService/WorkerService client for checks. Every wait polls a condition against a generous
// deadline; nothing sleeps for timing.
//
// Not thread-safe; one Cluster per test.
#ifndef PECO_TESTS_E2E_CLUSTER_H_
#define PECO_TESTS_E2E_CLUSTER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/process_launcher.h"
#include "peco/v1/job_service.grpc.pb.h"
#include "peco/v1/worker_service.grpc.pb.h"

namespace peco::e2e {

// A daemon child process whose stdout is drained by a thread (stderr goes to a log file).
class Daemon {
 public:
  Daemon(std::unique_ptr<Process> process, std::string log_path);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  pid_t pid() const { return process_->pid(); }
  // Sends `signal` to the daemon's own pid only (not its children).
  void SignalDaemonOnly(int signal);
  // SIGTERM (unless it has exited), then waits for the exit; returns the exit status.
  ExitStatus Stop();
  // Waits for the daemon to exit by itself; returns the exit status.
  ExitStatus Wait();
  // SIGKILL to the daemon alone and waits for it.
  void Kill();
  bool running();
  const std::string& log_path() const { return log_path_; }

 private:
  std::unique_ptr<Process> process_;
  std::string log_path_;
  std::thread drain_;
  bool reaped_ = false;
  ExitStatus exit_status_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout
  std::string error;   // stderr
};

// The job id in `peco submit` output: the first token that starts with "job-" ("" if none).
std::string JobIdIn(const std::string& text);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// The body of an HTTP/1.0 GET of `target` ("/metrics") from `address` (host:port); "" when
// unreachable.
std::string HttpGet(const std::string& address, const std::string& target);

class Cluster {
 public:
  Cluster();
  ~Cluster();

  const std::string& root() const { return root_; }
  const std::string& data_dir() const { return data_dir_; }

  // Makes this cluster's own checks (jobs(), workers_api(), the waits) connect over TLS,
  // verifying the coordinator against the PEM CA file `ca_path`; call before StartCoordinator.
  void UseTls(const std::string& ca_path);

  // Starts (or restarts) the coordinator on this cluster's fixed port and data directory and
  // waits until it answers. Extra flags are appended.
  void StartCoordinator(const std::vector<std::string>& extra_flags = {});
  Daemon* coordinator() { return coordinator_.get(); }
  void KillCoordinator();

  // Starts a worker with its own work directory and port range; returns its index. Extra flags
  // are appended.
  int StartWorker(int cpu_slots = 1, const std::vector<std::string>& extra_flags = {});
  Daemon* worker(int index) { return workers_[index].get(); }
  // The worker id the coordinator knows for worker `index` (read from its work directory).
  std::string WorkerId(int index);
  // Waits until `count` workers are ALIVE.
  bool WaitForWorkers(int count, absl::Duration timeout = absl::Seconds(60));

  // Runs the peco CLI with --data_dir set.
  CommandResult Peco(const std::vector<std::string>& args);

  // gRPC clients with the user / worker token.
  v1::JobService::Stub* jobs() { return jobs_.get(); }
  v1::WorkerService::Stub* workers_api() { return workers_api_.get(); }
  std::unique_ptr<grpc::ClientContext> UserContext(absl::Duration timeout = absl::Seconds(30));
  std::unique_ptr<grpc::ClientContext> WorkerContext(absl::Duration timeout = absl::Seconds(30));

  absl::StatusOr<v1::GetJobResponse> GetJob(const std::string& job_id);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> Checkpoints(const std::string& job_id);
  // The job's history as WatchJob sends it (include_history), until the terminal state.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> History(const std::string& job_id);
  // Polls until `predicate(job)` holds or the timeout passes.
  absl::StatusOr<v1::GetJobResponse> WaitForJob(
      const std::string& job_id, const std::function<bool(const v1::GetJobResponse&)>& predicate,
      absl::Duration timeout);
  absl::StatusOr<v1::GetJobResponse> WaitForState(const std::string& job_id, v1::JobState state,
                                                  absl::Duration timeout = absl::Seconds(180));

  // Writes a tokenizer spec file (tiny model, synthetic-free Fashion-MNIST) and returns its path;
  // `extra_yaml` (top-level keys, e.g. a `faults:` section) is appended.
  std::string WriteSpec(const std::string& name, int max_steps, int checkpoint_every,
                        const std::string& extra_yaml = "");

  // The body of GET /metrics from the coordinator's Prometheus endpoint ("" when unreachable).
  std::string CoordinatorMetrics();
  // The body of GET /metrics from worker `index` ("" when unreachable).
  std::string WorkerMetrics(int index);
  // host:port of the coordinator's and of worker `index`'s metrics ("" before they serve).
  std::string CoordinatorMetricsAddress();
  std::string WorkerMetricsAddress(int index);

  // Prints the logs of every daemon (for failures).
  void DumpLogs();

 private:
  void Connect();

  std::string root_;
  std::string data_dir_;
  int coordinator_port_ = 0;
  std::unique_ptr<Daemon> coordinator_;
  std::vector<std::unique_ptr<Daemon>> workers_;
  std::vector<std::string> worker_dirs_;
  int coordinator_starts_ = 0;
  std::shared_ptr<grpc::ChannelCredentials> credentials_ = grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_api_;
  std::string user_token_;
  std::string worker_token_;
};

}  // namespace peco::e2e

#endif  // PECO_TESTS_E2E_CLUSTER_H_
