// CheckpointIngest: the coordinator's checkpoint side, in one place — upload sessions (begin,
// chunks, commit, abort), recording a committed checkpoint (JobStore record, metrics, the
// `checkpoint_committed` event), retention, and verified reads (every use of a stored
// checkpoint as a resume point, a dependency or a download verifies it first and counts a
// mismatch). The bytes are the CheckpointFileStore's; the records are the JobStore's.
//
// Which attempt may upload is the Coordinator's decision (it checks the attempt is current under
// its lock before calling Begin); this class trusts its caller on that.
//
// Durability: Commit writes the record to the JobStore but does not Sync(); the Coordinator syncs
// before it acknowledges (coordinator.h, NOTE [durability]).
//
// Thread-safety: thread-safe; its own state (the verification cache) has its own mutex, and its
// borrowed parts are thread-safe.
//
// Ownership: every pointer is borrowed and must outlive this object; `metrics` may be null.
#ifndef PECO_COORDINATOR_CHECKPOINT_INGEST_H_
#define PECO_COORDINATOR_CHECKPOINT_INGEST_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/checkpoint_manifest.h"
#include "common/clock.h"
#include "coordinator/checkpoint_file_store.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/job_store.h"
#include "peco/v1/checkpoint.pb.h"

namespace peco::coordinator {

// An open checkpoint upload (see CheckpointIngest::Begin).
struct CheckpointUpload {
  uint64_t session = 0;
  std::string checkpoint_id;
  v1::CheckpointHeader header;
};

class CheckpointIngest {
 public:
  // `keep_checkpoints`: committed checkpoints kept per job, newest by step, besides every final
  // one.
  CheckpointIngest(JobStore* store, CheckpointFileStore* files, JobEventHub* events,
                   CoordinatorMetrics* metrics, Clock* clock, int keep_checkpoints);
  CheckpointIngest(const CheckpointIngest&) = delete;
  CheckpointIngest& operator=(const CheckpointIngest&) = delete;

  // Opens an upload session for `header` (its checkpoint id is derived from job, attempt and
  // step). InvalidArgument naming the header field for a malformed header.
  absl::StatusOr<CheckpointUpload> Begin(const v1::CheckpointHeader& header);
  absl::Status Append(const CheckpointUpload& upload, const v1::CheckpointChunk& chunk);
  // Verifies and publishes the bytes, records the checkpoint (a retried upload of a recorded one
  // returns that record), publishes `checkpoint_committed` and applies retention. The upload is
  // over whatever this returns; on an error nothing of it stays on disk or in the store.
  absl::StatusOr<v1::CheckpointInfo> Commit(const CheckpointUpload& upload,
                                            const v1::CheckpointManifest& manifest);
  void Abort(const CheckpointUpload& upload);
  // Ends uploads idle for the file store's upload_idle_timeout (CheckpointFileStore::
  // AbortIdleUploads); returns how many.
  int AbortIdleUploads() { return files_->AbortIdleUploads(); }

  // Checkpoints other jobs still need (a fork's init_from, a dependency named by checkpoint id):
  // retention keeps them besides its own choice. `pinned` is called without any of the
  // ingest's locks held and may take the caller's; set once, before uploads can commit.
  void SetPinnedCheckpoints(std::function<std::set<std::string>()> pinned) {
    pinned_ = std::move(pinned);
  }

  // Deletes the job's checkpoints beyond the newest `keep_checkpoints` (final ones and pinned
  // ones are kept):
  // the record first, then the files, so a crash leaves at most an orphan directory, which
  // RemoveOrphans() removes at the next start. Removes nothing it did not choose from the
  // records: a checkpoint committed concurrently is never swept away.
  absl::Status ApplyRetention(const std::string& job_id);

  // Removes the checkpoint directories of `job_ids` that have no record (left by a crash between
  // deleting a record and its files, or between publishing a checkpoint and recording it). Only
  // while no upload can commit: the Coordinator calls it from Recover(), before serving.
  absl::Status RemoveOrphans(const std::vector<std::string>& job_ids);

  // Verifies every file of a stored checkpoint against its MANIFEST; DataLoss (counted as a
  // verification failure) naming the file on a mismatch. A checkpoint verified once is not
  // hashed again while MANIFEST and every listed file keep their inode, size and modification
  // time, for up to `kVerifiedFor`: a restarting job's resume point is looked at every tick,
  // and a request must not make the coordinator hash a whole checkpoint each time.
  absl::StatusOr<Manifest> Verify(const std::string& job_id, const std::string& checkpoint_id);
  static constexpr absl::Duration kVerifiedFor = absl::Hours(1);
  // Where a restarting job resumes: its newest checkpoint (by step, then attempt) that verifies,
  // as (id, step); ("", 0) when none does (a fresh start). Refused ones are logged and counted.
  // Reads checkpoints whole: call without the Coordinator's lock.
  std::pair<std::string, int64_t> NewestVerified(const std::string& job_id);
  // The record of a committed checkpoint, verified (NotFound for an unknown id). With `only`,
  // a download of some of its files, only those files are hashed (unless the whole checkpoint
  // is verified in the cache): one file of a large checkpoint costs that file.
  absl::StatusOr<v1::CheckpointInfo> Open(const std::string& checkpoint_id,
                                          const std::vector<std::string>& only = {});
  // A chunk of one file of a checkpoint returned by Open().
  absl::StatusOr<std::string> ReadChunk(const v1::CheckpointInfo& info,
                                        const std::string& file_name, int64_t offset,
                                        int64_t max_bytes);

 private:
  // What a verified checkpoint's files looked like (inode, size, mtime in ns of MANIFEST and of
  // every listed file, in manifest order) and when.
  struct Verified {
    std::vector<int64_t> stamp;
    Manifest manifest;
    absl::Time at;
  };
  // The stamp of `dir`'s files as `manifest` lists them; empty when one cannot be stat'ed.
  static std::vector<int64_t> StampOf(const std::string& dir, const Manifest& manifest);
  // The cached verification of `dir` when its files have not changed since (nullopt otherwise).
  std::optional<Manifest> CachedVerification(const std::string& job_id,
                                             const std::string& checkpoint_id,
                                             std::vector<int64_t>* stamp);

  JobStore* const store_;
  CheckpointFileStore* const files_;
  JobEventHub* const events_;
  CoordinatorMetrics* const metrics_;
  Clock* const clock_;
  const int keep_checkpoints_;
  std::function<std::set<std::string>()> pinned_;  // see SetPinnedCheckpoints

  absl::Mutex verified_mu_;
  std::map<std::string, Verified> verified_ ABSL_GUARDED_BY(verified_mu_);  // by checkpoint dir
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_CHECKPOINT_INGEST_H_
