#include "worker/faulty_coordinator_client.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"

namespace peco::worker {

const std::vector<std::string>& WorkerRpcMethods() {
  static const auto* methods = new std::vector<std::string>{
      "Register", "Heartbeat", "ReportProgress", "UploadCheckpoint", "FetchCheckpoint"};
  return *methods;
}

FaultyCoordinatorClient::FaultyCoordinatorClient(CoordinatorClient* inner,
                                                 std::map<std::string, RpcFault> faults)
    : inner_(inner), plan_(std::move(faults)) {}

template <typename T, typename Call>
absl::StatusOr<T> FaultyCoordinatorClient::Apply(const std::string& method, Call call) {
  const RpcLoss loss = plan_.Next(method);
  if (loss == RpcLoss::kRequest) {
    std::fprintf(stderr, "peco-worker: RPC FAULT INJECTION: %s request dropped\n", method.c_str());
    return absl::UnavailableError(
        absl::StrCat("injected fault: the ", method, " request was lost before the coordinator"));
  }
  absl::StatusOr<T> answer = call();
  if (loss == RpcLoss::kResponse) {
    std::fprintf(stderr, "peco-worker: RPC FAULT INJECTION: %s response dropped (it was %s)\n",
                 method.c_str(), answer.ok() ? "OK" : answer.status().ToString().c_str());
    return absl::UnavailableError(
        absl::StrCat("injected fault: the coordinator's ", method, " answer was lost"));
  }
  return answer;
}

absl::StatusOr<v1::RegisterResponse> FaultyCoordinatorClient::Register(
    const v1::RegisterRequest& request) {
  return Apply<v1::RegisterResponse>("Register", [&] { return inner_->Register(request); });
}

absl::StatusOr<v1::HeartbeatResponse> FaultyCoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  return Apply<v1::HeartbeatResponse>("Heartbeat", [&] { return inner_->Heartbeat(request); });
}

absl::StatusOr<v1::ReportProgressResponse> FaultyCoordinatorClient::ReportProgress(
    const std::vector<v1::ReportProgressRequest>& reports) {
  return Apply<v1::ReportProgressResponse>("ReportProgress",
                                           [&] { return inner_->ReportProgress(reports); });
}

absl::StatusOr<v1::CheckpointInfo> FaultyCoordinatorClient::UploadCheckpoint(
    const v1::CheckpointHeader& header, const std::string& dir) {
  return Apply<v1::CheckpointInfo>("UploadCheckpoint",
                                   [&] { return inner_->UploadCheckpoint(header, dir); });
}

absl::StatusOr<v1::CheckpointInfo> FaultyCoordinatorClient::FetchCheckpoint(
    const std::string& checkpoint_id, const std::string& worker_id, const std::string& dest_dir) {
  return Apply<v1::CheckpointInfo>("FetchCheckpoint", [&] {
    return inner_->FetchCheckpoint(checkpoint_id, worker_id, dest_dir);
  });
}

}  // namespace peco::worker
