// TLS material for peco's gRPC endpoints, read and checked from PEM files before any channel or
// server is built, so a wrong path, a swapped file or a key that does not belong to its
// certificate is refused at start with the flag named, instead of surfacing later as an opaque
// handshake failure.
//
// Which files each program takes (docs/SERVICE.md, "TLS"):
//   coordinator: --tls_cert/--tls_key serve TLS; --tls_client_ca also asks clients for a
//                certificate, and WorkerService calls must present one signed by that CA.
//   worker, CLI: --tls_ca turns TLS on and verifies the coordinator; --tls_cert/--tls_key give
//                this side's certificate (a worker's client identity, and its own server's).
//
// This file knows nothing of gRPC (common/ does not use it); each program turns TlsMaterial into
// its grpc credentials in a few lines. Thread-safety: pure functions.
#ifndef PECO_COMMON_TLS_FILES_H_
#define PECO_COMMON_TLS_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace peco {

// Paths as given on the command line; empty means not given.
struct TlsFiles {
  std::string cert;  // PEM certificate chain of this endpoint, leaf first
  std::string key;   // PEM private key of `cert`
  std::string ca;    // PEM certificates that verify the peer

  // The flag names used in error messages ("--tls_cert" by default).
  std::string cert_flag = "--tls_cert";
  std::string key_flag = "--tls_key";
  std::string ca_flag = "--tls_ca";

  bool empty() const { return cert.empty() && key.empty() && ca.empty(); }
  bool has_identity() const { return !cert.empty(); }

  // InvalidArgument when only one of cert and key is given.
  absl::Status Validate() const;
};

// The PEM texts, checked: each certificate file holds at least one certificate, the key parses
// and matches the first certificate of `cert`. Empty strings for files that were not given.
struct TlsMaterial {
  std::string cert_chain;
  std::string private_key;
  std::string root_certs;
};

// Reads and checks `files` (Validate() first). Errors name the flag and the path: NotFound or
// PermissionDenied when a file cannot be read, InvalidArgument when it holds no PEM certificate
// or key, or when the key does not match the certificate.
absl::StatusOr<TlsMaterial> LoadTlsFiles(const TlsFiles& files);

}  // namespace peco

#endif  // PECO_COMMON_TLS_FILES_H_
