// FaultyCoordinatorClient: a CoordinatorClient decorator that loses chosen calls, for reliability
// tests of the worker and the coordinator against real processes (docs/RELIABILITY.md).
//
// A plan names, per method, what is lost and for how many calls, e.g.
//   "ReportProgress:response:3,Heartbeat:request:2,UploadCheckpoint:response:1"
// `request`: the call never reaches the coordinator (the decorator answers UNAVAILABLE without
// calling it). `response`: the coordinator receives and acts on the call, then the answer is
// lost (the decorator returns UNAVAILABLE instead), so the worker retries something that already
// happened. The first N calls of that method are affected, the later ones pass. peco-worker
// installs it when given --rpc_faults (or PECO_RPC_FAULTS); off otherwise.
//
// Ownership: borrows `inner`, which must outlive the decorator. Thread-safe.
#ifndef PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_
#define PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/coordinator_client.h"

namespace peco::worker {

struct RpcFault {
  bool drop_response = false;  // false: drop the request
  int remaining = 0;           // calls still to lose
};

// Parses a plan; InvalidArgument naming the bad entry. Methods: Register, Heartbeat,
// ReportProgress, UploadCheckpoint, FetchCheckpoint.
absl::StatusOr<std::map<std::string, RpcFault>> ParseRpcFaults(const std::string& plan);

class FaultyCoordinatorClient final : public CoordinatorClient {
 public:
  FaultyCoordinatorClient(CoordinatorClient* inner, std::map<std::string, RpcFault> faults);

  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const std::vector<v1::ReportProgressRequest>& reports) override;
  absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(const v1::CheckpointHeader& header,
                                                      const std::string& dir) override;
  absl::StatusOr<v1::CheckpointInfo> FetchCheckpoint(const std::string& checkpoint_id,
                                                     const std::string& worker_id,
                                                     const std::string& dest_dir) override;

  // Calls of `method` lost so far (requests and responses).
  int lost(const std::string& method) const;

 private:
  enum class Loss { kNone, kRequest, kResponse };
  // Decides the fate of the next call of `method`, counting it.
  Loss Next(const std::string& method);
  // Runs `call` unless the request is lost; hides its answer if the response is.
  template <typename T, typename Call>
  absl::StatusOr<T> Apply(const std::string& method, Call call);

  CoordinatorClient* const inner_;
  mutable absl::Mutex mu_;
  std::map<std::string, RpcFault> faults_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::worker

#endif  // PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_
