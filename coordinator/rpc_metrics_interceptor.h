// Per-RPC metrics of peco-coordinator's gRPC services, as a server interceptor, so that every
// method and every return path is counted without touching the handlers: each finished call of
// JobService or WorkerService adds to peco_rpc_server_handled_total{service, method, code} and
// peco_rpc_server_handling_seconds{service, method} (coordinator_metrics.h). Health checks and
// reflection are not counted.
//
// Ownership: the factory borrows the metrics, which must outlive the server. Thread-safety: the
// metrics are thread-safe; each interceptor belongs to one call.
#ifndef PECO_COORDINATOR_RPC_METRICS_INTERCEPTOR_H_
#define PECO_COORDINATOR_RPC_METRICS_INTERCEPTOR_H_

#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/string_view.h"
#include "coordinator/coordinator_metrics.h"

namespace peco::coordinator {

// The name of a gRPC status code as Prometheus labels carry it ("OK", "NOT_FOUND").
absl::string_view GrpcCodeName(grpc::StatusCode code);

class RpcMetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcMetricsInterceptorFactory(CoordinatorMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  CoordinatorMetrics* const metrics_;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_RPC_METRICS_INTERCEPTOR_H_
