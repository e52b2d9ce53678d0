// FaultyCoordinatorClient: a CoordinatorClient decorator that loses chosen calls, for reliability
// tests of the worker and the coordinator against real processes (docs/RELIABILITY.md). The plan
// is common/rpc_fault_plan.h's; `request` losses never call the coordinator, `response` losses
// call it and hide its answer. peco-worker installs it when given --rpc_faults (or
// PECO_RPC_FAULTS); off otherwise.
//
// Ownership: borrows `inner`, which must outlive the decorator. Thread-safe.
#ifndef PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_
#define PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/rpc_fault_plan.h"
#include "worker/coordinator_client.h"

namespace peco::worker {

// The methods a worker's plan may name: Register, Heartbeat, ReportProgress,
// UploadCheckpoint, FetchCheckpoint.
const std::vector<std::string>& WorkerRpcMethods();

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
  int lost(const std::string& method) const { return plan_.lost(method); }

 private:
  // Runs `call` unless the request is lost; hides its answer if the response is.
  template <typename T, typename Call>
  absl::StatusOr<T> Apply(const std::string& method, Call call);

  CoordinatorClient* const inner_;
  RpcFaultPlan plan_;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_FAULTY_COORDINATOR_CLIENT_H_
