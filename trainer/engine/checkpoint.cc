#include "trainer/engine/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/engine/fault_injection.h"

namespace peco::trainer {
namespace fs = std::filesystem;
namespace {

constexpr char kStepPrefix[] = "step-";

}  // namespace

int64_t CheckpointStep(const std::string& dir) {
  const std::string name = fs::path(dir).filename().string();
  if (name.rfind(kStepPrefix, 0) != 0) return -1;
  int64_t step = -1;
  if (!absl::SimpleAtoi(name.substr(sizeof(kStepPrefix) - 1), &step)) return -1;
  return step;
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& root, int64_t step,
                                            const CheckpointFiles& files) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", root, ": ", ec.message()));
  const std::string name = absl::StrFormat("%s%012d", kStepPrefix, step);
  const fs::path final_dir = fs::path(root) / name;
  const fs::path tmp_dir = fs::path(root) / absl::StrCat(".tmp-", name, "-", ::getpid());
  // Refuse bad names before creating anything, so a refused write leaves no temporary directory.
  ASSIGN_OR_RETURN(const Manifest manifest, ManifestOfFiles(files));
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create ", tmp_dir.string(), ": ", ec.message()));
  // A failed write (a full disk, say) removes what it wrote: the disk is no fuller for it and
  // the previous checkpoint stays the newest.
  auto abandon = [&](absl::Status status) {
    std::error_code ignored;
    fs::remove_all(tmp_dir, ignored);
    return absl::Status(status.code(), absl::StrCat("checkpoint of step ", step,
                                                    " not written: ", status.message()));
  };
  for (const auto& [file, data] : files) {
    if (absl::Status written = WriteFileSynced((tmp_dir / file).string(), data); !written.ok()) {
      return abandon(written);
    }
  }
  // A test's hang or failure with the files written and nothing committed.
  if (absl::Status injected = Faults().InCheckpointWrite(step); !injected.ok()) {
    return abandon(injected);
  }
  if (absl::Status written =
          WriteFileSynced((tmp_dir / kManifestFileName).string(), FormatManifest(manifest));
      !written.ok()) {
    return abandon(written);
  }
  if (absl::Status synced = FsyncDirectory(tmp_dir.string()); !synced.ok()) {
    return abandon(synced);
  }
  if (fs::exists(final_dir)) {
    // Same step written again (a resumed run re-reaching it): replace it atomically enough by
    // moving the old one aside first.
    const fs::path old_dir = fs::path(root) / absl::StrCat(".old-", name, "-", ::getpid());
    fs::rename(final_dir, old_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot move aside ", final_dir.string()));
    fs::rename(tmp_dir, final_dir, ec);
    fs::remove_all(old_dir);
  } else {
    fs::rename(tmp_dir, final_dir, ec);
  }
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot rename onto ", final_dir.string(), ": ", ec.message()));
  RETURN_IF_ERROR(FsyncDirectory(root));
  Faults().AfterCheckpointCommit(step, final_dir.string());
  return final_dir.string();
}

absl::StatusOr<CheckpointFiles> ReadCheckpoint(const std::string& dir) {
  ASSIGN_OR_RETURN(const Manifest entries, ReadManifest(dir));
  RETURN_IF_ERROR(CheckNoUnlistedFiles(dir, entries));
  CheckpointFiles files;
  for (const ManifestEntry& entry : entries) {
    std::string contents;
    RETURN_IF_ERROR(VerifyCheckpointFile(dir, entry, &contents));
    files[entry.name] = std::move(contents);
  }
  return files;
}

absl::Status VerifyCheckpoint(const std::string& dir) { return VerifyCheckpointDir(dir).status(); }

std::vector<std::string> ListCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    const int64_t step = CheckpointStep(entry.path().string());
    if (step >= 0) found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> dirs;
  for (auto& item : found) dirs.push_back(std::move(item.second));
  return dirs;
}

absl::StatusOr<RestoredCheckpoint> RestoreLatest(const std::string& root) {
  std::vector<std::string> dirs = ListCheckpoints(root);
  RestoredCheckpoint restored;
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    absl::StatusOr<CheckpointFiles> files = ReadCheckpoint(*it);
    if (files.ok()) {
      restored.dir = *it;
      restored.files = *std::move(files);
      return restored;
    }
    restored.skipped.push_back(std::string(files.status().message()));
  }
  std::string reasons;
  for (const std::string& s : restored.skipped) absl::StrAppend(&reasons, "; ", s);
  return absl::NotFoundError(absl::StrCat("no verified checkpoint under ", root, reasons));
}

absl::Status ApplyRetention(const std::string& root, int keep_last, const std::string& keep_dir) {
  std::vector<std::string> dirs = ListCheckpoints(root);
  const int64_t excess = static_cast<int64_t>(dirs.size()) - std::max(keep_last, 1);
  for (int64_t i = 0; i < excess; ++i) {
    if (!keep_dir.empty() && fs::path(dirs[i]) == fs::path(keep_dir)) continue;
    std::error_code ec;
    fs::remove_all(dirs[i], ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      return absl::InternalError(absl::StrCat("cannot delete ", dirs[i], ": ", ec.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace peco::trainer
