#include "service/checkpoint_transfer.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::service {
namespace fs = std::filesystem;

Manifest ManifestFromProto(const google::protobuf::RepeatedPtrField<v1::ManifestEntry>& entries) {
  Manifest manifest;
  manifest.reserve(entries.size());
  for (const v1::ManifestEntry& entry : entries) {
    manifest.push_back({entry.name(), entry.size(), entry.sha256()});
  }
  return manifest;
}

void ManifestToProto(const Manifest& manifest,
                     google::protobuf::RepeatedPtrField<v1::ManifestEntry>* out) {
  out->Clear();
  for (const ManifestEntry& entry : manifest) {
    v1::ManifestEntry* proto = out->Add();
    proto->set_name(entry.name);
    proto->set_size(entry.size);
    proto->set_sha256(entry.sha256);
  }
}

absl::Status AppendChunk(CheckpointReceiver& receiver, const v1::CheckpointChunk& chunk) {
  return receiver.Append(chunk.file_name(), chunk.offset(), chunk.data());
}

absl::StatusOr<std::unique_ptr<CheckpointReceiver>> StartDownload(const v1::CheckpointInfo& info,
                                                                  const std::string& dest) {
  if (dest.empty()) return absl::InvalidArgumentError("checkpoint destination: empty path");
  // Refuse a destination that cannot be published before any byte is transferred.
  std::error_code error;
  if (fs::exists(dest, error) && !(fs::is_directory(dest, error) && fs::is_empty(dest, error))) {
    return absl::AlreadyExistsError(
        absl::StrCat("checkpoint destination ", dest, " exists and is not an empty directory"));
  }
  const fs::path parent = fs::path(StagingDirFor(dest)).parent_path();
  if (!parent.empty()) {
    fs::create_directories(parent, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot create directory ", parent.string(), ": ", error.message()));
    }
  }
  CheckpointReceiver::Options options;
  options.staging_dir = StagingDirFor(dest);
  options.label = absl::StrCat("checkpoint ", info.id());
  options.expected = ManifestFromProto(info.manifest());
  return CheckpointReceiver::Start(std::move(options));
}

absl::Status FinishDownload(CheckpointReceiver& receiver, const std::string& dest) {
  RETURN_IF_ERROR(receiver.Seal().status());
  return receiver.Publish(dest);
}

}  // namespace peco::service
