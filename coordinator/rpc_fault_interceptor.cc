#include "coordinator/rpc_fault_interceptor.h"

#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace peco::coordinator {
namespace {

using grpc::experimental::InterceptionHookPoints;

class RpcFaultInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcFaultInterceptor(std::string method, RpcLoss loss) : method_(std::move(method)), loss_(loss) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (loss_ == RpcLoss::kRequest &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      // Without its token the handler refuses the call before it does anything.
      methods->GetRecvInitialMetadata()->erase("authorization");
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status answer = methods->GetSendStatus();
      std::fprintf(stderr, "peco-coordinator: RPC FAULT INJECTION: %s %s (it was %s)\n",
                   method_.c_str(),
                   loss_ == RpcLoss::kRequest ? "request dropped" : "answer dropped",
                   answer.ok() ? "OK" : answer.error_message().c_str());
      methods->ModifySendStatus(
          grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       absl::StrCat("injected fault: the ", method_,
                                    loss_ == RpcLoss::kRequest
                                        ? " request was lost"
                                        : " answer was lost after the coordinator acted")));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  const RpcLoss loss_;
};

}  // namespace

const std::vector<std::string>& CoordinatorRpcMethods() {
  static const auto* methods = new std::vector<std::string>{
      // JobService
      "SubmitJob", "GetJob", "ListJobs", "CancelJob", "ResumeJob", "WatchJob", "ListCheckpoints",
      "DownloadCheckpoint", "ListWorkers", "StreamLogs",
      // WorkerService
      "Register", "Heartbeat", "ReportProgress", "UploadCheckpoint", "FetchCheckpoint"};
  return *methods;
}

grpc::experimental::Interceptor* RpcFaultInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  // "/peco.v1.JobService/SubmitJob" -> "SubmitJob"; health checks and reflection never match.
  absl::string_view full = info->method() == nullptr ? "" : info->method();
  if (!absl::StartsWith(full, "/peco.v1.")) return nullptr;
  const std::string method(full.substr(full.rfind('/') + 1));
  const RpcLoss loss = plan_->Next(method);
  if (loss == RpcLoss::kNone) return nullptr;
  return new RpcFaultInterceptor(method, loss);
}

}  // namespace peco::coordinator
