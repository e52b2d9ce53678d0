#include "cli/checkpoint_download.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
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

namespace peco::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kStagingName[] = ".partial";
constexpr char kManifestName[] = "MANIFEST";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

absl::Status CheckName(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("manifest: a file has an empty name");
  const bool control = std::any_of(name.begin(), name.end(),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (name == "." || name == ".." || name == kManifestName || name == kStagingName ||
      name.find('/') != std::string::npos || control || name.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat("manifest: file name '", name, "' is not a plain file name"));
  }
  return absl::OkStatus();
}

// True when `dir` holds nothing, or only a staging directory left by an earlier download.
absl::StatusOr<bool> IsEmptyDir(const std::string& dir) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (entry.path().filename() != kStagingName) return false;
  }
  if (error) return absl::InternalError(absl::StrCat("listing ", dir, ": ", error.message()));
  return true;
}

absl::Status AppendToFile(const std::string& path, const std::string& data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return ErrnoError("opening", path);
  size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = ErrnoError("writing", path);
      ::close(fd);
      return status;
    }
    written += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return ErrnoError("closing", path);
  return absl::OkStatus();
}

}  // namespace

std::string ManifestText(const v1::CheckpointInfo& info) {
  std::vector<const v1::ManifestEntry*> entries;
  for (const v1::ManifestEntry& entry : info.manifest()) entries.push_back(&entry);
  std::sort(
      entries.begin(), entries.end(),
      [](const v1::ManifestEntry* a, const v1::ManifestEntry* b) { return a->name() < b->name(); });
  std::string text;
  for (const v1::ManifestEntry* entry : entries) {
    absl::StrAppend(&text, entry->sha256(), " ", entry->size(), " ", entry->name(), "\n");
  }
  return text;
}

absl::StatusOr<std::unique_ptr<CheckpointDownload>> CheckpointDownload::Begin(
    const std::string& dir, const v1::CheckpointInfo& info) {
  if (dir.empty()) return absl::InvalidArgumentError("DIR: empty path");
  std::map<std::string, int64_t> received;
  for (const v1::ManifestEntry& entry : info.manifest()) {
    RETURN_IF_ERROR(CheckName(entry.name()));
    if (entry.size() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: ", entry.name(), ": negative size ", entry.size()));
    }
    if (entry.sha256().size() != 64) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest: ", entry.name(), ": sha256 is not 64 hex digits"));
    }
    if (!received.emplace(entry.name(), 0).second) {
      return absl::InvalidArgumentError(absl::StrCat("manifest: ", entry.name(), ": listed twice"));
    }
  }

  std::error_code error;
  bool created_dir = false;
  if (fs::exists(dir, error)) {
    if (!fs::is_directory(dir, error)) {
      return absl::AlreadyExistsError(absl::StrCat(dir, ": exists and is not a directory"));
    }
    ASSIGN_OR_RETURN(bool empty, IsEmptyDir(dir));
    if (!empty) {
      return absl::AlreadyExistsError(
          absl::StrCat(dir, ": exists and is not empty (choose a new directory)"));
    }
  } else {
    if (::mkdir(dir.c_str(), 0755) != 0) return ErrnoError("creating directory", dir);
    created_dir = true;
  }
  std::unique_ptr<CheckpointDownload> download(new CheckpointDownload(dir, created_dir, info));
  download->received_ = std::move(received);
  fs::remove_all(download->staging_, error);  // a leftover of an interrupted download
  if (::mkdir(download->staging_.c_str(), 0755) != 0) {
    return ErrnoError("creating directory", download->staging_);
  }
  for (const auto& [name, bytes] : download->received_) {
    const std::string path = absl::StrCat(download->staging_, "/", name);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return ErrnoError("creating", path);
    ::close(fd);
  }
  return download;
}

