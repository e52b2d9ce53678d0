// CheckpointReceiver: the one place a checkpoint that arrives in chunks becomes a directory —
// the coordinator's upload sessions, the worker's fetch of a resume point or dependency, and the
// CLI's `peco download` all use it. Every byte is hashed as it arrives; nothing is visible at the
// destination until the whole checkpoint matched its manifest (common/checkpoint_manifest.h).
//
// Life of a receiver:
//   1. Start() creates a fresh staging directory (removing a leftover of an interrupted receive).
//   2. Append() writes one chunk of one file. A file's chunks come in order: the offset must
//      equal the bytes received so far for that file, or start before it with exactly the bytes
//      already received there (a retried chunk: only the new bytes are written). Files may
//      interleave. When the manifest is known up front (Options::expected) a chunk must be of a
//      listed file and may not go past its size.
//   3. Seal() checks that the received files are exactly the manifest's with its sizes and
//      digests (a listed empty file needs no chunk), fsyncs them, writes MANIFEST and fsyncs the
//      staging directory: it now holds a complete checkpoint.
//   4. Publish() renames the staging directory onto the destination atomically and fsyncs the
//      parent: the destination exists whole or not at all.
// A receiver destroyed before Publish() succeeded removes its staging directory.
//
//   CheckpointReceiver::Options options;
//   options.staging_dir = StagingDirFor("/w/attempt-2/resume");
//   options.label = "checkpoint step-000000000100";
//   options.expected = manifest;
//   ASSIGN_OR_RETURN(auto receiver, CheckpointReceiver::Start(std::move(options)));
//   for (...) RETURN_IF_ERROR(receiver->Append(name, offset, bytes));
//   RETURN_IF_ERROR(receiver->Seal().status());
//   RETURN_IF_ERROR(receiver->Publish("/w/attempt-2/resume"));
//
// Errors (messages name the checkpoint's label and the file): InvalidArgument for a bad file name
// or a chunk of a file the expected manifest does not list; FailedPrecondition for a chunk out of
// order or a retried chunk whose bytes differ from those received; DataLoss for more bytes than
// the expected size, and at Seal for a missing, extra, short or corrupt file; ResourceExhausted
// for a file over max_file_bytes, a file beyond max_files, bytes beyond max_total_bytes or a
// chunk that would leave less than min_free_bytes free on the disk; AlreadyExists when the
// destination exists and is not an empty directory; file-system errors as common/file_util.h maps
// them. After an error from Append the receiver may still be used (the refused chunk wrote
// nothing); after an error from Seal or Publish it is spent.
//
// Thread-safety: not thread-safe; one thread (or the caller's mutex) drives a receiver.
#ifndef PECO_COMMON_CHECKPOINT_RECEIVER_H_
#define PECO_COMMON_CHECKPOINT_RECEIVER_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/checkpoint_manifest.h"

namespace peco {

// The staging directory used for a checkpoint bound for `dest`: a hidden sibling,
// `<parent>/.<name>.partial`, on the same file system so that Publish is one rename.
std::string StagingDirFor(const std::string& dest);

class CheckpointReceiver {
 public:
  struct Options {
    // Directory the files are written into; created by Start. Required.
    std::string staging_dir;
    // Names the checkpoint in errors ("checkpoint step-000000000100 of job-000003").
    std::string label = "checkpoint";
    // The manifest, when it is known before the bytes (downloads). Validated by Start.
    std::optional<Manifest> expected;
    // Largest file accepted.
    int64_t max_file_bytes = std::numeric_limits<int64_t>::max();
    // Most files and bytes (all files together) one checkpoint may bring.
    int max_files = std::numeric_limits<int>::max();
    int64_t max_total_bytes = std::numeric_limits<int64_t>::max();
    // Bytes that must stay free on the staging directory's file system: a chunk that would
    // leave less is refused, so a checkpoint cannot fill the disk the service's state is on.
    int64_t min_free_bytes = 0;

    // InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // Validates the options (and the expected manifest, see ValidateManifest), removes whatever
  // is at `staging_dir` and creates it empty.
  static absl::StatusOr<std::unique_ptr<CheckpointReceiver>> Start(Options options);

  CheckpointReceiver(const CheckpointReceiver&) = delete;
  CheckpointReceiver& operator=(const CheckpointReceiver&) = delete;
  // Closes the files and removes the staging directory unless Publish() succeeded.
  ~CheckpointReceiver();

  // Writes one chunk (see the file comment). An empty chunk at offset 0 creates an empty file.
  absl::Status Append(absl::string_view name, int64_t offset, absl::string_view data);

  // Verifies against `manifest`, or the expected one when null (FailedPrecondition when neither
  // is given), and makes the staging directory a complete checkpoint. Returns the manifest
  // sorted by name with lower-case digests. A manifest given here is validated like an expected
  // one (InvalidArgument).
  absl::StatusOr<Manifest> Seal(const Manifest* manifest = nullptr);

  // Renames the sealed staging directory onto `dest`, which must not exist or be an empty
  // directory, and fsyncs dest's parent. FailedPrecondition when not sealed.
  absl::Status Publish(const std::string& dest);

  // Bytes written so far (retried bytes counted once).
  int64_t bytes_received() const { return bytes_received_; }
  const std::string& staging_dir() const { return options_.staging_dir; }

 private:
  struct File;

  explicit CheckpointReceiver(Options options);
  absl::Status Refuse(absl::StatusCode code, absl::string_view what) const;
  absl::StatusOr<File*> OpenFile(const std::string& name);
  void CloseFiles();

  const Options options_;
  std::map<std::string, std::unique_ptr<File>> files_;  // by name
  int64_t bytes_received_ = 0;
  bool sealed_ = false;
  bool spent_ = false;  // a Seal or Publish failed
  bool published_ = false;
};

}  // namespace peco

#endif  // PECO_COMMON_CHECKPOINT_RECEIVER_H_
