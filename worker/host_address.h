// The address other ranks reach this machine at (`peco-worker --host`): rank 0's rendezvous store
// and the collectives listen there, and every rank of a gang dials rank 0's. A loopback host is
// right only when every rank runs on this machine; a gang spread over machines whose rank 0
// registered 127.0.0.1 makes the remote ranks dial their own loopback and hang until the
// rendezvous timeout.
//
// Thread-safety: pure functions (LocalAddressToward asks the kernel, sends nothing).
#ifndef PECO_WORKER_HOST_ADDRESS_H_
#define PECO_WORKER_HOST_ADDRESS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco::worker {

// True for "localhost", 127.0.0.0/8 and ::1 (with or without brackets).
bool IsLoopbackHost(absl::string_view host);

// The host part of a gRPC target "host:port", "[v6]:port" or "dns:///host:port".
std::string HostOfTarget(absl::string_view target);

// This machine's address on the route to `host` (a name or an address): the source address the
// kernel picks for a datagram socket connected there (nothing is sent). InvalidArgument naming
// the host when it does not resolve or no route leads there.
absl::StatusOr<std::string> LocalAddressToward(const std::string& host);

}  // namespace peco::worker

#endif  // PECO_WORKER_HOST_ADDRESS_H_
