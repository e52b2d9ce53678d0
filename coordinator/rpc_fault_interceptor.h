// Server-side RPC fault injection for peco-coordinator's --rpc_faults (plan format and meaning
// in common/rpc_fault_plan.h), as a gRPC server interceptor so that every method and every return
// path is covered without touching the handlers:
//   `request`:  the call's bearer token is removed before the handler runs, so the handler
//               refuses it before acting (every handler authenticates first); the caller sees
//               UNAVAILABLE "injected fault: ... request lost".
//   `response`: the handler runs and acts; its answer is replaced by UNAVAILABLE on the way out
//               ("injected fault: ... answer lost"), so the caller retries something that
//               already happened.
// Each lost call is logged to stderr. Off unless a plan is given.
//
// Ownership: the factory borrows the plan, which must outlive the server. Thread-safety: the
// plan is thread-safe; each interceptor belongs to one call.
#ifndef PECO_COORDINATOR_RPC_FAULT_INTERCEPTOR_H_
#define PECO_COORDINATOR_RPC_FAULT_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "common/rpc_fault_plan.h"

namespace peco::coordinator {

// The methods a coordinator plan may name: every JobService and WorkerService method.
const std::vector<std::string>& CoordinatorRpcMethods();

class RpcFaultInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcFaultInterceptorFactory(RpcFaultPlan* plan) : plan_(plan) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  RpcFaultPlan* const plan_;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_RPC_FAULT_INTERCEPTOR_H_
