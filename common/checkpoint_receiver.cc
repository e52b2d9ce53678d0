#include "common/checkpoint_receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace peco {
namespace {

namespace fs = std::filesystem;

// `dest` without a trailing separator ("out/" names "out").
fs::path WithoutTrailingSlash(const std::string& dest) {
  fs::path path = fs::path(dest).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path;
}

}  // namespace

std::string StagingDirFor(const std::string& dest) {
  const fs::path path = WithoutTrailingSlash(dest);
  return (path.parent_path() / absl::StrCat(".", path.filename().string(), ".partial")).string();
}

struct CheckpointReceiver::File {
  ~File() {
    if (fd >= 0) ::close(fd);
  }
  int fd = -1;
  std::string path;
  int64_t size = 0;   // bytes written
  int64_t limit = 0;  // largest size accepted
  Sha256Hasher hasher;
};

absl::Status CheckpointReceiver::Options::Validate() const {
  if (staging_dir.empty()) return absl::InvalidArgumentError("staging_dir must not be empty");
  if (max_file_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_file_bytes must be >= 0, got ", max_file_bytes));
  }
  if (max_files < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_files must be >= 1, got ", max_files));
  }
  if (max_total_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_total_bytes must be >= 0, got ", max_total_bytes));
  }
  if (min_free_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_free_bytes must be >= 0, got ", min_free_bytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointReceiver>> CheckpointReceiver::Start(Options options) {
  RETURN_IF_ERROR(options.Validate());
  if (options.expected.has_value()) {
    ASSIGN_OR_RETURN(options.expected, ValidateManifest(*std::move(options.expected),
                                                        absl::StrCat(options.label, " manifest")));
  }
  std::error_code error;
  fs::remove_all(options.staging_dir, error);  // a leftover of an interrupted receive
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot remove ", options.staging_dir, ": ", error.message()));
  }
  if (::mkdir(options.staging_dir.c_str(), 0755) != 0) {
    return ErrnoStatus("cannot create directory", options.staging_dir, errno);
  }
  return std::unique_ptr<CheckpointReceiver>(new CheckpointReceiver(std::move(options)));
}

CheckpointReceiver::CheckpointReceiver(Options options) : options_(std::move(options)) {}

CheckpointReceiver::~CheckpointReceiver() {
  CloseFiles();
  if (!published_) {
    std::error_code ignored;
    fs::remove_all(options_.staging_dir, ignored);
  }
}

void CheckpointReceiver::CloseFiles() { files_.clear(); }

absl::Status CheckpointReceiver::Refuse(absl::StatusCode code, absl::string_view what) const {
  return absl::Status(code, absl::StrCat(options_.label, ": ", what));
}

absl::StatusOr<CheckpointReceiver::File*> CheckpointReceiver::OpenFile(const std::string& name) {
  if (static_cast<int64_t>(files_.size()) >= options_.max_files) {
    return Refuse(absl::StatusCode::kResourceExhausted,
                  absl::StrCat("file ", name, " would exceed max_files ", options_.max_files));
  }
  auto file = std::make_unique<File>();
  file->path = (fs::path(options_.staging_dir) / name).string();
  file->limit = options_.max_file_bytes;
  if (options_.expected.has_value()) {
    auto it = std::lower_bound(
        options_.expected->begin(), options_.expected->end(), name,
        [](const ManifestEntry& entry, const std::string& key) { return entry.name < key; });
    if (it == options_.expected->end() || it->name != name) {
      return Refuse(absl::StatusCode::kInvalidArgument,
                    absl::StrCat("chunk of '", name, "', which the manifest does not list"));
    }
    file->limit = std::min(file->limit, it->size);
  }
  file->fd = ::open(file->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (file->fd < 0) return ErrnoStatus("cannot create", file->path, errno);
  File* raw = file.get();
  files_[name] = std::move(file);
  return raw;
}

absl::Status CheckpointReceiver::Append(absl::string_view name, int64_t offset,
                                        absl::string_view data) {
  if (sealed_ || spent_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.label, ": no more chunks accepted (already sealed or failed)"));
  }
  RETURN_IF_ERROR(ValidateCheckpointFileName(name));
  if (offset < 0) {
    return Refuse(absl::StatusCode::kInvalidArgument,
                  absl::StrCat("chunk of ", name, " at negative offset ", offset));
  }
  const std::string key(name);
  File* file = nullptr;
  if (auto it = files_.find(key); it != files_.end()) {
    file = it->second.get();
  } else {
    if (offset != 0) {
      return Refuse(absl::StatusCode::kFailedPrecondition,
                    absl::StrCat("chunk of ", name, " at offset ", offset,
                                 " out of order: expected offset 0"));
    }
    ASSIGN_OR_RETURN(file, OpenFile(key));
  }
  if (offset > file->size) {
    return Refuse(absl::StatusCode::kFailedPrecondition,
                  absl::StrCat("chunk of ", name, " at offset ", offset,
                               " out of order: expected offset ", file->size));
  }
  // A retried chunk must repeat the bytes already received exactly.
  const int64_t overlap = std::min<int64_t>(file->size - offset, data.size());
  if (overlap > 0) {
    ASSIGN_OR_RETURN(std::string existing, ReadFileRange(file->fd, file->path, offset, overlap));
    if (existing != data.substr(0, static_cast<size_t>(overlap))) {
      return Refuse(absl::StatusCode::kFailedPrecondition,
                    absl::StrCat("chunk of ", name, " at offset ", offset,
                                 " differs from the bytes already received there"));
    }
  }
  const absl::string_view rest = data.substr(static_cast<size_t>(overlap));
  if (rest.empty()) return absl::OkStatus();
  const int64_t end = file->size + static_cast<int64_t>(rest.size());
  if (end > file->limit) {
    if (options_.expected.has_value() && file->limit < options_.max_file_bytes) {
      return Refuse(absl::StatusCode::kDataLoss,
                    absl::StrCat(name, " is longer than its manifest size ", file->limit));
    }
    return Refuse(absl::StatusCode::kResourceExhausted,
                  absl::StrCat(name, " would exceed max_file_bytes ", options_.max_file_bytes));
  }
  if (bytes_received_ + static_cast<int64_t>(rest.size()) > options_.max_total_bytes) {
    return Refuse(absl::StatusCode::kResourceExhausted,
                  absl::StrCat("chunk of ", name, " would exceed max_total_bytes ",
                               options_.max_total_bytes));
  }
  if (options_.min_free_bytes > 0) {
    struct statvfs fs_stat;
    if (::statvfs(options_.staging_dir.c_str(), &fs_stat) != 0) {
      return ErrnoStatus("cannot stat the file system of", options_.staging_dir, errno);
    }
    const int64_t available = static_cast<int64_t>(fs_stat.f_bavail) * fs_stat.f_frsize;
    if (available - static_cast<int64_t>(rest.size()) < options_.min_free_bytes) {
      return Refuse(absl::StatusCode::kResourceExhausted,
                    absl::StrCat("chunk of ", name, " would leave less than min_free_bytes ",
                                 options_.min_free_bytes, " free on the file system of ",
                                 options_.staging_dir, " (", available, " bytes free)"));
    }
  }
  size_t done = 0;
  while (done < rest.size()) {
    const ssize_t n = ::pwrite(file->fd, rest.data() + done, rest.size() - done,
                               file->size + static_cast<int64_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      (void)::ftruncate(file->fd, file->size);  // keep the file equal to what was accepted
      return ErrnoStatus("cannot write", file->path, saved);
    }
    done += static_cast<size_t>(n);
  }
  file->hasher.Update(rest);
  file->size = end;
  bytes_received_ += static_cast<int64_t>(rest.size());
  return absl::OkStatus();
}

