#include "trainer/engine/checkpoint_lookup.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/config_reader.h"
#include "common/status_macros.h"

namespace peco::trainer {

absl::StatusOr<RestoredCheckpoint> ResolveCheckpoint(const std::string& path,
                                                     ProgressSink* progress) {
  namespace fs = std::filesystem;
  if (fs::exists(fs::path(path) / kManifestFileName)) {
    ASSIGN_OR_RETURN(CheckpointFiles files, ReadCheckpoint(path));
    return RestoredCheckpoint{path, std::move(files), {}};
  }
  std::string root = path;
  if (fs::is_directory(fs::path(path) / "checkpoints"))
    root = (fs::path(path) / "checkpoints").string();
  ASSIGN_OR_RETURN(RestoredCheckpoint restored, RestoreLatest(root));
  if (progress != nullptr) {
    for (const std::string& reason : restored.skipped) {
      progress->Log(absl::StrCat("warning: skipped a damaged checkpoint: ", reason));
    }
  }
  return restored;
}

absl::StatusOr<const std::string*> CheckpointFile(const CheckpointFiles& files,
                                                  const std::string& name, const std::string& dir) {
  auto it = files.find(name);
  if (it == files.end()) {
    return absl::DataLossError(absl::StrCat("checkpoint ", dir, " lacks ", name));
  }
  return &it->second;
}

absl::StatusOr<std::string> CheckpointKind(const CheckpointFiles& files, const std::string& dir) {
  ASSIGN_OR_RETURN(const std::string* json, CheckpointFile(files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(ConfigReader r,
                   ConfigReader::FromString(*json, absl::StrCat(dir, "/", kTrainerStateFile)));
  std::string kind;
  RETURN_IF_ERROR(r.Read("kind", &kind));
  if (kind.empty()) {
    return absl::DataLossError(absl::StrCat(dir, "/", kTrainerStateFile, " names no kind"));
  }
  return kind;
}

}  // namespace peco::trainer
