// Whether a gRPC listen address only accepts connections from this machine.
//
// The coordinator listens on loopback by default; one that listens elsewhere without TLS sends
// bearer tokens and checkpoints in clear text, and says so when it starts (docs/SERVICE.md,
// "Security"). Pure functions; thread-safe.
#ifndef PECO_COORDINATOR_LISTEN_ADDRESS_H_
#define PECO_COORDINATOR_LISTEN_ADDRESS_H_

#include "absl/strings/string_view.h"

namespace peco::coordinator {

// True for "127.x.y.z:PORT", "localhost:PORT", "[::1]:PORT" and unix-domain sockets ("unix:...");
// false for wildcard addresses ("0.0.0.0:PORT", "[::]:PORT", ":PORT") and every other host.
bool IsLoopbackListenAddress(absl::string_view listen);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_LISTEN_ADDRESS_H_
