#include "coordinator/auth.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "coordinator/job_store.h"

namespace peco::coordinator {
namespace {

constexpr size_t kMaxNameLength = 64;

absl::StatusOr<std::string> NewRandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("generating a token: the random generator failed");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::Status CheckName(absl::string_view name) {
  const bool valid_chars = std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (name.empty() || name.size() > kMaxNameLength || !valid_chars) {
    return absl::InvalidArgumentError(
        absl::StrCat("--name: expected 1 to 64 of A-Z a-z 0-9 . _ -, got '", name, "'"));
  }
  if (name == kAdminUser) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--name: '", name, "' is the primary user token's user name; issue --role admin under ",
        "a person's name instead"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

absl::StatusOr<Role> ParseRole(absl::string_view name) {
  if (name == "user") return Role::kUser;
  if (name == "worker") return Role::kWorker;
  if (name == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("--role: expected user, worker or admin, got '", name, "'"));
}

std::string Caller::user_name() const { return name.empty() ? std::string(kAdminUser) : name; }

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
  absl::StatusOr<std::string> token = NewRandomToken();
  if (!token.ok()) return token.status();
  if (absl::Status written = WriteFileAtomic(path, *token + "\n", 0600); !written.ok()) {
    return written;
  }
  return token;
}

absl::StatusOr<std::vector<IssuedToken>> ParseIssuedTokens(absl::string_view text,
                                                           absl::string_view path) {
  std::vector<IssuedToken> tokens;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":", line_number, ": ", why,
          " (expected '<name> <user|worker|admin> <RFC 3339 expiry|never> <sha256 hex>')"));
    };
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() != 4) return bad("four fields");
    IssuedToken token;
    token.name = std::string(fields[0]);
    if (!CheckName(token.name).ok()) return bad("a bad name");
    absl::StatusOr<Role> role = ParseRole(fields[1]);
    if (!role.ok()) return bad("a bad role");
    token.role = *role;
    if (fields[2] != "never") {
      std::string error;
      if (!absl::ParseTime(absl::RFC3339_full, fields[2], &token.expires, &error)) {
        return bad(absl::StrCat("a bad expiry: ", error));
      }
    }
    token.sha256 = std::string(fields[3]);
    const bool hex = std::all_of(token.sha256.begin(), token.sha256.end(), [](char c) {
      return absl::ascii_isxdigit(static_cast<unsigned char>(c)) && !absl::ascii_isupper(c);
    });
    if (token.sha256.size() != 64 || !hex) return bad("a bad digest");
    for (const IssuedToken& other : tokens) {
      if (other.name == token.name) return bad(absl::StrCat("the name '", token.name, "' twice"));
    }
    tokens.push_back(std::move(token));
  }
  return tokens;
}

std::string FormatIssuedTokens(const std::vector<IssuedToken>& tokens) {
  std::string text =
      "# peco issued tokens: <name> <role> <expiry> <sha256 of the token>. Managed with\n"
      "# `peco-coordinator tokens issue|revoke|list`; the tokens themselves are not kept.\n";
  for (const IssuedToken& token : tokens) {
    absl::StrAppend(&text, token.name, " ", RoleName(token.role), " ",
                    token.expires == absl::InfiniteFuture()
                        ? "never"
                        : absl::FormatTime(absl::RFC3339_sec, token.expires, absl::UTCTimeZone()),
                    " ", token.sha256, "\n");
  }
  return text;
}

absl::StatusOr<std::vector<IssuedToken>> ReadIssuedTokens(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (absl::IsNotFound(text.status())) return std::vector<IssuedToken>();
  if (!text.ok()) return text.status();
  return ParseIssuedTokens(*text, path);
}

absl::StatusOr<std::string> IssueToken(const std::string& path, const std::string& name, Role role,
                                       absl::Duration ttl, const Clock& clock) {
  if (absl::Status valid = CheckName(name); !valid.ok()) return valid;
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--ttl: expected a duration > 0 or 'inf', got ", absl::FormatDuration(ttl)));
  }
  absl::StatusOr<std::vector<IssuedToken>> tokens = ReadIssuedTokens(path);
  if (!tokens.ok()) return tokens.status();
  for (const IssuedToken& token : *tokens) {
    if (token.name == name) {
      return absl::AlreadyExistsError(absl::StrCat("a token named '", name, "' exists in ", path,
                                                   " (revoke it first or pick another name)"));
    }
  }
  absl::StatusOr<std::string> secret = NewRandomToken();
  if (!secret.ok()) return secret.status();
  IssuedToken token;
  token.name = name;
  token.role = role;
  token.expires = ttl == absl::InfiniteDuration()
                      ? absl::InfiniteFuture()
                      : absl::FromUnixSeconds(absl::ToUnixSeconds(clock.Now() + ttl));
  token.sha256 = Sha256Hex(*secret);
  tokens->push_back(std::move(token));
  if (absl::Status written = WriteFileAtomic(path, FormatIssuedTokens(*tokens), 0600);
      !written.ok()) {
    return written;
  }
  return secret;
}

