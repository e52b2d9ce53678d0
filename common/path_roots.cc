#include "common/path_roots.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace peco {
namespace {

namespace fs = std::filesystem;

// realpath(3) of `path`, or errno.
absl::StatusOr<std::string> Canonical(const std::string& path, int* error) {
  std::unique_ptr<char, decltype(&::free)> resolved(::realpath(path.c_str(), nullptr), &::free);
  if (resolved == nullptr) {
    *error = errno;
    return absl::UnknownError("realpath");
  }
  return std::string(resolved.get());
}

}  // namespace

bool PathIsUnder(absl::string_view path, absl::string_view root) {
  const fs::path p = fs::path(std::string(path)).lexically_normal();
  const fs::path r = fs::path(std::string(root)).lexically_normal();
  if (!p.is_absolute() || !r.is_absolute()) return false;
  auto pi = p.begin();
  for (auto ri = r.begin(); ri != r.end(); ++ri) {
    if (ri->empty()) continue;  // the trailing "" of "/a/b/"
    if (pi == p.end() || *pi != *ri) return false;
    ++pi;
  }
  return true;
}

absl::StatusOr<std::string> ResolvePathUnderRoots(absl::string_view field, const std::string& path,
                                                  const std::vector<std::string>& roots) {
  if (!fs::path(path).is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", path, "' must be an absolute path"));
  }
  int error = 0;
  absl::StatusOr<std::string> resolved = Canonical(path, &error);
  if (!resolved.ok()) {
    if (error == ENOENT || error == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(field, ": '", path, "' does not exist"));
    }
    if (error == ELOOP) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": '", path, "' cannot be resolved: a loop of symbolic links"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", path, "' cannot be resolved: ", strerror(error)));
  }
  for (const std::string& root : roots) {
    int root_error = 0;
    absl::StatusOr<std::string> canonical_root = Canonical(root, &root_error);
    if (canonical_root.ok() && PathIsUnder(*resolved, *canonical_root)) return resolved;
  }
  return absl::InvalidArgumentError(absl::StrCat(field, ": '", path, "' resolves to '", *resolved,
                                                 "', outside the allowed roots (",
                                                 absl::StrJoin(roots, ", "), ")"));
}

}  // namespace peco
