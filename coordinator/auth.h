// Who may call the coordinator (DESIGN.md section 7, docs/SERVICE.md "Security").
//
// Every JobService call carries a user token and every WorkerService call a worker token, as
// `authorization: Bearer <token>` metadata. Two kinds of token exist:
//   - the primary tokens, generated on first start into `<data_dir>/user.token` and
//     `<data_dir>/worker.token` (mode 0600), where the CLI and a local worker find them;
//   - issued tokens, one per person or machine, with a role, a name and an optional expiry, made
//     and revoked with `peco-coordinator tokens issue|revoke|list`. Only their SHA-256 is kept,
//     in `<data_dir>/issued_tokens` (mode 0600); a running coordinator picks up changes to that
//     file at the next call.
// Tokens are compared in constant time and never logged.
//
// Thread-safety: the free functions are pure or touch only their files (one coordinator and
// its admin commands own a data directory); TokenRegistry is thread-safe.
#ifndef PECO_COORDINATOR_AUTH_H_
#define PECO_COORDINATOR_AUTH_H_

#include <grpcpp/security/auth_context.h>
#include <grpcpp/server_context.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace peco::coordinator {

// A token's role. User and admin tokens call JobService: a user sees and acts on the jobs it
// submitted, an admin on every job. Worker tokens call WorkerService.
enum class Role { kUser, kWorker, kAdmin };

// "user" | "worker" | "admin".
absl::string_view RoleName(Role role);
// InvalidArgument naming --role for anything but "user", "worker" or "admin".
absl::StatusOr<Role> ParseRole(absl::string_view name);

// Returns the token stored in `path`, creating the file (mode 0600, 32 random bytes as hex)
// when it does not exist. Errors name the path; a file that exists but holds no token, or is
// readable by others, is refused (FailedPrecondition).
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path);

// An issued token as stored: never the token itself.
struct IssuedToken {
  // [A-Za-z0-9._-], 1..64 characters, unique in the file, not "admin" (the primary user token's
  // user name, kAdminUser)
  std::string name;
  Role role = Role::kUser;
  absl::Time expires = absl::InfiniteFuture();
  std::string sha256;  // lowercase hex digest of the token
};

// The file format: one `<name> <role> <expiry RFC 3339 | never> <sha256>` line per token, '#'
// comments. InvalidArgument naming `path` and the line for anything else.
absl::StatusOr<std::vector<IssuedToken>> ParseIssuedTokens(absl::string_view text,
                                                           absl::string_view path);
std::string FormatIssuedTokens(const std::vector<IssuedToken>& tokens);
// The tokens in `path`; none when the file does not exist.
absl::StatusOr<std::vector<IssuedToken>> ReadIssuedTokens(const std::string& path);

// Adds a token named `name` with `role`, valid for `ttl` from now (InfiniteDuration: no expiry),
// to `path` (created 0600 if missing) and returns the token, which is shown once and kept
// nowhere. InvalidArgument for a bad name or a ttl <= 0, AlreadyExists for a name in use.
absl::StatusOr<std::string> IssueToken(const std::string& path, const std::string& name, Role role,
                                       absl::Duration ttl, const Clock& clock);
// Removes the token named `name`; NotFound when there is none.
absl::Status RevokeToken(const std::string& path, const std::string& name);

// Returns OK when the call came over TLS from a peer whose certificate verified against the
// server's client CA (mutual TLS), UNAUTHENTICATED naming `service` otherwise.
grpc::Status CheckPeerCertificate(const grpc::ServerContext& context, absl::string_view service);

// The common name (CN) of the verified client certificate of the call; empty when there is none.
std::string PeerCommonName(const grpc::ServerContext& context);

// Who is calling, once the token checked out.
struct Caller {
  // The token's role; the primary user token is an admin.
  Role role = Role::kUser;
  // The issued token's name; empty for a primary token.
  std::string name;
  // The user a JobService call acts as (a job's owner): the token's name, or kAdminUser
  // ("admin") for the primary user token.
  std::string user_name() const;
  bool admin() const { return role == Role::kAdmin; }
  // A worker's identity: an issued worker token is bound to the worker id equal to its name
  // (docs/SERVICE.md "Security": every WorkerService call of such a worker is checked against
  // the placement). Empty for the primary worker token, which is trusted as any worker (a
  // single-machine or bootstrap credential), and for users.
  std::string bound_worker_id() const { return role == Role::kWorker ? name : std::string(); }
};

class TokenRegistry {
 public:
  struct Options {
    std::string user_token;  // the primary tokens (required, at least 16 characters)
    std::string worker_token;
    std::string issued_path;                // issued tokens; empty: none
    const Clock* clock = RealClock::Get();  // borrowed; decides expiry
  };

  explicit TokenRegistry(Options options);
  TokenRegistry(const TokenRegistry&) = delete;
  TokenRegistry& operator=(const TokenRegistry&) = delete;

  // OK when `token` is a primary or live issued token of `role` (kUser: user and admin tokens
  // both call JobService; asking for kAdmin is not allowed). UNAUTHENTICATED for an
  // unknown, revoked or expired token (an expired one is named, with its expiry);
  // PERMISSION_DENIED for a valid token of the other role. An issued-tokens file that changed
  // is read again first; one that no longer parses keeps the previous tokens (logged once).
  absl::Status Check(absl::string_view token, Role role) const {
    return Identify(token, role).status();
  }
  // Check() returning who the token belongs to.
  absl::StatusOr<Caller> Identify(absl::string_view token, Role role) const;

  // Check() on the call's `authorization: Bearer` metadata; UNAUTHENTICATED when it is missing
  // or malformed. Maps to grpc::Status. When `caller` is not null it receives the identity.
  grpc::Status Authorize(const grpc::ServerContext& context, Role role,
                         Caller* caller = nullptr) const;

 private:
  void ReloadIfChanged() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  mutable std::vector<IssuedToken> issued_ ABSL_GUARDED_BY(mu_);
  // What the issued-tokens file looked like when last read (inode, size, mtime).
  mutable ino_t file_inode_ ABSL_GUARDED_BY(mu_) = 0;
  mutable off_t file_size_ ABSL_GUARDED_BY(mu_) = -1;
  mutable int64_t file_mtime_ns_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_AUTH_H_
