// `peco preview JOB [--checkpoint ID] -o FILE.png`: which checkpoint's preview.png to fetch, and
// the checks on what arrives. The trainer writes the picture into each tokenizer and pretrain
// checkpoint (docs/TRAINER.md "Previews").
//
// Pure functions; thread-safe.
#ifndef PECO_CLI_PREVIEW_H_
#define PECO_CLI_PREVIEW_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::cli {

// The checkpoint file that holds a job's preview picture.
inline constexpr char kPreviewFileName[] = "preview.png";

// Picks from `checkpoints` (a job's, oldest step first, as ListCheckpoints returns them) the one
// whose preview to fetch: `checkpoint_id` when given, else the newest that holds preview.png.
// Errors say what to do: NotFound when the job has no checkpoints yet (wait for the first one),
// when `checkpoint_id` is not one of the job's (naming the ones it has), or when no checkpoint
// (or the named one) holds a preview (only tokenizer and pretrain jobs write one, and
// train.preview_images: 0 turns it off).
absl::StatusOr<v1::CheckpointInfo> ChoosePreviewCheckpoint(
    const std::string& job_id, const std::vector<v1::CheckpointInfo>& checkpoints,
    const std::string& checkpoint_id);

// Checks received bytes against the checkpoint's manifest entry for preview.png: DataLoss
// naming the file when the size or SHA-256 differs, or when the bytes are not a PNG.
absl::Status VerifyPreview(const v1::CheckpointInfo& info, const std::string& bytes);

}  // namespace peco::cli

#endif  // PECO_CLI_PREVIEW_H_
