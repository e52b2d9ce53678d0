// Checkpoint directories (DESIGN.md section 5).
//
// A checkpoint is a directory `<root>/step-<12 digits>` holding named files and a MANIFEST with
// one line per file: `<sha256> <size> <name>` (the contract every side shares, with its file-name
// rule: common/checkpoint_manifest.h). It is written under `<root>/.tmp-step-...`,
// every file and the directory fsynced, then renamed into place and the root fsynced: it exists
// whole or not at all. Reading verifies every size and digest; a mismatch is DataLoss naming
// the file. Restoring the newest checkpoint falls back to older ones when the newest is damaged.
//
// Thread-compatible: concurrent writers must use distinct roots.
#ifndef PECO_TRAINER_ENGINE_CHECKPOINT_H_
#define PECO_TRAINER_ENGINE_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/checkpoint_manifest.h"

namespace peco::trainer {

// File name -> bytes.
using CheckpointFiles = std::map<std::string, std::string>;

// Writes a checkpoint for `step` under `root` and returns its directory. An existing checkpoint
// for the same step is replaced atomically. A file name the contract refuses is InvalidArgument
// and writes nothing. A failed write leaves nothing behind and names the
// file; a full disk is ResourceExhausted, an unwritable directory PermissionDenied.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& root, int64_t step,
                                            const CheckpointFiles& files);

// Reads and verifies every file listed in `dir`/MANIFEST.
absl::StatusOr<CheckpointFiles> ReadCheckpoint(const std::string& dir);

// Verifies sizes and digests without keeping the contents.
absl::Status VerifyCheckpoint(const std::string& dir);

// Checkpoint directories under `root`, oldest step first (temporary ones excluded).
std::vector<std::string> ListCheckpoints(const std::string& root);

// Step encoded in a checkpoint directory name, or -1.
int64_t CheckpointStep(const std::string& dir);

struct RestoredCheckpoint {
  std::string dir;
  CheckpointFiles files;
  std::vector<std::string> skipped;  // damaged newer checkpoints, with reasons
};

// The newest checkpoint under `root` that verifies. NotFound when there is none.
absl::StatusOr<RestoredCheckpoint> RestoreLatest(const std::string& root);

// Keeps the newest `keep_last` checkpoints (and `keep_dir` if given), deleting older ones; a
// missing directory is not an error (idempotent).
absl::Status ApplyRetention(const std::string& root, int keep_last,
                            const std::string& keep_dir = "");

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_CHECKPOINT_H_
