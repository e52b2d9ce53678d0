#include "worker/checkpoint_link.h"

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_manifest.h"
#include "common/status_macros.h"

namespace peco::worker {
namespace fs = std::filesystem;

absl::Status LinkCheckpoint(const std::string& src, const std::string& dest) {
  ASSIGN_OR_RETURN(const Manifest entries, ReadManifest(src));
  std::error_code error;
  if (fs::exists(dest, error)) {
    return absl::AlreadyExistsError(absl::StrCat("checkpoint copy ", dest, " already exists"));
  }
  fs::create_directories(dest, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot create ", dest, ": ", error.message()));
  }
  std::vector<std::string> names;
  for (const ManifestEntry& entry : entries) names.push_back(entry.name);
  names.push_back(kManifestFileName);
  for (const std::string& name : names) {
    const fs::path from = fs::path(src) / name;
    const fs::path to = fs::path(dest) / name;
    fs::create_hard_link(from, to, error);
    // A link across file systems (EXDEV) or on one without links falls back to a copy.
    if (error && error != std::errc::no_such_file_or_directory) {
      error.clear();
      fs::copy_file(from, to, error);
    }
    if (error) {
      const bool gone = error == std::errc::no_such_file_or_directory;
      std::error_code ignored;
      fs::remove_all(dest, ignored);
      const std::string message =
          absl::StrCat("cannot link ", from.string(), " to ", to.string(), ": ", error.message());
      return gone ? absl::NotFoundError(message) : absl::InternalError(message);
    }
  }
  return absl::OkStatus();
}

}  // namespace peco::worker
