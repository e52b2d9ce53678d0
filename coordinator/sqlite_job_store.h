// SqliteJobStore: the JobStore (coordinator/job_store.h) on one SQLite database file.
//
// Durability (NOTE [group commit]): the database runs in WAL mode with synchronous=NORMAL, and
// every public method is one transaction. An OK return means the writes are in the WAL through
// the operating system: they survive a crash of the process. Sync() then makes every write that
// returned before it durable against a crash of the machine, with one fdatasync() of the WAL for
// all the callers waiting at once (group commit). SQLite itself syncs the WAL before each
// checkpoint and the database after it, so what Sync() covered stays durable. Checkpoints run on
// a background thread with a connection of their own (Options::checkpoint_interval), so their
// flushes never hold up a write. Together this is
// what synchronous=FULL gives (a WAL sync per commit) without paying a disk flush per write
// while the coordinator holds its lock.
// The schema version is kept in PRAGMA user_version; Open() creates a fresh database, accepts
// the current version and refuses (FailedPrecondition) a newer one.
//
// Records are serialized proto messages next to the columns that queries filter on.
//
// Thread-safety: every public method is thread-safe (one internal mutex serializes them; SQLite
// itself is opened without its own locking). One process should own a database file at a time.
//
// Usage:
//   SqliteJobStore::Options options;
//   options.path = "/var/lib/peco/coordinator.db";
//   ASSIGN_OR_RETURN(std::unique_ptr<SqliteJobStore> store, SqliteJobStore::Open(options));
//   ASSIGN_OR_RETURN(CreateJobResult result, store->CreateJob(new_job));
#ifndef PECO_COORDINATOR_SQLITE_JOB_STORE_H_
#define PECO_COORDINATOR_SQLITE_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace peco::coordinator {

class SqliteJobStore : public JobStore {
 public:
  // The schema version this code writes (PRAGMA user_version).
  // 1: jobs, attempts, workers, checkpoints, metric points; 2: job owners and the audit log.
  static constexpr int kSchemaVersion = 3;

  struct Options {
    // Database file; its directory must exist. Created when missing.
    std::string path;
    // How long a statement waits for a lock held by another connection, in milliseconds.
    int busy_timeout_ms = 5000;
    // How often a background thread checkpoints the WAL into the database (on a connection of
    // its own, without blocking writers). Zero leaves checkpoints to SQLite, which runs them in
    // the committing call every 1000 pages, flushes included.
    absl::Duration checkpoint_interval = absl::Seconds(1);

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // Opens (creating if needed) the database at options.path. InvalidArgument for bad options,
  // FailedPrecondition for a database written by a newer schema, Internal for SQLite errors.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const Options& options);

  // Finalizes the statements and closes the database.
  ~SqliteJobStore() override;

  absl::StatusOr<CreateJobResult> CreateJob(const NewJob& new_job) override;
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id) override;
  absl::Status Sync() override;
  absl::StatusOr<JobPage> ListJobs(const JobQuery& query) override;
  absl::StatusOr<v1::Job> UpdateJobState(const JobStateUpdate& update) override;
  absl::StatusOr<v1::Job> UpdateJobControl(const JobControlUpdate& update) override;
  absl::StatusOr<v1::Attempt> BeginAttempt(const NewAttempt& attempt) override;
  absl::StatusOr<std::vector<absl::StatusOr<StartedAttempt>>> BeginAttempts(
      const std::vector<NewAttempt>& attempts) override;
  absl::StatusOr<std::vector<v1::Attempt>> ListAttempts(const std::string& job_id) override;

  absl::Status UpsertWorker(const v1::WorkerInfo& worker) override;
  absl::StatusOr<v1::WorkerInfo> GetWorker(const std::string& worker_id) override;
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers() override;

  absl::Status AddCheckpoint(const v1::CheckpointInfo& info) override;
  absl::StatusOr<v1::CheckpointInfo> GetCheckpoint(const std::string& checkpoint_id) override;
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id) override;
  absl::Status DeleteCheckpoint(const std::string& checkpoint_id) override;

  absl::Status AppendAudit(const v1::AuditEntry& entry) override;
  absl::StatusOr<std::vector<v1::AuditEntry>> ListAudit(const std::string& job_id,
                                                        int limit) override;

  absl::StatusOr<int64_t> AppendMetricPoints(const std::string& job_id, int64_t attempt,
                                             const std::vector<v1::MetricPoint>& points) override;
  absl::StatusOr<std::vector<v1::MetricPoint>> ListMetricPoints(const MetricQuery& query) override;

 private:
  class Statement;  // a borrowed cached prepared statement, reset when it goes out of scope

  SqliteJobStore(sqlite3* db, std::string path);
  // Counts commits (sqlite3_commit_hook), under mu_.
  static int OnCommit(void* store);
  // The checkpointer thread: a PASSIVE checkpoint every `interval` until stopped.
  void RunCheckpointer(absl::Duration interval);
  // Runs a cached statement without results (transaction control).
  absl::Status RunPrepared(const char* sql, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // fdatasync() of the WAL file. Called without any lock.
  absl::Status SyncWal() const;

  // Runs SQL without results (pragmas, schema, transaction control).
  absl::Status Exec(const std::string& sql, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the cached prepared statement for `sql`, preparing it on first use.
  absl::StatusOr<sqlite3_stmt*> Prepare(const std::string& sql, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MigrateSchema() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back when it fails.
  template <typename Fn>
  auto InTransaction(const char* operation, Fn body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_)
      -> decltype(body());

  absl::StatusOr<v1::Job> LoadJob(const std::string& job_id, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the new job `job` (row `seq`) to the label and dependency indexes of ListJobs.
  absl::Status IndexJob(int64_t seq, const v1::Job& job, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StoreJob(const v1::Job& job, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Attempt> LoadAttempt(const std::string& job_id, int64_t number,
                                          const char* operation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StoreAttempt(const v1::Attempt& attempt, const char* operation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // BeginAttempt()'s work inside an open transaction. The outer status is a storage failure;
  // the inner one a refusal, which has written nothing.
  absl::StatusOr<absl::StatusOr<StartedAttempt>> BeginAttemptInTransaction(
      const NewAttempt& request, const char* operation) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* const db_;  // owned; used only under mu_
  const std::string path_;
  std::map<std::string, sqlite3_stmt*> statements_ ABSL_GUARDED_BY(mu_);  // owned
  uint64_t commits_ ABSL_GUARDED_BY(mu_) = 0;  // transactions committed so far

  // Background checkpoints: checkpoint_db_ is used only by checkpointer_.
  sqlite3* checkpoint_db_ = nullptr;
  std::thread checkpointer_;
  absl::Mutex checkpoint_mu_;
  bool stop_checkpointer_ ABSL_GUARDED_BY(checkpoint_mu_) = false;

  // Group commit. Lock order: sync_mu_ before mu_. commits_ is read under mu_, not atomically:
  // the commit hook counts a commit before its WAL frames are written, and mu_ is released
  // only after they are.
  absl::Mutex sync_mu_;
  uint64_t synced_ ABSL_GUARDED_BY(sync_mu_) = 0;   // commits known durable
  bool syncing_ ABSL_GUARDED_BY(sync_mu_) = false;  // an fdatasync() is under way
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_SQLITE_JOB_STORE_H_
