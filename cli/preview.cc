#include "cli/preview.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"

namespace peco::cli {
namespace {

const v1::ManifestEntry* FindPreview(const v1::CheckpointInfo& info) {
  for (const v1::ManifestEntry& entry : info.manifest()) {
    if (entry.name() == kPreviewFileName) return &entry;
  }
  return nullptr;
}

constexpr char kWhyNoPreview[] =
    "only tokenizer and pretrain jobs write one, with each checkpoint, unless their "
    "train.preview_images is 0";

}  // namespace

absl::StatusOr<v1::CheckpointInfo> ChoosePreviewCheckpoint(
    const std::string& job_id, const std::vector<v1::CheckpointInfo>& checkpoints,
    const std::string& checkpoint_id) {
  if (checkpoints.empty()) {
    return absl::NotFoundError(
        absl::StrCat(job_id,
                     " has no checkpoints yet; a preview comes with each checkpoint (every "
                     "train.checkpoint_every steps): try again after the first one"));
  }
  if (!checkpoint_id.empty()) {
    std::vector<std::string> ids;
    for (const v1::CheckpointInfo& info : checkpoints) {
      if (info.id() != checkpoint_id) {
        ids.push_back(info.id());
        continue;
      }
      if (FindPreview(info) == nullptr) {
        return absl::NotFoundError(absl::StrCat("--checkpoint: ", checkpoint_id, " of ", job_id,
                                                " holds no ", kPreviewFileName, ": ",
                                                kWhyNoPreview));
      }
      return info;
    }
    return absl::NotFoundError(absl::StrCat(
        "--checkpoint: ", checkpoint_id, " is not a checkpoint of ", job_id,
        "; its checkpoints are ", absl::StrJoin(ids, ", "), " (peco checkpoints ", job_id, ")"));
  }
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    if (FindPreview(*it) != nullptr) return *it;
  }
  return absl::NotFoundError(absl::StrCat("none of the ", checkpoints.size(), " checkpoints of ",
                                          job_id, " holds ", kPreviewFileName, ": ",
                                          kWhyNoPreview));
}

absl::Status VerifyPreview(const v1::CheckpointInfo& info, const std::string& bytes) {
  const v1::ManifestEntry* entry = FindPreview(info);
  if (entry == nullptr) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", info.id(), ": the manifest lists no ", kPreviewFileName));
  }
  if (static_cast<int64_t>(bytes.size()) != entry->size()) {
    return absl::DataLossError(absl::StrCat(kPreviewFileName, " of ", info.id(), ": received ",
                                            bytes.size(), " bytes, the manifest says ",
                                            entry->size()));
  }
  if (Sha256Hex(bytes) != entry->sha256()) {
    return absl::DataLossError(
        absl::StrCat(kPreviewFileName, " of ", info.id(), ": SHA-256 differs from the manifest's"));
  }
  if (!absl::StartsWith(bytes, "\x89PNG\r\n\x1a\n")) {
    return absl::DataLossError(
        absl::StrCat(kPreviewFileName, " of ", info.id(), ": not a PNG file"));
  }
  return absl::OkStatus();
}

}  // namespace peco::cli
