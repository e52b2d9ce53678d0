// The CLI's connection to the coordinator's JobService: discovery of the address and token,
// the channel, per-call metadata and deadlines, and the one place where grpc::Status becomes
// absl::Status.
//
// Discovery (docs/SERVICE.md, "Data directory and discovery"): the address comes from
// --coordinator, else $PECO_COORDINATOR, else `<data_dir>/coordinator.addr`; the token from
// --token, else $PECO_TOKEN, else `<data_dir>/user.token`; the data directory from --data_dir,
// else $PECO_DATA_DIR, else `$HOME/.local/share/peco`.
//
// Usage:
//   ASSIGN_OR_RETURN(Endpoint endpoint, ResolveEndpoint(flags, Environment::FromProcess()));
//   ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Create(endpoint, timeout));
//   std::unique_ptr<grpc::ClientContext> context = conn->UnaryContext();
//   grpc::Status status = conn->stub()->GetJob(context.get(), request, &response);
//   RETURN_IF_ERROR(conn->ToStatus(status, "GetJob job-000001"));
//
// Thread-safety: a Connection is immutable after Create and safe to share between threads (the
// stub and channel are thread-safe).
#ifndef PECO_CLI_CONNECTION_H_
#define PECO_CLI_CONNECTION_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls_files.h"
#include "grpcpp/grpcpp.h"
#include "peco/v1/job_service.grpc.pb.h"

namespace peco::cli {

// The environment variables discovery reads; FromProcess() takes them from getenv, tests fill
// the fields directly. Empty means unset.
struct Environment {
  std::string coordinator;  // $PECO_COORDINATOR
  std::string token;        // $PECO_TOKEN
  std::string data_dir;     // $PECO_DATA_DIR
  std::string home;         // $HOME
  std::string tls_ca;       // $PECO_TLS_CA
  std::string tls_cert;     // $PECO_TLS_CERT
  std::string tls_key;      // $PECO_TLS_KEY

  static Environment FromProcess();
};

// The global flags that take part in discovery. Empty means not given.
struct ConnectionFlags {
  std::string coordinator;
  std::string token;
  std::string data_dir;
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
};

// Where to connect and with which token, and where each came from (for error messages:
// "--token", "$PECO_TOKEN", "/home/u/.local/share/peco/user.token").
struct Endpoint {
  std::string address;
  std::string address_source;
  std::string token;
  std::string token_source;
  // TLS (common/tls_files.h): on when tls.ca is set (--tls_ca, else $PECO_TLS_CA); the client
  // certificate is optional (the coordinator asks for one only from workers).
  TlsFiles tls;
  std::string tls_server_name;
};

// Returns the data directory discovery uses (see the file comment).
std::string ResolveDataDir(const ConnectionFlags& flags, const Environment& env);

// Resolves the address, the token and the TLS files. FailedPrecondition naming every place that was
// tried when either is missing (the coordinator has not been started, or another data dir is
// meant); Internal when a file exists but cannot be read. File contents are trimmed of whitespace.
absl::StatusOr<Endpoint> ResolveEndpoint(const ConnectionFlags& flags, const Environment& env);

// Maps a gRPC status to an absl::Status with the same code, prefixed with `what` (the call and
// its subject: "GetJob job-000001"). OK maps to OK.
absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view what);

class Connection {
 public:
  // Creates the channel to `endpoint.address` (TLS when endpoint.tls.ca is set, else
  // plaintext: the coordinator listens on loopback by default) with a 16 MiB receive limit and a
  // retry policy that repeats calls refused with UNAVAILABLE (SubmitJob is safe to repeat because
  // of its client_request_id; ResumeJob is not retried). `timeout` is the deadline of unary calls.
  // InvalidArgument for an empty address or token, or a timeout <= 0; LoadTlsFiles' errors for TLS
  // files that cannot be used.
  static absl::StatusOr<std::unique_ptr<Connection>> Create(const Endpoint& endpoint,
                                                            absl::Duration timeout);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The JobService stub (owned by this connection).
  v1::JobService::StubInterface* stub() const { return stub_.get(); }

  // A context for a unary call: bearer token and a deadline `timeout` from now.
  std::unique_ptr<grpc::ClientContext> UnaryContext() const;

  // A context for a server stream (WatchJob, DownloadCheckpoint): bearer token, no deadline (a
  // watch lasts as long as the job); the channel's connection errors still end it.
  std::unique_ptr<grpc::ClientContext> StreamContext() const;

  // FromGrpcStatus, plus a hint naming the flag or file to check for UNAVAILABLE (the address),
  // UNAUTHENTICATED (the token) and DEADLINE_EXCEEDED (--timeout).
  absl::Status ToStatus(const grpc::Status& status, absl::string_view what) const;

  const Endpoint& endpoint() const { return endpoint_; }
  absl::Duration timeout() const { return timeout_; }

 private:
  Connection(Endpoint endpoint, absl::Duration timeout, std::shared_ptr<grpc::Channel> channel);

  const Endpoint endpoint_;
  const absl::Duration timeout_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::JobService::StubInterface> stub_;
};

}  // namespace peco::cli

#endif  // PECO_CLI_CONNECTION_H_
