// Bearer tokens (DESIGN.md section 7): the coordinator generates a user token and a worker token
// into its data directory on first start; every JobService call must carry the user token and
// every WorkerService call the worker token, as `authorization: Bearer <token>` metadata.
//
// Thread-safety: pure functions; LoadOrCreateToken must not race with another process creating
// the same file (one coordinator owns a data directory).
#ifndef PECO_COORDINATOR_AUTH_H_
#define PECO_COORDINATOR_AUTH_H_

#include <grpcpp/security/auth_context.h>
#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco::coordinator {

// Returns the token stored in `path`, creating the file (mode 0600, 32 random bytes as hex)
// when it does not exist. Errors name the path; a file that exists but holds no token, or is
// readable by others, is refused (FailedPrecondition).
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

// Returns OK when `context` carries `authorization: Bearer <token>` (constant-time compare),
// UNAUTHENTICATED naming what was missing otherwise.
grpc::Status CheckBearerToken(const grpc::ServerContext& context, absl::string_view token);

// Returns OK when the call came over TLS from a peer whose certificate verified against the
// server's client CA (mutual TLS), UNAUTHENTICATED naming `service` otherwise.
grpc::Status CheckPeerCertificate(const grpc::ServerContext& context, absl::string_view service);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_AUTH_H_
