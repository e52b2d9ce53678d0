#include "cli/connection.h"

#include <stdlib.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace peco::cli {
namespace {

constexpr int kMaxReceiveBytes = 16 << 20;

// Retries calls refused with UNAVAILABLE (the coordinator restarting, a connection reset).
// gRPC only retries a call before any response message arrived, so a retried stream never
// repeats events. ResumeJob is left out: a repeated resume could start a second attempt.
constexpr char kServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [
      {"service": "peco.v1.JobService", "method": "SubmitJob"},
      {"service": "peco.v1.JobService", "method": "GetJob"},
      {"service": "peco.v1.JobService", "method": "ListJobs"},
      {"service": "peco.v1.JobService", "method": "CancelJob"},
      {"service": "peco.v1.JobService", "method": "WatchJob"},
      {"service": "peco.v1.JobService", "method": "ListCheckpoints"},
      {"service": "peco.v1.JobService", "method": "DownloadCheckpoint"},
      {"service": "peco.v1.JobService", "method": "ListWorkers"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.2s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

std::string GetEnv(const char* name) {
  const char* value = ::getenv(name);
  return value == nullptr ? "" : value;
}

// Reads a one-line file (address or token). NotFound passes through so the caller can name the
// other places it tried; other errors become Internal naming the path.
absl::StatusOr<std::string> ReadTrimmed(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

}  // namespace

Environment Environment::FromProcess() {
  Environment env;
  env.coordinator = GetEnv("PECO_COORDINATOR");
  env.token = GetEnv("PECO_TOKEN");
  env.data_dir = GetEnv("PECO_DATA_DIR");
  env.home = GetEnv("HOME");
  env.tls_ca = GetEnv("PECO_TLS_CA");
  env.tls_cert = GetEnv("PECO_TLS_CERT");
  env.tls_key = GetEnv("PECO_TLS_KEY");
  return env;
}

std::string ResolveDataDir(const ConnectionFlags& flags, const Environment& env) {
  if (!flags.data_dir.empty()) return flags.data_dir;
  if (!env.data_dir.empty()) return env.data_dir;
  return absl::StrCat(env.home.empty() ? "." : env.home, "/.local/share/peco");
}

absl::StatusOr<Endpoint> ResolveEndpoint(const ConnectionFlags& flags, const Environment& env) {
  Endpoint endpoint;
  const std::string data_dir = ResolveDataDir(flags, env);

  if (!flags.coordinator.empty()) {
    endpoint.address = flags.coordinator;
    endpoint.address_source = "--coordinator";
  } else if (!env.coordinator.empty()) {
    endpoint.address = env.coordinator;
    endpoint.address_source = "$PECO_COORDINATOR";
  } else {
    const std::string path = absl::StrCat(data_dir, "/coordinator.addr");
    absl::StatusOr<std::string> address = ReadTrimmed(path);
    if (absl::IsNotFound(address.status()) || (address.ok() && address->empty())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "no coordinator address: --coordinator and $PECO_COORDINATOR are unset and ", path,
          " does not exist or is empty (is peco-coordinator running with this data dir? "
          "--data_dir / $PECO_DATA_DIR choose another)"));
    }
    if (!address.ok()) {
      return absl::InternalError(
          absl::StrCat("reading coordinator address: ", address.status().message()));
    }
    endpoint.address = *address;
    endpoint.address_source = path;
  }

  if (!flags.token.empty()) {
    endpoint.token = flags.token;
    endpoint.token_source = "--token";
  } else if (!env.token.empty()) {
    endpoint.token = env.token;
    endpoint.token_source = "$PECO_TOKEN";
  } else {
    const std::string path = absl::StrCat(data_dir, "/user.token");
    absl::StatusOr<std::string> token = ReadTrimmed(path);
    if (absl::IsNotFound(token.status()) || (token.ok() && token->empty())) {
      return absl::FailedPreconditionError(
          absl::StrCat("no token: --token and $PECO_TOKEN are unset and ", path,
                       " does not exist or is empty (the coordinator writes it on first start)"));
    }
    if (!token.ok()) {
      return absl::InternalError(absl::StrCat("reading token: ", token.status().message()));
    }
    endpoint.token = *token;
    endpoint.token_source = path;
  }
  endpoint.tls.ca = flags.tls_ca.empty() ? env.tls_ca : flags.tls_ca;
  endpoint.tls.cert = flags.tls_cert.empty() ? env.tls_cert : flags.tls_cert;
  endpoint.tls.key = flags.tls_key.empty() ? env.tls_key : flags.tls_key;
  endpoint.tls_server_name = flags.tls_server_name;
  if (endpoint.tls.has_identity() && endpoint.tls.ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert: needs --tls_ca (or $PECO_TLS_CA), the CA that verifies the coordinator");
  }
  return endpoint;
}

absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numeric values.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, ": ", status.error_message()));
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(const Endpoint& endpoint,
                                                               absl::Duration timeout) {
  if (endpoint.address.empty()) {
    return absl::InvalidArgumentError("coordinator address is empty");
  }
  if (endpoint.token.empty()) return absl::InvalidArgumentError("token is empty");
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: expected a duration > 0, got ", absl::FormatDuration(timeout)));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  args.SetServiceConfigJSON(kServiceConfig);
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!endpoint.tls.ca.empty()) {
    absl::StatusOr<TlsMaterial> tls = LoadTlsFiles(endpoint.tls);
    if (!tls.ok()) return tls.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = tls->root_certs;
    ssl.pem_cert_chain = tls->cert_chain;
    ssl.pem_private_key = tls->private_key;
    credentials = grpc::SslCredentials(ssl);
    if (!endpoint.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(endpoint.tls_server_name);
    }
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(endpoint.address, credentials, args);
  return std::unique_ptr<Connection>(new Connection(endpoint, timeout, std::move(channel)));
}

Connection::Connection(Endpoint endpoint, absl::Duration timeout,
                       std::shared_ptr<grpc::Channel> channel)
    : endpoint_(std::move(endpoint)),
      timeout_(timeout),
      channel_(std::move(channel)),
      stub_(v1::JobService::NewStub(channel_)) {}

std::unique_ptr<grpc::ClientContext> Connection::StreamContext() const {
  auto context = std::make_unique<grpc::ClientContext>();
  // Call credentials need a secure channel; plain metadata works on both.
  context->AddMetadata("authorization", absl::StrCat("Bearer ", endpoint_.token));
  return context;
}

std::unique_ptr<grpc::ClientContext> Connection::UnaryContext() const {
  std::unique_ptr<grpc::ClientContext> context = StreamContext();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  return context;
}

absl::Status Connection::ToStatus(const grpc::Status& status, absl::string_view what) const {
  absl::Status result = FromGrpcStatus(status, what);
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return absl::Status(
          result.code(),
          absl::StrCat(result.message(), " (coordinator ", endpoint_.address, " from ",
                       endpoint_.address_source,
                       endpoint_.tls.ca.empty()
                           ? "; if it serves TLS, give --tls_ca)"
                           : absl::StrCat("; TLS verified by --tls_ca ", endpoint_.tls.ca, ")")));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::Status(result.code(), absl::StrCat(result.message(), " (token from ",
                                                      endpoint_.token_source, ")"));
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::Status(result.code(),
                          absl::StrCat(result.message(), " (no answer within --timeout=",
                                       absl::FormatDuration(timeout_), ")"));
    default:
      return result;
  }
}

}  // namespace peco::cli
