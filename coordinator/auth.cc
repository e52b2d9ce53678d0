#include "coordinator/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace peco::coordinator {

absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) == 0) {
    if ((info.st_mode & 0077) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": the token file must not be readable by others (chmod 600)"));
    }
    absl::StatusOr<std::string> text = ReadFileToString(path);
    if (!text.ok()) return text.status();
    std::string token(absl::StripAsciiWhitespace(*text));
    if (token.size() < 16) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": expected a token of at least 16 characters"));
    }
    return token;
  }
  if (errno != ENOENT) {
    return absl::InternalError(absl::StrCat("stat ", path, ": ", std::strerror(errno)));
  }
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("generating a token: the random generator failed");
  }
  std::string token = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
  // Create it private from the first byte, then publish atomically.
  const std::string temp = absl::StrCat(path, ".tmp");
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("creating ", temp, ": ", std::strerror(errno)));
  }
  const std::string line = token + "\n";
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!written || !synced || ::rename(temp.c_str(), path.c_str()) != 0) {
    ::unlink(temp.c_str());
    return absl::InternalError(absl::StrCat("writing ", path, ": ", std::strerror(errno)));
  }
  return token;
}

grpc::Status CheckBearerToken(const grpc::ServerContext& context, absl::string_view token) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing 'authorization: Bearer <token>' metadata");
  }
  absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kPrefix = "Bearer ";
  if (!absl::StartsWith(value, kPrefix)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization metadata must be 'Bearer <token>'");
  }
  value.remove_prefix(kPrefix.size());
  if (value.size() != token.size() ||
      CRYPTO_memcmp(value.data(), token.data(), token.size()) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong token");
  }
  return grpc::Status::OK;
}

grpc::Status CheckPeerCertificate(const grpc::ServerContext& context, absl::string_view service) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat(service,
                                     " requires a client certificate signed by the coordinator's "
                                     "--tls_client_ca (give the worker --tls_cert and --tls_key)"));
  }
  return grpc::Status::OK;
}

}  // namespace peco::coordinator
