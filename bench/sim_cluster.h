// Simulated peco workers and users for the control-plane load generator
// (bench/control_plane_load.cc). They speak the real protocol (proto/peco/v1) to a real
// coordinator through gRPC's callback API, so a few gRPC threads drive thousands of them.
//
// A simulated worker behaves like peco-worker (worker/worker_agent.cc) towards the coordinator:
// it registers (again after NOT_FOUND), heartbeats with its running attempts, free devices and
// unacknowledged results, takes assignments from heartbeat responses, reports progress for each
// started attempt (a `start` trainer event and a step-1 metric point per rank; one
// ReportProgress stream for all the attempts a heartbeat started, as peco-worker batches what
// its trainers reported since its last flush), and once that report is acknowledged and
// `job_duration` has passed reports the attempt SUCCEEDED in its next heartbeat. Stale attempts are
// dropped; cancelled ones are reported STOPPED. It runs no trainer and uploads no checkpoint.
//
// A simulated user submits a job (SubmitJob with a fresh client_request_id), watches it like
// `peco watch` (WatchJob with history until a terminal state), then reads it once (GetJob).
//
// Latency is measured client-side, from the call's start to its completion callback (for
// WatchJob, to the first event), and recorded only for calls started while `*measuring` is
// true.
//
// Thread-safety: every public method is thread-safe; completion callbacks run on gRPC's
// threads.
#ifndef PECO_BENCH_SIM_CLUSTER_H_
#define PECO_BENCH_SIM_CLUSTER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/load_stats.h"
#include "peco/v1/job_service.grpc.pb.h"
#include "peco/v1/worker_service.grpc.pb.h"

namespace peco::bench {

// Where the coordinator is and the bearer tokens it wants.
struct Endpoint {
  std::string address;  // host:port
  std::string user_token;
  std::string worker_token;
};

// Opens `count` channels to `address` that do not share a TCP connection.
std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const std::string& address, int count);

class SimulatedWorkers {
 public:
  struct Options {
    int count = 1000;
    int cpu_slots = 1;
    absl::Duration job_duration = absl::ZeroDuration();
    int connections = 8;
    absl::Duration rpc_deadline = absl::Seconds(30);
  };

  // `recorder` and `measuring` are borrowed and must outlive this object.
  SimulatedWorkers(const Endpoint& endpoint, Options options, LatencyRecorder* recorder,
                   const std::atomic<bool>* measuring);
  ~SimulatedWorkers();

  // Registers every worker that is not registered (at most `in_flight` calls at once) and
  // returns how many are registered when they have all answered or `timeout` has passed.
  int RegisterAll(int in_flight, absl::Duration timeout);

  // Starts worker `index`'s heartbeat (or its registration after a NOT_FOUND). Returns false,
  // doing nothing, while its previous call is still in flight (a real worker waits for it).
  bool Beat(int index);

  // Assignments received so far, and when each arrived.
  int64_t assignments() const { return assignments_.load(); }
  std::vector<absl::Time> AssignmentTimes() const ABSL_LOCKS_EXCLUDED(times_mu_);
  // Results acknowledged by a heartbeat, by AttemptResult.result name.
  std::map<std::string, int64_t> ResultsDelivered() const ABSL_LOCKS_EXCLUDED(times_mu_);

  // Waits until no call is in flight, or `timeout`. Returns whether it got there.
  bool WaitIdle(absl::Duration timeout);

 private:
  struct Attempt;
  struct Worker;
  class ReportStream;

  void Register(Worker& worker);
  void OnHeartbeat(Worker& worker, const grpc::Status& status,
                   const v1::HeartbeatResponse& response, int sent_results, bool measured,
                   absl::Duration latency);
  // Sends the progress reports of the attempts `keys` of `worker` in one stream. Called
  // without the worker's lock.
  void StartReports(Worker& worker, std::vector<std::pair<std::string, int64_t>> keys);
  void OnReportDone(Worker& worker, const std::vector<std::pair<std::string, int64_t>>& keys,
                    bool ok);
  void Prepare(grpc::ClientContext* context) const;
  v1::WorkerService::Stub* StubFor(int index) const;

  const Endpoint endpoint_;
  const Options options_;
  LatencyRecorder* const recorder_;
  const std::atomic<bool>* const measuring_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::WorkerService::Stub>> stubs_;
  std::vector<std::unique_ptr<Worker>> workers_;

  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> assignments_{0};
  mutable absl::Mutex times_mu_;
  std::vector<absl::Time> assignment_times_ ABSL_GUARDED_BY(times_mu_);
  std::map<std::string, int64_t> results_ ABSL_GUARDED_BY(times_mu_);
};

class SimulatedUsers {
 public:
  struct Options {
    int connections = 2;
    // The job's config_yaml (a trainer config) and kind.
    std::string config_yaml;
    v1::JobKind kind = v1::JOB_KIND_TOKENIZER;
    // Append a comment with the job's number, so no two submitted configs are equal (no cache
    // of verdicts can answer for another job).
    bool distinct_configs = true;
    // Watch each job until it ends, then GetJob it.
    bool watch = true;
    // Watches open at once; a job submitted beyond that is not watched.
    int max_watches = 2000;
    std::string run_id = "bench";
    absl::Duration rpc_deadline = absl::Seconds(30);
  };

  // `recorder` and `measuring` are borrowed and must outlive this object.
  SimulatedUsers(const Endpoint& endpoint, Options options, LatencyRecorder* recorder,
                 const std::atomic<bool>* measuring);
  ~SimulatedUsers();

  // Starts one submission by user `user` (its connection is user % connections).
  void Submit(int user);

  int64_t submitted() const { return submitted_.load(); }  // answered OK
  int64_t submit_failures() const { return submit_failures_.load(); }
  int64_t in_flight() const { return in_flight_.load(); }
  // Terminal states seen by the watches, by state name.
  std::map<std::string, int64_t> Outcomes() const ABSL_LOCKS_EXCLUDED(mu_);

  // Cancels the open watches and waits until no call is in flight, or `timeout`.
  bool Shutdown(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  class Watch;

  void StartWatch(int user, const std::string& job_id, absl::Time submitted, bool measured);
  void OnWatchDone(Watch* watch, int user, const std::string& job_id, bool measured,
                   v1::JobState terminal) ABSL_LOCKS_EXCLUDED(mu_);
  void Prepare(grpc::ClientContext* context, bool with_deadline) const;

  const Endpoint endpoint_;
  const Options options_;
  LatencyRecorder* const recorder_;
  const std::atomic<bool>* const measuring_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::JobService::Stub>> stubs_;

  std::atomic<int64_t> sequence_{0};
  std::atomic<int64_t> submitted_{0};
  std::atomic<int64_t> submit_failures_{0};
  std::atomic<int64_t> in_flight_{0};
  mutable absl::Mutex mu_;
  std::set<Watch*> watches_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> outcomes_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace peco::bench

#endif  // PECO_BENCH_SIM_CLUSTER_H_