absl::StatusOr<Manifest> CheckpointReceiver::Seal(const Manifest* manifest) {
  if (sealed_ || spent_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.label, ": already sealed or failed"));
  }
  spent_ = true;  // until everything below succeeded
  Manifest sorted;
  if (manifest != nullptr) {
    ASSIGN_OR_RETURN(sorted,
                     ValidateManifest(*manifest, absl::StrCat(options_.label, " manifest")));
  } else if (options_.expected.has_value()) {
    sorted = *options_.expected;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.label, ": sealed without a manifest"));
  }
  for (const auto& [name, file] : files_) {
    const bool listed = std::binary_search(
        sorted.begin(), sorted.end(), ManifestEntry{name, 0, ""},
        [](const ManifestEntry& a, const ManifestEntry& b) { return a.name < b.name; });
    if (!listed) {
      return Refuse(absl::StatusCode::kDataLoss,
                    absl::StrCat("received file ", name, " is not in the manifest"));
    }
  }
  for (const ManifestEntry& entry : sorted) {
    auto it = files_.find(entry.name);
    if (it == files_.end()) {
      if (entry.size != 0) {
        return Refuse(absl::StatusCode::kDataLoss,
                      absl::StrCat("file ", entry.name, " in the manifest was not received"));
      }
      RETURN_IF_ERROR(OpenFile(entry.name).status());  // an empty file sends no chunk
      it = files_.find(entry.name);
    }
    File& file = *it->second;
    if (file.size != entry.size) {
      return Refuse(absl::StatusCode::kDataLoss,
                    absl::StrCat("file ", entry.name, " has ", file.size,
                                 " bytes, the manifest says ", entry.size));
    }
    const std::string digest = file.hasher.FinishHex();
    if (digest != entry.sha256) {
      return Refuse(absl::StatusCode::kDataLoss,
                    absl::StrCat("file ", entry.name, " has SHA-256 ", digest,
                                 ", the manifest says ", entry.sha256));
    }
    if (::fsync(file.fd) != 0) return ErrnoStatus("fsync failed for", file.path, errno);
  }
  CloseFiles();
  RETURN_IF_ERROR(WriteFileSynced((fs::path(options_.staging_dir) / kManifestFileName).string(),
                                  FormatManifest(sorted)));
  RETURN_IF_ERROR(FsyncDirectory(options_.staging_dir));
  spent_ = false;
  sealed_ = true;
  return sorted;
}

absl::Status CheckpointReceiver::Publish(const std::string& dest) {
  if (!sealed_ || published_) {
    return absl::FailedPreconditionError(
        absl::StrCat(options_.label, ": published before it was sealed, or twice"));
  }
  // rename(2) replaces an empty directory and refuses a non-empty one.
  if (::rename(options_.staging_dir.c_str(), dest.c_str()) != 0) {
    const int error = errno;
    if (error == ENOTEMPTY || error == EEXIST || error == ENOTDIR || error == EISDIR) {
      return absl::AlreadyExistsError(
          absl::StrCat(options_.label, ": ", dest, " exists and is not an empty directory"));
    }
    return ErrnoStatus(absl::StrCat("cannot rename ", options_.staging_dir, " to"), dest, error);
  }
  published_ = true;
  const fs::path parent = WithoutTrailingSlash(dest).parent_path();
  return FsyncDirectory(parent.empty() ? "." : parent.string());
}

}  // namespace peco
