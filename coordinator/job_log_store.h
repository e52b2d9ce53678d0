// JobLogStore: the trainers' logs as the workers forward them (LogChunk reports), one file per
// job, attempt and rank: `<dir>/<job_id>/attempt-<a>-rank-<r>.log`. `peco logs JOB [-f]` reads
// them through JobService.StreamLogs. docs/SERVICE.md "Logs".
//
// Offsets: a chunk carries its position in the worker's file. Bytes already stored (a chunk
// resent after a lost acknowledgement) are skipped. A chunk that starts past what was stored
// (the worker dropped reports while its buffer was full, or a coordinator crash lost unsynced
// bytes) is preceded by the line "[peco: N bytes of this log were lost]". Once a log holds
// max_bytes_per_log, it ends with a "[peco: log truncated ...]" line and later chunks are
// dropped (the whole log stays in the worker's work_dir). The bytes of these marker lines are
// recorded beside the log (`<log>.marks`, one number per line), so a reopened store maps worker
// offsets to its own again.
//
// Durability: appends are not fsynced (logs are diagnostics; a crash may lose the last seconds,
// which then show as a lost-bytes line). The marks file is.
//
// Errors: InvalidArgument naming the field for a bad job id, attempt or rank; NotFound for a log
// that does not exist; Internal naming the path for file-system errors.
//
// Thread-safety: thread-safe. One mutex guards the index and is held across the small file
// writes of Append, so appends to one log are ordered. WaitForChange blocks without it.
#ifndef PECO_COORDINATOR_JOB_LOG_STORE_H_
#define PECO_COORDINATOR_JOB_LOG_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "peco/v1/metrics.pb.h"

namespace peco::coordinator {

struct JobLogStoreOptions {
  // Directory holding one sub-directory per job; created when missing. Required.
  std::string dir;
  // Bytes kept per (job, attempt, rank) log before it is truncated.
  int64_t max_bytes_per_log = int64_t{64} << 20;

  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

// One stored log of a job.
struct StoredLog {
  int64_t attempt = 0;
  int32_t rank = 0;
  int64_t bytes = 0;  // stored bytes, marker lines included
  bool operator==(const StoredLog& o) const {
    return attempt == o.attempt && rank == o.rank && bytes == o.bytes;
  }
};

class JobLogStore {
 public:
  static absl::StatusOr<std::unique_ptr<JobLogStore>> Open(JobLogStoreOptions options);
  JobLogStore(const JobLogStore&) = delete;
  JobLogStore& operator=(const JobLogStore&) = delete;

  // Stores `chunk` at its offset (see the file comment) and wakes WaitForChange callers.
  absl::Status Append(const v1::LogChunk& chunk);

  // Makes every byte appended so far durable (fsyncs the files written since the last Sync and
  // the directories created for them). The RPC layer calls it before it acknowledges a report
  // stream, so acknowledged log lines survive a crash of the machine. Errors name the path; the
  // files stay marked for the next Sync.
  absl::Status Sync();

  // The job's logs, by attempt and then rank; empty when it has none.
  absl::StatusOr<std::vector<StoredLog>> List(const std::string& job_id);

  // Up to `max_bytes` of one log from stored position `offset` (empty at the end).
  absl::StatusOr<std::string> Read(const std::string& job_id, int64_t attempt, int32_t rank,
                                   int64_t offset, int64_t max_bytes);

  // Counter that grows with every change to the job's logs (0 before the first).
  uint64_t Version(const std::string& job_id);

  // Blocks until the job's Version() differs from `seen`, Shutdown() is called or `deadline`
  // passes; returns whether the version changed.
  bool WaitForChange(const std::string& job_id, uint64_t seen, absl::Time deadline);

  // Wakes every waiter; later waits return at once.
  void Shutdown();
  bool shut_down();

 private:
  struct LogState {
    int64_t stored = 0;  // bytes in the file
    // Stored position minus worker offset at the end of the file: marker bytes written less
    // the worker bytes they stand for (the sum of the marks file).
    int64_t shift = 0;
    bool truncated = false;
  };
  using LogKey = std::pair<int64_t, int32_t>;  // attempt, rank
  // Files and directories written since the last Sync.
  std::set<std::string> unsynced_files_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> unsynced_dirs_ ABSL_GUARDED_BY(mu_);
  struct JobLogs {
    std::map<LogKey, LogState> logs;
    uint64_t version = 0;
  };

  explicit JobLogStore(JobLogStoreOptions options) : options_(std::move(options)) {}
  std::string LogPath(const std::string& job_id, const LogKey& key) const;
  // The job's index, read from its directory on first use.
  absl::StatusOr<JobLogs*> LoadLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends `data` to the log file and counts it.
  absl::Status WriteLocked(const std::string& path, LogState& state, const std::string& data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a marker line standing for `worker_bytes` of the worker's file and records the shift
  // (or, with `truncated`, the end of the log) in the marks file.
  absl::Status MarkLocked(const std::string& path, LogState& state, const std::string& line,
                          int64_t worker_bytes, bool truncated) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const JobLogStoreOptions options_;
  absl::Mutex mu_;
  std::map<std::string, JobLogs> jobs_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_JOB_LOG_STORE_H_
