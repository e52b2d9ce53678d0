// CheckpointDownload: writes a checkpoint that arrives as chunks (FetchCheckpoint) into a
// directory, verifying every byte against the checkpoint's manifest before the directory appears.
//
// The files are written into `<dest>.partial`; Finish() checks that every manifest entry arrived
// whole with its size and SHA-256, writes MANIFEST (sorted `<sha256> <size> <name>` lines, the
// trainer's format), fsyncs, and renames the directory to `dest`. A download that fails, or is
// destroyed before Finish() succeeded, removes `<dest>.partial`: `dest` exists whole or not at
// all.
//
//   ASSIGN_OR_RETURN(auto download, CheckpointDownload::Begin(info, "/w/attempt-2/resume"));
//   for (...) RETURN_IF_ERROR(download->AddChunk(chunk));
//   RETURN_IF_ERROR(download->Finish());
//
// Thread-safety: not thread-safe; one thread drives a download.
#ifndef PECO_WORKER_CHECKPOINT_DOWNLOAD_H_
#define PECO_WORKER_CHECKPOINT_DOWNLOAD_H_

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/sha256.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::worker {

class CheckpointDownload {
 public:
  // Starts a download of `info` into `dest`. Errors: InvalidArgument when the manifest is empty
  // or names a bad file (ValidateCheckpointFileName) twice; AlreadyExists when `dest` exists;
  // Internal when `<dest>.partial` cannot be created.
  static absl::StatusOr<std::unique_ptr<CheckpointDownload>> Begin(const v1::CheckpointInfo& info,
                                                                   const std::string& dest);

  CheckpointDownload(const CheckpointDownload&) = delete;
  CheckpointDownload& operator=(const CheckpointDownload&) = delete;
  // Removes `<dest>.partial` unless Finish() succeeded.
  ~CheckpointDownload();

  // Appends a chunk. Files may come in any order but each file's chunks in order: the offset
  // must equal the bytes received so far. DataLoss (naming the file) for a file not in the
  // manifest, an out-of-order offset or more bytes than the manifest says; Internal on a write
  // error. After an error the download is unusable.
  absl::Status AddChunk(const v1::CheckpointChunk& chunk);

  // Verifies every file (DataLoss naming the first that is short or whose SHA-256 differs),
  // writes MANIFEST and publishes `dest`. Empty files need no chunk.
  absl::Status Finish();

  // Bytes received so far.
  int64_t bytes_received() const { return bytes_received_; }

 private:
  struct File {
    const v1::ManifestEntry* entry = nullptr;
    std::FILE* out = nullptr;
    int64_t received = 0;
    std::unique_ptr<Sha256Hasher> hasher;
  };

  CheckpointDownload(v1::CheckpointInfo info, std::string dest);
  absl::Status OpenFile(File& file);
  void CloseAll();

  const v1::CheckpointInfo info_;
  const std::string dest_;
  const std::string partial_;
  std::map<std::string, File> files_;  // by name, one per manifest entry
  int64_t bytes_received_ = 0;
  bool failed_ = false;
  bool published_ = false;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_CHECKPOINT_DOWNLOAD_H_
