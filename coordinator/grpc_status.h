// The one place where absl::Status becomes grpc::Status on the coordinator's RPC boundary. The
// canonical code and the message (which names the field or file) carry over unchanged.
// Thread-safety: a pure function.
#ifndef PECO_COORDINATOR_GRPC_STATUS_H_
#define PECO_COORDINATOR_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace peco::coordinator {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbering.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_GRPC_STATUS_H_
