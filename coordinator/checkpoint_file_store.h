// CheckpointFileStore: the coordinator's on-disk store of checkpoint blobs (DESIGN.md sections 5
// and 7). The records about checkpoints live in the JobStore; this class keeps the bytes.
//
// Layout: `<data_dir>/checkpoints/<job_id>/<checkpoint_id>/` holds the checkpoint's files and a
// MANIFEST with one line per file, `<sha256> <size> <name>` (the trainer's format, sorted by
// name). An upload is written into `<data_dir>/checkpoints/<job_id>/.staging-<checkpoint_id>-<n>`
// and becomes visible only through an atomic rename at Commit, after every size and SHA-256 has
// been verified and every file, the MANIFEST and both directories have been fsynced: a committed
// checkpoint exists whole or not at all. Directories whose names start with '.' are never
// committed checkpoints; leftovers of a previous process are removed by Open().
//
// Uploads: BeginUpload opens a session; AppendChunk adds the bytes of one file in order (the
// offset must equal the bytes received so far for that file; a retried chunk whose bytes were
// already received is accepted when they are identical); Commit verifies and publishes; Abort
// discards. Commit always ends the session, whatever it returns; a failed Commit leaves nothing
// committed and removes the staging directory.
//
// Paths: job ids and checkpoint ids must match [A-Za-z0-9._-]+ and not be "." or ".."; file
// names follow the checkpoint contract's rule (common/checkpoint_manifest.h). No request can name
// a path outside the data directory. The bytes of an upload go through the one chunked receiver
// (common/checkpoint_receiver.h), whose errors AppendChunk and Commit return.
//
// Errors: InvalidArgument (naming the field) for malformed requests, NotFound for an unknown
// session, checkpoint or file, FailedPrecondition for an out-of-order or conflicting chunk,
// ResourceExhausted for a file over max_file_bytes or an upload over the other limits of Options
// (files, bytes, free disk, open uploads), DataLoss (naming the file) when bytes do not
// match their manifest, AlreadyExists when a different checkpoint was committed under the same
// id, Internal for file-system errors (naming the path).
//
// Thread-safety: every public method is thread-safe. A mutex guards the session table; each
// session has its own mutex, so uploads of different checkpoints proceed concurrently, and the
// chunks of one session are applied one at a time. A second mutex serializes the final
// existence check and rename of Commit, Delete and ApplyRetention. One process should own a
// data directory at a time.
//
// Usage:
//   CheckpointFileStore::Options options;
//   options.data_dir = "/var/lib/peco";
//   ASSIGN_OR_RETURN(std::unique_ptr<CheckpointFileStore> store,
//                    CheckpointFileStore::Open(options));
//   ASSIGN_OR_RETURN(uint64_t session, store->BeginUpload("job-000001", 1, "step-000000000100",
//                                                         100));
//   RETURN_IF_ERROR(store->AppendChunk(session, "model.pt", 0, bytes));
//   ASSIGN_OR_RETURN(v1::CheckpointInfo info, store->Commit(session, manifest_entries));
#ifndef PECO_COORDINATOR_CHECKPOINT_FILE_STORE_H_
#define PECO_COORDINATOR_CHECKPOINT_FILE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/checkpoint_manifest.h"
#include "common/clock.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::coordinator {

class CheckpointFileStore {
 public:
  struct Options {
    // The coordinator's data directory; checkpoints go under `<data_dir>/checkpoints`.
    std::string data_dir;
    // Largest chunk AppendChunk accepts and ReadChunk returns.
    int64_t max_chunk_bytes = int64_t{4} << 20;
    // Largest file an upload may contain.
    int64_t max_file_bytes = int64_t{64} << 30;
    // Most files and bytes one upload may bring, and the bytes that must stay free on the data
    // directory's disk (a chunk that would leave less is refused: a checkpoint cannot fill the
    // disk the job store is on).
    int max_files_per_checkpoint = 4096;
    int64_t max_checkpoint_bytes = int64_t{256} << 30;
    int64_t min_free_bytes = int64_t{1} << 30;
    // Most uploads open at once, and how long one may go without a chunk before
    // AbortIdleUploads() ends it (its bytes are removed; the sender starts again).
    int max_open_uploads = 64;
    absl::Duration upload_idle_timeout = absl::Minutes(10);
    // Decides idleness; borrowed, must outlive the store.
    const Clock* clock = RealClock::Get();

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // Validates the options, creates `<data_dir>/checkpoints` when missing and removes staging
  // directories left by a previous process.
  static absl::StatusOr<std::unique_ptr<CheckpointFileStore>> Open(const Options& options);

