// Small file-system helpers with absl::Status errors that name the path. Failed system calls
// map to canonical codes: ResourceExhausted for a full disk or quota (ENOSPC, EDQUOT, EFBIG),
// PermissionDenied for EACCES, EPERM and EROFS, Internal otherwise.
//
// Durability: WriteFileAtomic writes to a temporary sibling, fsyncs it, renames it over the
// target and fsyncs the directory, so a reader sees the old or the new content, never a mix.
// Thread-safe as far as the file system is: distinct paths may be used concurrently.
#ifndef PECO_COMMON_FILE_UTIL_H_
#define PECO_COMMON_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco {

// The Status of a failed system call on `path` with errno `error`, mapped as the file comment
// says; the message is "<what> <path>: <strerror>".
absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int error);

// Up to `size` bytes of the open file `fd` from `offset` (fewer only at its end), retrying
// interrupted reads; `path` names the file in errors.
absl::StatusOr<std::string> ReadFileRange(int fd, const std::string& path, int64_t offset,
                                          int64_t size);

// Whole content of a file. NotFound when it does not exist, Internal on a read error.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `data` to `path` (not atomic, but fsynced before returning); a file it creates gets
// permissions `mode` (before the umask), an existing one keeps its own.
absl::Status WriteFileSynced(const std::string& path, absl::string_view data, mode_t mode = 0644);

// Atomically replaces `path` with `data` (see the file comment); the new file has permissions
// `mode` (before the umask) from its creation on, so a secret is never readable by others.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode = 0644);

// fsyncs a directory so that renames and creations inside it are durable.
absl::Status FsyncDirectory(const std::string& dir);

// fsyncs an existing file.
absl::Status FsyncFile(const std::string& path);

}  // namespace peco

#endif  // PECO_COMMON_FILE_UTIL_H_
