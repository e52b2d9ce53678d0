// Where a job may read: its paths against the allowed roots (`--allowed_roots` of the coordinator
// and the worker, docs/SERVICE.md "Security").
//
// Two checks, on two machines:
//   - PathIsUnder, lexical: the coordinator checks a spec's paths at submit, where the files may
//     not exist (they are on the workers);
//   - ResolvePathUnderRoots, on the file system: the trainer, started by a worker with
//     `--allowed_roots`, resolves every path its config reads (symlinks and "..", loops refused)
//     and checks the resolved path, then opens that resolved path and not the original, so a
//     symlink under a root cannot lead outside it, and one changed after the check changes
//     nothing.
//
// Thread-safety: pure functions (ResolvePathUnderRoots reads the file system).
#ifndef PECO_COMMON_PATH_ROOTS_H_
#define PECO_COMMON_PATH_ROOTS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco {

// True when `path` (absolute after normalising "." and "..") lies under `root` (absolute),
// comparing whole components: "/data2" is not under "/data".
bool PathIsUnder(absl::string_view path, absl::string_view root);

// The canonical path of `path` (every symlink and "." / ".." resolved) when it lies under the
// canonical path of one of `roots`. Errors name `field` and the path: NotFound when it does not
// exist, InvalidArgument when it is relative, when resolving meets a symlink loop, or when it
// resolves outside every root (the message gives what it resolved to and the roots). Roots that
// do not exist are skipped.
absl::StatusOr<std::string> ResolvePathUnderRoots(absl::string_view field, const std::string& path,
                                                  const std::vector<std::string>& roots);

}  // namespace peco

#endif  // PECO_COMMON_PATH_ROOTS_H_
