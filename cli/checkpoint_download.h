// Writing a downloaded checkpoint to a local directory, verified before it becomes visible.
//
// `peco download CKPT DIR` receives a CheckpointInfo (whose manifest lists every file's name,
// size and SHA-256) and then the chunks of every file. CheckpointDownload stages the files in
// `DIR/.partial/`; Commit() checks that every file has exactly its manifest size and SHA-256
// (read back from disk), writes `MANIFEST` (lines `<sha256> <size> <name>`, sorted by name, the
// coordinator's format), fsyncs, and then moves the files into DIR, MANIFEST last, so a DIR
// with a MANIFEST is complete. Any failure, and destruction without Commit(), removes the
// staging directory and the DIR it created: a bad download leaves nothing at DIR.
//
// DIR must not exist, or be an empty directory (a directory that holds only a `.partial` left
// by an interrupted download also counts as empty).
//
// File names in the manifest must be plain names: not empty, no '/', not "." or "..", not
// "MANIFEST" or ".partial", no control characters. A chunk must name a manifest file and
// continue it exactly where the previous chunk of that file ended.
//
// Errors: InvalidArgument for a bad manifest or a chunk out of place (naming the file),
// AlreadyExists when DIR is not empty, DataLoss when a file's size or SHA-256 does not match its
// manifest entry (naming the file), Internal for file-system errors (naming the path).
//
// Thread-safety: not thread-safe; one object per download.
#ifndef PECO_CLI_CHECKPOINT_DOWNLOAD_H_
#define PECO_CLI_CHECKPOINT_DOWNLOAD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::cli {

class CheckpointDownload {
 public:
  // Validates `info`'s manifest, creates DIR (unless it exists empty) and `DIR/.partial`, and
  // creates every manifest file empty (so zero-byte files need no chunk).
  static absl::StatusOr<std::unique_ptr<CheckpointDownload>> Begin(const std::string& dir,
                                                                   const v1::CheckpointInfo& info);

  // Removes the staging directory (and DIR if Begin created it) unless Commit() succeeded.
  ~CheckpointDownload();
  CheckpointDownload(const CheckpointDownload&) = delete;
  CheckpointDownload& operator=(const CheckpointDownload&) = delete;

  // Appends one chunk to its file (see the file comment). InvalidArgument for an unknown file,
  // an offset other than the bytes received so far, or more bytes than the manifest size.
  absl::Status Write(const v1::CheckpointChunk& chunk);

  // Verifies, writes MANIFEST and moves everything into DIR (see the file comment). On error
  // nothing is left at DIR. Must be called at most once.
  absl::Status Commit();

  // Removes what Begin created; Commit() and Write() must not be called afterwards.
  void Abort();

  int64_t bytes_received() const { return bytes_received_; }

 private:
  CheckpointDownload(std::string dir, bool created_dir, v1::CheckpointInfo info);
  absl::Status Verify() const;
  absl::Status Publish();

  const std::string dir_;
  const std::string staging_;
  const bool created_dir_;
  const v1::CheckpointInfo info_;
  std::map<std::string, int64_t> received_;  // bytes written so far per manifest file
  int64_t bytes_received_ = 0;
  bool finished_ = false;  // committed or aborted
};

// Returns the MANIFEST text for `info`: one `<sha256> <size> <name>` line per file, sorted by
// name.
std::string ManifestText(const v1::CheckpointInfo& info);

}  // namespace peco::cli

#endif  // PECO_CLI_CHECKPOINT_DOWNLOAD_H_
