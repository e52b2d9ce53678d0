// A private, immutable copy of a trainer's checkpoint directory, taken before it is queued for
// upload (the trainer's retention may delete the original at any time).
//
// Thread-safety: the function touches only the paths it is given.
#ifndef PECO_WORKER_CHECKPOINT_LINK_H_
#define PECO_WORKER_CHECKPOINT_LINK_H_

#include <string>

#include "absl/status/status.h"

namespace peco::worker {

// Makes `dest` (which must not exist) a copy of the checkpoint in `src` that later changes to
// `src` cannot affect: every file listed in src's MANIFEST (common/checkpoint_manifest.h), and the
// MANIFEST, hard-linked (copied when the file system refuses a link). On failure nothing is left
// at `dest`. Errors: those of ReadManifest; AlreadyExists when `dest` exists; NotFound when a
// listed file is gone (the trainer's retention removed the checkpoint first); Internal for other
// file-system errors.
absl::Status LinkCheckpoint(const std::string& src, const std::string& dest);

}  // namespace peco::worker

#endif  // PECO_WORKER_CHECKPOINT_LINK_H_