absl::Status RevokeToken(const std::string& path, const std::string& name) {
  absl::StatusOr<std::vector<IssuedToken>> tokens = ReadIssuedTokens(path);
  if (!tokens.ok()) return tokens.status();
  auto it = std::find_if(tokens->begin(), tokens->end(),
                         [&](const IssuedToken& token) { return token.name == name; });
  if (it == tokens->end()) {
    return absl::NotFoundError(absl::StrCat("no token named '", name, "' in ", path));
  }
  tokens->erase(it);
  return WriteFileAtomic(path, FormatIssuedTokens(*tokens), 0600);
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

std::string PeerCommonName(const grpc::ServerContext& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  std::vector<grpc::string_ref> names = auth->FindPropertyValues("x509_common_name");
  if (names.size() != 1) return "";
  return std::string(names[0].data(), names[0].size());
}

TokenRegistry::TokenRegistry(Options options) : options_(std::move(options)) {}

void TokenRegistry::ReloadIfChanged() const {
  if (options_.issued_path.empty()) return;
  struct stat info;
  if (::stat(options_.issued_path.c_str(), &info) != 0) {
    issued_.clear();  // revoked by removing the file
    file_inode_ = 0;
    file_size_ = -1;
    file_mtime_ns_ = -1;
    return;
  }
  const int64_t mtime_ns = int64_t{info.st_mtim.tv_sec} * 1000000000 + info.st_mtim.tv_nsec;
  if (info.st_ino == file_inode_ && info.st_size == file_size_ && mtime_ns == file_mtime_ns_) {
    return;
  }
  file_inode_ = info.st_ino;
  file_size_ = info.st_size;
  file_mtime_ns_ = mtime_ns;
  absl::StatusOr<std::vector<IssuedToken>> tokens = ReadIssuedTokens(options_.issued_path);
  if (!tokens.ok()) {
    std::fprintf(stderr, "peco-coordinator: keeping the previous issued tokens: %s\n",
                 std::string(tokens.status().message()).c_str());
    return;
  }
  issued_ = *std::move(tokens);
}

absl::StatusOr<Caller> TokenRegistry::Identify(absl::string_view token, Role role) const {
  if (role == Role::kAdmin) {
    return absl::InternalError("TokenRegistry::Identify: ask for kUser (admins call JobService)");
  }
  const std::string& own = role == Role::kUser ? options_.user_token : options_.worker_token;
  const std::string& other = role == Role::kUser ? options_.worker_token : options_.user_token;
  // Every call passes here: the message is built only for a refusal.
  auto wrong_role = [role] {
    return absl::StrCat("a ", RoleName(role == Role::kUser ? Role::kWorker : Role::kUser),
                        " token cannot call the ", RoleName(role), " API");
  };
  // The primary user token is the administrator's.
  if (ConstantTimeEquals(token, own)) {
    return Caller{role == Role::kUser ? Role::kAdmin : role, ""};
  }
  if (ConstantTimeEquals(token, other)) return absl::PermissionDeniedError(wrong_role());

  const std::string digest = Sha256Hex(token);
  absl::MutexLock lock(&mu_);
  ReloadIfChanged();
  for (const IssuedToken& issued : issued_) {
    if (!ConstantTimeEquals(digest, issued.sha256)) continue;
    if (options_.clock->Now() >= issued.expires) {
      return absl::UnauthenticatedError(
          absl::StrCat("token '", issued.name, "' expired at ",
                       absl::FormatTime(absl::RFC3339_sec, issued.expires, absl::UTCTimeZone())));
    }
    const Role service = issued.role == Role::kAdmin ? Role::kUser : issued.role;
    if (service != role) {
      return absl::PermissionDeniedError(
          absl::StrCat(wrong_role(), " (token '", issued.name, "')"));
    }
    return Caller{issued.role, issued.name};
  }
  return absl::UnauthenticatedError("wrong token");
}

grpc::Status TokenRegistry::Authorize(const grpc::ServerContext& context, Role role,
                                      Caller* caller) const {
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
  absl::StatusOr<Caller> checked = Identify(value, role);
  if (checked.ok()) {
    if (caller != nullptr) *caller = *std::move(checked);
    return grpc::Status::OK;
  }
  return grpc::Status(static_cast<grpc::StatusCode>(checked.status().code()),
                      std::string(checked.status().message()));
}

}  // namespace peco::coordinator
