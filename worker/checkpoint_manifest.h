// A checkpoint directory's MANIFEST on the worker side: reading it before an upload, writing it
// after a fetch, and the file-name rules both directions share.
//
// Format (docs/TRAINER.md, the trainer's and the coordinator store's format): one line per file,
// `<sha256> <size> <name>`, lower-case hex digest, sorted by name, MANIFEST itself not listed.
//
// Thread-safety: every function is pure or touches only the paths it is given.
#ifndef PECO_WORKER_CHECKPOINT_MANIFEST_H_
#define PECO_WORKER_CHECKPOINT_MANIFEST_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::worker {

// Name of the manifest file inside a checkpoint directory.
inline constexpr char kCheckpointManifestName[] = "MANIFEST";

// Returns OK when `name` may be a checkpoint file: not empty, not "." or "..", not MANIFEST, no
// '/', no whitespace or control characters. InvalidArgument naming the file otherwise.
absl::Status ValidateCheckpointFileName(absl::string_view name);

// Parses MANIFEST text. `source` names it in errors. DataLoss for a malformed line (naming the
// line), a bad file name, a repeated name or an empty manifest. Entries come back sorted by name.
absl::StatusOr<std::vector<v1::ManifestEntry>> ParseManifest(absl::string_view text,
                                                             absl::string_view source);

// Reads and parses `<dir>/MANIFEST`. NotFound when it is missing; the errors of ParseManifest.
absl::StatusOr<std::vector<v1::ManifestEntry>> ReadManifest(const std::string& dir);

// Returns MANIFEST text for `entries`, sorted by name.
std::string FormatManifest(std::vector<v1::ManifestEntry> entries);

// Makes `dest` (which must not exist) a copy of the checkpoint in `src` that later changes to
// `src` cannot affect: every file listed in src's MANIFEST, and the MANIFEST, hard-linked (copied
// when the file system refuses a link). On failure nothing is left at `dest`. Errors: those of
// ReadManifest; AlreadyExists when `dest` exists; NotFound when a listed file is gone (the
// trainer's retention removed the checkpoint first); Internal for other file-system errors.
absl::Status LinkCheckpoint(const std::string& src, const std::string& dest);

}  // namespace peco::worker

#endif  // PECO_WORKER_CHECKPOINT_MANIFEST_H_