CheckpointDownload::CheckpointDownload(std::string dir, bool created_dir, v1::CheckpointInfo info)
    : dir_(std::move(dir)),
      staging_(absl::StrCat(dir_, "/", kStagingName)),
      created_dir_(created_dir),
      info_(std::move(info)) {}

CheckpointDownload::~CheckpointDownload() { Abort(); }

void CheckpointDownload::Abort() {
  if (finished_) return;
  finished_ = true;
  std::error_code error;
  fs::remove_all(staging_, error);
  if (created_dir_) fs::remove_all(dir_, error);
}

absl::Status CheckpointDownload::Write(const v1::CheckpointChunk& chunk) {
  auto it = received_.find(chunk.file_name());
  if (it == received_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk for '", chunk.file_name(), "', which the manifest does not list"));
  }
  if (chunk.offset() != it->second) {
    return absl::InvalidArgumentError(absl::StrCat("chunk of ", chunk.file_name(), " at offset ",
                                                   chunk.offset(), ", expected offset ",
                                                   it->second));
  }
  int64_t size = 0;
  for (const v1::ManifestEntry& entry : info_.manifest()) {
    if (entry.name() == chunk.file_name()) size = entry.size();
  }
  const int64_t end = it->second + static_cast<int64_t>(chunk.data().size());
  if (end > size) {
    return absl::DataLossError(
        absl::StrCat(chunk.file_name(), ": received ", end, " bytes, the manifest says ", size));
  }
  RETURN_IF_ERROR(AppendToFile(absl::StrCat(staging_, "/", chunk.file_name()), chunk.data()));
  it->second = end;
  bytes_received_ += static_cast<int64_t>(chunk.data().size());
  return absl::OkStatus();
}

absl::Status CheckpointDownload::Verify() const {
  for (const v1::ManifestEntry& entry : info_.manifest()) {
    const int64_t received = received_.at(entry.name());
    if (received != entry.size()) {
      return absl::DataLossError(absl::StrCat(entry.name(), ": received ", received,
                                              " bytes, the manifest says ", entry.size()));
    }
    ASSIGN_OR_RETURN(std::string digest, Sha256FileHex(absl::StrCat(staging_, "/", entry.name())));
    if (digest != entry.sha256()) {
      return absl::DataLossError(absl::StrCat(entry.name(), ": SHA-256 ", digest,
                                              " does not match the manifest's ", entry.sha256()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckpointDownload::Publish() {
  for (const v1::ManifestEntry& entry : info_.manifest()) {
    RETURN_IF_ERROR(FsyncFile(absl::StrCat(staging_, "/", entry.name())));
  }
  RETURN_IF_ERROR(WriteFileSynced(absl::StrCat(staging_, "/", kManifestName), ManifestText(info_)));
  std::vector<std::string> names;
  for (const v1::ManifestEntry& entry : info_.manifest()) names.push_back(entry.name());
  names.push_back(kManifestName);  // last: a DIR with a MANIFEST is complete
  for (const std::string& name : names) {
    const std::string from = absl::StrCat(staging_, "/", name);
    const std::string to = absl::StrCat(dir_, "/", name);
    if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoError("moving into place", to);
  }
  if (::rmdir(staging_.c_str()) != 0) return ErrnoError("removing", staging_);
  return FsyncDirectory(dir_);
}

absl::Status CheckpointDownload::Commit() {
  if (finished_) return absl::FailedPreconditionError("download already finished");
  absl::Status status = Verify();
  if (status.ok()) status = Publish();
  if (!status.ok()) {
    Abort();
    // Files already moved by a failed Publish live in DIR itself; remove them too.
    if (!created_dir_) {
      std::error_code error;
      for (const v1::ManifestEntry& entry : info_.manifest()) {
        fs::remove(absl::StrCat(dir_, "/", entry.name()), error);
      }
      fs::remove(absl::StrCat(dir_, "/", kManifestName), error);
    }
    return status;
  }
  finished_ = true;
  return absl::OkStatus();
}

}  // namespace peco::cli