  ~CheckpointFileStore();
  CheckpointFileStore(const CheckpointFileStore&) = delete;
  CheckpointFileStore& operator=(const CheckpointFileStore&) = delete;

  // Opens an upload session for checkpoint `checkpoint_id` of `job_id` (attempt and step are
  // recorded in the CheckpointInfo that Commit returns). ResourceExhausted when
  // max_open_uploads are open even after idle ones were aborted.
  absl::StatusOr<uint64_t> BeginUpload(absl::string_view job_id, int64_t attempt,
                                       absl::string_view checkpoint_id, int64_t step);

  // Appends `data` to `file_name` at `offset`, which must equal the bytes received so far for
  // that file (0 for a new file; an empty chunk at 0 creates an empty file). A chunk that starts
  // before that point must repeat the received bytes exactly (a retry): it is accepted, and only
  // its bytes past the received ones are appended.
  absl::Status AppendChunk(uint64_t session, absl::string_view file_name, int64_t offset,
                           absl::string_view data);

  // Verifies that the received files are exactly the manifest's, with its sizes and SHA-256
  // digests, then writes MANIFEST and publishes the checkpoint atomically. Committing an id that
  // already exists with an identical manifest returns OK; a different one is AlreadyExists.
  // Returns the checkpoint's info (id, job, attempt, step, bytes, manifest sorted by name;
  // committed_time_us and final are left for the caller).
  absl::StatusOr<v1::CheckpointInfo> Commit(uint64_t session, const Manifest& manifest);

  // Ends a session and removes what it received. NotFound for an unknown session.
  absl::Status Abort(uint64_t session);

  // Ends every session that received nothing for upload_idle_timeout and removes what it
  // received; their next chunk or commit is NotFound. Returns how many ended. The coordinator
  // calls it every tick.
  int AbortIdleUploads();

  // Verifies every file of a committed checkpoint against its MANIFEST (DataLoss naming the
  // file on a mismatch) and returns the manifest, sorted by name.
  absl::StatusOr<Manifest> OpenForRead(absl::string_view job_id, absl::string_view checkpoint_id);

  // Up to min(max_bytes, max_chunk_bytes) bytes of a committed file from `offset`; empty at the
  // end of the file, OutOfRange past it.
  absl::StatusOr<std::string> ReadChunk(absl::string_view job_id, absl::string_view checkpoint_id,
                                        absl::string_view file_name, int64_t offset,
                                        int64_t max_bytes);

  // Removes a committed checkpoint; a missing one is OK.
  absl::Status Delete(absl::string_view job_id, absl::string_view checkpoint_id);

  // Removes every committed checkpoint of `job_id` whose id is not in `keep_ids`.
  absl::Status ApplyRetention(absl::string_view job_id, const std::vector<std::string>& keep_ids);

  // Ids of the committed checkpoints of `job_id`, sorted.
  absl::StatusOr<std::vector<std::string>> ListCheckpoints(absl::string_view job_id);

  // Path of a committed checkpoint's directory (it may not exist).
  std::string CheckpointDir(absl::string_view job_id, absl::string_view checkpoint_id) const;

 private:
  struct Session;

  explicit CheckpointFileStore(const Options& options);

  std::string JobDir(absl::string_view job_id) const;
  absl::StatusOr<std::shared_ptr<Session>> FindSession(uint64_t id);
  std::shared_ptr<Session> TakeSession(uint64_t id);
  absl::Status RemoveCommitted(const std::string& job_dir, const std::string& checkpoint_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(publish_mu_);

  const Options options_;
  const std::string root_;  // <data_dir>/checkpoints

  absl::Mutex mu_;
  uint64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);

  // Serializes publishing and removing committed directories.
  absl::Mutex publish_mu_;
  uint64_t next_trash_ ABSL_GUARDED_BY(publish_mu_) = 1;
};

// OK when `id` may name a directory of the store: 1..255 characters of [A-Za-z0-9._-], not "."
// or "..". InvalidArgument naming `field` otherwise. Pure; the job log store uses it too.
absl::Status ValidateStoreId(absl::string_view field, absl::string_view id);

// `info` with its manifest (and bytes) limited to the files named in `names`, in manifest order
// (a name given twice counts once). NotFound naming the first name the checkpoint lacks and
// listing the files it has; InvalidArgument when `names` is empty. Pure.
absl::StatusOr<v1::CheckpointInfo> SelectCheckpointFiles(
    const v1::CheckpointInfo& info, const google::protobuf::RepeatedPtrField<std::string>& names);

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_CHECKPOINT_FILE_STORE_H_
