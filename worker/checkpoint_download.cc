#include "worker/checkpoint_download.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/checkpoint_manifest.h"

namespace peco::worker {
namespace fs = std::filesystem;

absl::StatusOr<std::unique_ptr<CheckpointDownload>> CheckpointDownload::Begin(
    const v1::CheckpointInfo& info, const std::string& dest) {
  if (info.manifest().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", info.id(), ": manifest lists no files"));
  }
  std::error_code error;
  if (fs::exists(dest, error)) {
    return absl::AlreadyExistsError(absl::StrCat("checkpoint destination ", dest, " exists"));
  }
  auto download = std::unique_ptr<CheckpointDownload>(new CheckpointDownload(info, dest));
  for (const v1::ManifestEntry& entry : download->info_.manifest()) {
    RETURN_IF_ERROR(ValidateCheckpointFileName(entry.name()));
    if (entry.size() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", info.id(), ": file ", entry.name(), " has a negative size"));
    }
    File& file = download->files_[entry.name()];
    if (file.entry != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint ", info.id(), ": manifest lists ", entry.name(), " twice"));
    }
    file.entry = &entry;
  }
  fs::remove_all(download->partial_, error);  // a leftover of an earlier, interrupted download
  fs::create_directories(download->partial_, error);
  if (error) {
    download->failed_ = true;
    return absl::InternalError(
        absl::StrCat("cannot create ", download->partial_, ": ", error.message()));
  }
  return download;
}

CheckpointDownload::CheckpointDownload(v1::CheckpointInfo info, std::string dest)
    : info_(std::move(info)), dest_(std::move(dest)), partial_(dest_ + ".partial") {}

CheckpointDownload::~CheckpointDownload() {
  CloseAll();
  if (!published_) {
    std::error_code ignored;
    fs::remove_all(partial_, ignored);
  }
}

void CheckpointDownload::CloseAll() {
  for (auto& [name, file] : files_) {
    if (file.out != nullptr) std::fclose(file.out);
    file.out = nullptr;
  }
}

absl::Status CheckpointDownload::OpenFile(File& file) {
  const std::string path = (fs::path(partial_) / file.entry->name()).string();
  file.out = std::fopen(path.c_str(), "wb");
  if (file.out == nullptr) return absl::InternalError(absl::StrCat("cannot create ", path));
  file.hasher = std::make_unique<Sha256Hasher>();
  return absl::OkStatus();
}

absl::Status CheckpointDownload::AddChunk(const v1::CheckpointChunk& chunk) {
  if (failed_ || published_) {
    return absl::FailedPreconditionError("checkpoint download already ended");
  }
  auto fail = [&](absl::Status status) {
    failed_ = true;
    return status;
  };
  auto it = files_.find(chunk.file_name());
  if (it == files_.end()) {
    return fail(absl::DataLossError(absl::StrCat("checkpoint ", info_.id(), ": chunk of '",
                                                 chunk.file_name(), "', not in the manifest")));
  }
  File& file = it->second;
  const std::string& name = file.entry->name();
  if (chunk.offset() != file.received) {
    return fail(absl::DataLossError(absl::StrCat("checkpoint ", info_.id(), ": chunk of ", name,
                                                 " at offset ", chunk.offset(), ", expected ",
                                                 file.received)));
  }
  if (file.received + static_cast<int64_t>(chunk.data().size()) > file.entry->size()) {
    return fail(absl::DataLossError(absl::StrCat("checkpoint ", info_.id(), ": ", name,
                                                 " is longer than its manifest size ",
                                                 file.entry->size())));
  }
  if (file.out == nullptr) {
    if (absl::Status opened = OpenFile(file); !opened.ok()) return fail(opened);
  }
  if (!chunk.data().empty() &&
      std::fwrite(chunk.data().data(), 1, chunk.data().size(), file.out) != chunk.data().size()) {
    return fail(absl::InternalError(absl::StrCat("writing ", partial_, "/", name, " failed")));
  }
  file.hasher->Update(chunk.data());
  file.received += static_cast<int64_t>(chunk.data().size());
  bytes_received_ += static_cast<int64_t>(chunk.data().size());
  return absl::OkStatus();
}

absl::Status CheckpointDownload::Finish() {
  if (failed_ || published_) {
    return absl::FailedPreconditionError("checkpoint download already ended");
  }
  failed_ = true;  // until everything below succeeded
  for (auto& [name, file] : files_) {
    if (file.out == nullptr) RETURN_IF_ERROR(OpenFile(file));  // an empty file sends no chunk
    if (file.received != file.entry->size()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", info_.id(), ": ", name, " has ",
                                              file.received, " bytes, manifest says ",
                                              file.entry->size()));
    }
    const std::string digest = file.hasher->FinishHex();
    file.hasher.reset();
    if (digest != file.entry->sha256()) {
      return absl::DataLossError(absl::StrCat("checkpoint ", info_.id(), ": ", name,
                                              " does not match its SHA-256 in the manifest"));
    }
    const bool flushed = std::fflush(file.out) == 0;
    std::fclose(file.out);
    file.out = nullptr;
    const std::string path = (fs::path(partial_) / name).string();
    if (!flushed) return absl::InternalError(absl::StrCat("writing ", path, " failed"));
    RETURN_IF_ERROR(FsyncFile(path));
  }
  std::vector<v1::ManifestEntry> entries(info_.manifest().begin(), info_.manifest().end());
  RETURN_IF_ERROR(WriteFileSynced((fs::path(partial_) / kCheckpointManifestName).string(),
                                  FormatManifest(std::move(entries))));
  RETURN_IF_ERROR(FsyncDirectory(partial_));
  std::error_code error;
  fs::rename(partial_, dest_, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", partial_, " to ", dest_, ": ", error.message()));
  }
  const fs::path parent = fs::path(dest_).parent_path();
  RETURN_IF_ERROR(FsyncDirectory(parent.empty() ? "." : parent.string()));
  failed_ = false;
  published_ = true;
  return absl::OkStatus();
}

}  // namespace peco::worker
