#include "worker/faulty_coordinator_client.h"

#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace peco::worker {

absl::StatusOr<std::map<std::string, RpcFault>> ParseRpcFaults(const std::string& plan) {
  static const char* const kMethods[] = {"Register", "Heartbeat", "ReportProgress",
                                         "UploadCheckpoint", "FetchCheckpoint"};
  std::map<std::string, RpcFault> faults;
  for (absl::string_view raw : absl::StrSplit(plan, ',', absl::SkipWhitespace())) {
    const absl::string_view entry = absl::StripAsciiWhitespace(raw);
    std::vector<std::string> parts = absl::StrSplit(entry, ':');
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("rpc faults: '", entry, "': ", why,
                                                     " (expected METHOD:request|response:COUNT)"));
    };
    if (parts.size() != 3) return bad("three fields separated by ':'");
    bool known = false;
    for (const char* method : kMethods) known = known || parts[0] == method;
    if (!known) {
      return bad(
          "the method is not one of Register, Heartbeat, ReportProgress, "
          "UploadCheckpoint, FetchCheckpoint");
    }
    if (parts[1] != "request" && parts[1] != "response")
      return bad("loses a request or a response");
    RpcFault fault;
    fault.drop_response = parts[1] == "response";
    if (!absl::SimpleAtoi(parts[2], &fault.remaining) || fault.remaining < 1) {
      return bad("the count is an integer >= 1");
    }
    if (!faults.emplace(parts[0], fault).second) return bad("the method is named twice");
  }
  return faults;
}

FaultyCoordinatorClient::FaultyCoordinatorClient(CoordinatorClient* inner,
                                                 std::map<std::string, RpcFault> faults)
    : inner_(inner), faults_(std::move(faults)) {}

FaultyCoordinatorClient::Loss FaultyCoordinatorClient::Next(const std::string& method) {
  absl::MutexLock lock(&mu_);
  auto it = faults_.find(method);
  if (it == faults_.end() || it->second.remaining == 0) return Loss::kNone;
  --it->second.remaining;
  ++lost_[method];
  return it->second.drop_response ? Loss::kResponse : Loss::kRequest;
}

int FaultyCoordinatorClient::lost(const std::string& method) const {
  absl::MutexLock lock(&mu_);
  auto it = lost_.find(method);
  return it == lost_.end() ? 0 : it->second;
}

template <typename T, typename Call>
absl::StatusOr<T> FaultyCoordinatorClient::Apply(const std::string& method, Call call) {
  const Loss loss = Next(method);
  if (loss == Loss::kRequest) {
    std::fprintf(stderr, "peco-worker: RPC FAULT INJECTION: %s request dropped\n", method.c_str());
    return absl::UnavailableError(
        absl::StrCat("injected fault: the ", method, " request was lost before the coordinator"));
  }
  absl::StatusOr<T> answer = call();
  if (loss == Loss::kResponse) {
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
