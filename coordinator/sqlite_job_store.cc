#include "coordinator/sqlite_job_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_writer.h"
#include "common/status_macros.h"
#include "coordinator/job_record_rules.h"
#include "coordinator/job_state_machine.h"
#include "google/protobuf/util/message_differencer.h"

namespace peco::coordinator {
namespace {

namespace fs = std::filesystem;
using ::google::protobuf::util::MessageDifferencer;

absl::Status SqliteError(sqlite3* db, int rc, const char* operation) {
  std::string message = absl::StrCat(operation, ": sqlite: ", sqlite3_errstr(rc));
  if (db != nullptr) absl::StrAppend(&message, " (", sqlite3_errmsg(db), ")");
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

constexpr const char* kSchemaV1[] = {
    "CREATE TABLE jobs ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  client_request_id TEXT,"
    "  state INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  record BLOB NOT NULL)",
    "CREATE UNIQUE INDEX jobs_by_client_request_id ON jobs(client_request_id)"
    "  WHERE client_request_id IS NOT NULL",
    "CREATE TABLE attempts ("
    "  job_id TEXT NOT NULL REFERENCES jobs(id),"
    "  number INTEGER NOT NULL,"
    "  resume_step INTEGER NOT NULL,"
    "  record BLOB NOT NULL,"
    "  PRIMARY KEY (job_id, number)) WITHOUT ROWID",
    "CREATE TABLE workers (id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE checkpoints ("
    "  id TEXT PRIMARY KEY,"
    "  job_id TEXT NOT NULL REFERENCES jobs(id),"
    "  attempt INTEGER NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  record BLOB NOT NULL) WITHOUT ROWID",
    "CREATE INDEX checkpoints_by_job ON checkpoints(job_id, step, attempt)",
    "CREATE TABLE metric_points ("
    "  job_id TEXT NOT NULL REFERENCES jobs(id),"
    "  attempt INTEGER NOT NULL,"
    "  rank INTEGER NOT NULL,"
    "  step INTEGER NOT NULL,"
    "  name TEXT NOT NULL,"
    "  value REAL NOT NULL,"
    "  time_us INTEGER NOT NULL,"
    "  PRIMARY KEY (job_id, attempt, rank, step, name)) WITHOUT ROWID",
};

// Version 1 databases are upgraded in place: their jobs become the admin's (kAdminUser, as
// JobOwner() reads a record without an owner).
constexpr const char* kSchemaV2[] = {
    "ALTER TABLE jobs ADD COLUMN owner TEXT",
    "CREATE INDEX jobs_by_owner ON jobs(owner, seq)",
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY,"
    "  job_id TEXT NOT NULL,"
    "  record BLOB NOT NULL)",
    "CREATE INDEX audit_by_job ON audit(job_id, seq)",
};

// Version 3: the indexes of ListJobs' label and dependency filters, filled from the job records
// when a database of an earlier version is upgraded (SqliteJobStore::IndexJob).
constexpr const char* kSchemaV3[] = {
    "ALTER TABLE jobs ADD COLUMN depends_on TEXT",
    "CREATE INDEX jobs_by_dependency ON jobs(depends_on, seq) WHERE depends_on IS NOT NULL",
    "CREATE TABLE job_labels ("
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  seq INTEGER NOT NULL REFERENCES jobs(seq),"
    "  PRIMARY KEY (key, value, seq)) WITHOUT ROWID",
};

template <typename Message>
absl::StatusOr<Message> ParseRecord(const void* data, int size, const char* operation) {
  Message message;
  if (!message.ParseFromArray(data, size)) {
    return absl::DataLossError(
        absl::StrCat(operation, ": corrupt ", Message::descriptor()->name(), " record"));
  }
  return message;
}

}  // namespace

// A cached prepared statement with typed binds and reads; resets and clears bindings when it goes
// out of scope so the cache can hand it out again.
class SqliteJobStore::Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt, const char* operation)
      : db_(db), stmt_(stmt), operation_(operation) {}
  ~Statement() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int index, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Statement& Bind(int index, double value) {
    Check(sqlite3_bind_double(stmt_, index, value));
    return *this;
  }
  Statement& Bind(int index, const std::string& value) {
    Check(sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                            SQLITE_TRANSIENT));
    return *this;
  }
  Statement& BindBlob(int index, const std::string& value) {
    Check(sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()),
                            SQLITE_TRANSIENT));
    return *this;
  }
  Statement& BindNull(int index) {
    Check(sqlite3_bind_null(stmt_, index));
    return *this;
  }

  // Returns true when a row is available, false when the statement is done.
  absl::StatusOr<bool> Step() {
    if (!bind_status_.ok()) return bind_status_;
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, operation_);
  }
  // Runs a statement that returns no rows.
  absl::Status Run() { return Step().status(); }

  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  double Double(int column) const { return sqlite3_column_double(stmt_, column); }
  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    return text == nullptr ? std::string()
                           : std::string(reinterpret_cast<const char*>(text),
                                         sqlite3_column_bytes(stmt_, column));
  }
  template <typename Message>
  absl::StatusOr<Message> Record(int column) const {
    return ParseRecord<Message>(sqlite3_column_blob(stmt_, column),
                                sqlite3_column_bytes(stmt_, column), operation_);
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_status_.ok()) bind_status_ = SqliteError(db_, rc, operation_);
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  const char* operation_;
  absl::Status bind_status_;
};

absl::Status SqliteJobStore::Options::Validate() const {
  if (path.empty()) return absl::InvalidArgumentError("SqliteJobStore::Options.path is empty");
  if (busy_timeout_ms < 0) {
    return absl::InvalidArgumentError("SqliteJobStore::Options.busy_timeout_ms is negative");
  }
  if (checkpoint_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("SqliteJobStore::Options.checkpoint_interval is negative");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const Options& options) {
  RETURN_IF_ERROR(options.Validate());
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(options.path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db, rc, "opening the job store");
    sqlite3_close(db);
    return absl::Status(status.code(), absl::StrCat(status.message(), ": ", options.path));
  }
  sqlite3_busy_timeout(db, options.busy_timeout_ms);
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(db, options.path));
  sqlite3_commit_hook(db, &SqliteJobStore::OnCommit, store.get());
  absl::MutexLock lock(&store->mu_);
  {
    // journal_mode returns the mode it ended up in; anything but WAL (e.g. a file system without
    // shared memory) would silently weaken the durability contract.
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     store->Prepare("PRAGMA journal_mode=WAL", "enabling WAL"));
    Statement wal(db, stmt, "enabling WAL");
    ASSIGN_OR_RETURN(bool has_row, wal.Step());
    if (!has_row || wal.Text(0) != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("opening the job store: WAL mode unavailable for ", options.path));
    }
  }
  // NOTE [group commit] in the header: commits reach the WAL without a flush; Sync() flushes.
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=NORMAL", "setting synchronous=NORMAL"));
  if (options.checkpoint_interval > absl::ZeroDuration()) {
    // Checkpoints (copying the WAL into the database, with two flushes) run on their own
    // thread and connection; the committing thread only takes one past this backstop.
    RETURN_IF_ERROR(store->Exec("PRAGMA wal_autocheckpoint=20000", "setting wal_autocheckpoint"));
  }
  RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys=ON", "enabling foreign keys"));
  RETURN_IF_ERROR(store->MigrateSchema());
  // The WAL file exists now; make its directory entry durable once, as Sync() relies on it.
  const std::string dir = fs::path(options.path).parent_path().string();
  const int dir_fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  if (options.checkpoint_interval > absl::ZeroDuration()) {
    sqlite3* checkpoint_db = nullptr;
    rc = sqlite3_open_v2(options.path.c_str(), &checkpoint_db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      absl::Status status = SqliteError(checkpoint_db, rc, "opening the checkpoint connection");
      sqlite3_close(checkpoint_db);
      return status;
    }
    sqlite3_busy_timeout(checkpoint_db, options.busy_timeout_ms);
    store->checkpoint_db_ = checkpoint_db;
    store->checkpointer_ = std::thread([raw = store.get(), interval = options.checkpoint_interval] {
      raw->RunCheckpointer(interval);
    });
  }
  return store;
}

void SqliteJobStore::RunCheckpointer(absl::Duration interval) {
  while (true) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      checkpoint_mu_.AwaitWithTimeout(absl::Condition(&stop_checkpointer_), interval);
      if (stop_checkpointer_) return;
    }
    // PASSIVE: copies what it can without waiting for the writer or readers. A failure (busy)
    // is retried at the next interval; the backstop auto-checkpoint bounds the WAL meanwhile.
    int wal_frames = 0, checkpointed = 0;
    sqlite3_wal_checkpoint_v2(checkpoint_db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_frames,
                              &checkpointed);
  }
}

SqliteJobStore::SqliteJobStore(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}

int SqliteJobStore::OnCommit(void* store) {
  // Runs inside sqlite3_step() of a COMMIT (or an autocommit statement), so under mu_.
  static_cast<SqliteJobStore*>(store)->commits_++;
  return 0;  // 0: let the commit proceed
}

absl::Status SqliteJobStore::SyncWal() const {
  const std::string wal = path_ + "-wal";
  const int fd = ::open(wal.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // No WAL: every commit has been checkpointed into the database, which SQLite synced.
    if (errno == ENOENT) return absl::OkStatus();
    return absl::InternalError(
        absl::StrCat("syncing the job store: open ", wal, ": ", std::strerror(errno)));
  }
  int rc;
  do {
    rc = ::fdatasync(fd);
  } while (rc != 0 && errno == EINTR);
  const int error = errno;
  ::close(fd);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("syncing the job store: fdatasync ", wal, ": ", std::strerror(error)));
  }
  return absl::OkStatus();
}

absl::Status SqliteJobStore::Sync() {
  uint64_t target;
  {
    absl::MutexLock lock(&mu_);
    target = commits_;
  }
  sync_mu_.Lock();
  while (synced_ < target) {
    if (syncing_) {
      // Another caller is flushing; it may or may not cover `target`: look again after it.
      sync_mu_.Await(absl::Condition(
          +[](bool* syncing) { return !*syncing; }, &syncing_));
      continue;
    }
    syncing_ = true;
    uint64_t covered;
    {
      absl::MutexLock lock(&mu_);
      covered = commits_;  // every commit up to here is in the WAL file already
    }
    sync_mu_.Unlock();
    const absl::Status synced = SyncWal();
    sync_mu_.Lock();
    syncing_ = false;
    if (!synced.ok()) {
      sync_mu_.Unlock();
      return synced;
    }
    synced_ = std::max(synced_, covered);
  }
  sync_mu_.Unlock();
  return absl::OkStatus();
}

SqliteJobStore::~SqliteJobStore() {
  if (checkpointer_.joinable()) {
    {
      absl::MutexLock lock(&checkpoint_mu_);
      stop_checkpointer_ = true;
    }
    checkpointer_.join();
    sqlite3_close(checkpoint_db_);
  }
  absl::MutexLock lock(&mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  sqlite3_close(db_);
}

absl::Status SqliteJobStore::Exec(const std::string& sql, const char* operation) {
  char* error = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    absl::Status status = SqliteError(db_, rc, operation);
    sqlite3_free(error);
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<sqlite3_stmt*> SqliteJobStore::Prepare(const std::string& sql,
                                                      const char* operation) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db_, rc, operation);
  statements_.emplace(sql, stmt);
  return stmt;
}

absl::Status SqliteJobStore::RunPrepared(const char* sql, const char* operation) {
  // Cached: parsing "BEGIN IMMEDIATE" and "COMMIT" on every transaction showed in profiles.
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql, operation));
  Statement statement(db_, stmt, operation);
  return statement.Run();
}

template <typename Fn>
auto SqliteJobStore::InTransaction(const char* operation, Fn body) -> decltype(body()) {
  RETURN_IF_ERROR(RunPrepared("BEGIN IMMEDIATE", operation));
  auto result = body();
  if (!result.ok()) {
    // A failed ROLLBACK leaves nothing better to report than the original error.
    RunPrepared("ROLLBACK", operation).IgnoreError();
    return result;
  }
  absl::Status commit = RunPrepared("COMMIT", operation);
  if (!commit.ok()) {
    RunPrepared("ROLLBACK", operation).IgnoreError();
    return commit;
  }
  return result;
}

absl::Status SqliteJobStore::MigrateSchema() {
  constexpr const char* kOp = "migrating the job store schema";
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("PRAGMA user_version", kOp));
  int64_t version = 0;
  {
    Statement query(db_, stmt, kOp);
    ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (has_row) version = query.Int(0);
  }
  if (version == kSchemaVersion) return absl::OkStatus();
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(kOp, ": database schema version ", version,
                                                      " is newer than this coordinator's (",
                                                      kSchemaVersion, ")"));
  }
  return InTransaction(kOp, [&]() -> absl::Status {
    if (version < 1) {
      for (const char* sql : kSchemaV1) RETURN_IF_ERROR(Exec(sql, kOp));
    }
    if (version < 2) {
      for (const char* sql : kSchemaV2) RETURN_IF_ERROR(Exec(sql, kOp));
      RETURN_IF_ERROR(Exec(
          absl::StrCat("UPDATE jobs SET owner = '", kAdminUser, "' WHERE owner IS NULL"), kOp));
    }
    for (const char* sql : kSchemaV3) RETURN_IF_ERROR(Exec(sql, kOp));
    if (version >= 1) {
      std::vector<std::pair<int64_t, v1::Job>> jobs;
      {
        ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT seq, record FROM jobs", kOp));
        Statement select(db_, stmt, kOp);
        while (true) {
          ASSIGN_OR_RETURN(bool has_row, select.Step());
          if (!has_row) break;
          ASSIGN_OR_RETURN(v1::Job job, select.Record<v1::Job>(1));
          jobs.emplace_back(select.Int(0), std::move(job));
        }
      }
      for (const auto& [seq, job] : jobs) RETURN_IF_ERROR(IndexJob(seq, job, kOp));
    }
    return Exec(absl::StrCat("PRAGMA user_version=", kSchemaVersion), kOp);
  });
}

absl::StatusOr<v1::Job> SqliteJobStore::LoadJob(const std::string& job_id, const char* op) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT record FROM jobs WHERE id = ?1", op));
  Statement query(db_, stmt, op);
  query.Bind(1, job_id);
  ASSIGN_OR_RETURN(bool has_row, query.Step());
  if (!has_row) return absl::NotFoundError(absl::StrCat(op, ": no job ", job_id));
  return query.Record<v1::Job>(0);
}

absl::Status SqliteJobStore::StoreJob(const v1::Job& job, const char* op) {
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("UPDATE jobs SET state = ?2, attempt = ?3, record = ?4 WHERE id = ?1", op));
  Statement update(db_, stmt, op);
  update.Bind(1, job.id())
      .Bind(2, static_cast<int64_t>(job.state()))
      .Bind(3, job.attempt())
      .BindBlob(4, job.SerializeAsString());
  return update.Run();
}

absl::StatusOr<v1::Attempt> SqliteJobStore::LoadAttempt(const std::string& job_id, int64_t number,
                                                        const char* op) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT record FROM attempts WHERE job_id = ?1 AND number = ?2", op));
  Statement query(db_, stmt, op);
  query.Bind(1, job_id).Bind(2, number);
  ASSIGN_OR_RETURN(bool has_row, query.Step());
  if (!has_row) {
    return absl::NotFoundError(absl::StrCat(op, ": no attempt ", number, " of job ", job_id));
  }
  return query.Record<v1::Attempt>(0);
}

absl::Status SqliteJobStore::StoreAttempt(const v1::Attempt& attempt, const char* op) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT OR REPLACE INTO attempts (job_id, number, resume_step, record)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           op));
  Statement insert(db_, stmt, op);
  insert.Bind(1, attempt.job_id())
      .Bind(2, attempt.number())
      .Bind(3, attempt.resume_step())
      .BindBlob(4, attempt.SerializeAsString());
  return insert.Run();
}

// ---- Jobs ----

absl::StatusOr<CreateJobResult> SqliteJobStore::CreateJob(const NewJob& new_job) {
  constexpr const char* kOp = "creating a job";
  RETURN_IF_ERROR(ValidateNewJob(kOp, new_job));
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<CreateJobResult> {
    if (!new_job.client_request_id.empty()) {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                       Prepare("SELECT record FROM jobs WHERE client_request_id = ?1", kOp));
      Statement query(db_, stmt, kOp);
      query.Bind(1, new_job.client_request_id);
      ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (has_row) {
        ASSIGN_OR_RETURN(v1::Job existing, query.Record<v1::Job>(0));
        RETURN_IF_ERROR(CheckRequestReplay(kOp, existing, new_job));
        return CreateJobResult{std::move(existing), false};
      }
    }
    int64_t seq = 1;
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                       Prepare("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs", kOp));
      Statement query(db_, stmt, kOp);
      ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (has_row) seq = query.Int(0);
    }
    v1::Job job = NewJobRecord(new_job, seq);
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("INSERT INTO jobs (seq, id, client_request_id, state, attempt, record,"
                             " owner) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                             kOp));
    Statement insert(db_, stmt, kOp);
    insert.Bind(1, seq).Bind(2, job.id()).Bind(4, static_cast<int64_t>(job.state()));
    insert.Bind(6, JobOwner(job));
    if (new_job.client_request_id.empty()) {
      insert.BindNull(3);
    } else {
      insert.Bind(3, new_job.client_request_id);
    }
    insert.BindBlob(5, job.SerializeAsString());
    RETURN_IF_ERROR(insert.Run());
    RETURN_IF_ERROR(IndexJob(seq, job, kOp));
    return CreateJobResult{std::move(job), true};
  });
}

absl::Status SqliteJobStore::IndexJob(int64_t seq, const v1::Job& job, const char* op) {
  const v1::Dependency& dependency = job.spec().depends_on();
  std::string depends_on = dependency.job_id();
  if (dependency.has_checkpoint_id()) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT job_id FROM checkpoints WHERE id = ?1", op));
    Statement query(db_, stmt, op);
    query.Bind(1, dependency.checkpoint_id());
    ASSIGN_OR_RETURN(bool has_row, query.Step());
    if (has_row) depends_on = query.Text(0);
  }
  if (!depends_on.empty()) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE jobs SET depends_on = ?2 WHERE seq = ?1", op));
    Statement update(db_, stmt, op);
    update.Bind(1, seq).Bind(2, depends_on);
    RETURN_IF_ERROR(update.Run());
  }
  for (const auto& [key, value] : job.spec().labels()) {
    ASSIGN_OR_RETURN(
        sqlite3_stmt * stmt,
        Prepare("INSERT OR IGNORE INTO job_labels (key, value, seq) VALUES (?1, ?2, ?3)", op));
    Statement insert(db_, stmt, op);
    insert.Bind(1, key).Bind(2, value).Bind(3, seq);
    RETURN_IF_ERROR(insert.Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Job> SqliteJobStore::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  return LoadJob(job_id, "getting a job");
}

absl::StatusOr<JobPage> SqliteJobStore::ListJobs(const JobQuery& query) {
  constexpr const char* kOp = "listing jobs";
  ASSIGN_OR_RETURN(const int64_t after_seq, PageStart(kOp, query));
  // The states are a bit mask (0 = all), so that no request can grow the statement cache;
  // PageStart checked that every state is a real one.
  int64_t state_mask = 0;
  for (v1::JobState state : query.states) state_mask |= int64_t{1} << static_cast<int>(state);
  // Three fixed statements: by a label (the first, through job_labels' primary key; the others
  // each a primary-key lookup), by dependency (jobs_by_dependency), or by submit order.
  // ?5 and ?6: the first label; ?7: every label as a JSON object; ?8: how many; ?9: dependency.
  static constexpr char kFilters[] =
      "(?3 = 0 OR ((?3 >> j.state) & 1) = 1) AND (?4 = '' OR j.owner = ?4) AND "
      "(?9 = '' OR j.depends_on = ?9) AND "
      "(?8 = 0 OR (SELECT COUNT(*) FROM json_each(?7) e JOIN job_labels m ON m.key = e.key AND "
      "m.value = e.value AND m.seq = j.seq) = ?8) ";
  std::string sql;
  if (!query.labels.empty()) {
    sql = absl::StrCat(
        "SELECT j.seq, j.record FROM job_labels l JOIN jobs j ON j.seq = l.seq "
        "WHERE l.key = ?5 AND l.value = ?6 AND l.seq > ?1 AND ",
        kFilters, "ORDER BY l.seq LIMIT ?2");
  } else if (!query.depends_on_job_id.empty()) {
    sql = absl::StrCat(
        "SELECT j.seq, j.record FROM jobs j WHERE j.depends_on = ?9 AND j.seq > ?1 AND ", kFilters,
        "ORDER BY j.seq LIMIT ?2");
  } else {
    sql = absl::StrCat("SELECT j.seq, j.record FROM jobs j WHERE j.seq > ?1 AND ", kFilters,
                       "ORDER BY j.seq LIMIT ?2");
  }
  JsonWriter labels;
  for (const auto& [key, value] : query.labels) labels.Add(key, value);
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql, kOp));
  Statement select(db_, stmt, kOp);
  // One extra row tells whether another page exists.
  select.Bind(1, after_seq).Bind(2, static_cast<int64_t>(query.page_size) + 1).Bind(3, state_mask);
  select.Bind(4, query.owner);
  select.Bind(5, query.labels.empty() ? "" : query.labels.begin()->first);
  select.Bind(6, query.labels.empty() ? "" : query.labels.begin()->second);
  select.Bind(7, labels.str()).Bind(8, static_cast<int64_t>(query.labels.size()));
  select.Bind(9, query.depends_on_job_id);
  JobPage page;
  int64_t last_seq = 0;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    if (static_cast<int>(page.jobs.size()) == query.page_size) {
      page.next_page_token = absl::StrCat(last_seq);
      break;
    }
    last_seq = select.Int(0);
    ASSIGN_OR_RETURN(v1::Job job, select.Record<v1::Job>(1));
    page.jobs.push_back(std::move(job));
  }
  return page;
}

absl::StatusOr<v1::Job> SqliteJobStore::UpdateJobState(const JobStateUpdate& update) {
  constexpr const char* kOp = "updating a job state";
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<v1::Job> {
    ASSIGN_OR_RETURN(v1::Job job, LoadJob(update.job_id, kOp));
    RETURN_IF_ERROR(CheckStateUpdate(kOp, job, update));
    const bool attempt_follows = ApplyStateUpdate(update, &job);
    RETURN_IF_ERROR(StoreJob(job, kOp));
    if (attempt_follows) {
      ASSIGN_OR_RETURN(v1::Attempt attempt, LoadAttempt(job.id(), job.attempt(), kOp));
      ApplyAttemptUpdate(update, &attempt);
      RETURN_IF_ERROR(StoreAttempt(attempt, kOp));
    }
    return job;
  });
}

absl::StatusOr<v1::Job> SqliteJobStore::UpdateJobControl(const JobControlUpdate& update) {
  constexpr const char* kOp = "updating a job's control fields";
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<v1::Job> {
    ASSIGN_OR_RETURN(v1::Job job, LoadJob(update.job_id, kOp));
    RETURN_IF_ERROR(CheckAttemptFence(kOp, job, update.expected_attempt, "the update"));
    ApplyControlUpdate(update, &job);
    RETURN_IF_ERROR(StoreJob(job, kOp));
    return job;
  });
}

absl::StatusOr<absl::StatusOr<JobStore::StartedAttempt>> SqliteJobStore::BeginAttemptInTransaction(
    const NewAttempt& request, const char* kOp) {
  using Refusal = absl::StatusOr<StartedAttempt>;
  if (absl::Status valid = ValidateNewAttempt(kOp, request); !valid.ok()) return Refusal(valid);
  absl::StatusOr<v1::Job> loaded = LoadJob(request.job_id, kOp);
  if (absl::IsNotFound(loaded.status())) return Refusal(loaded.status());
  RETURN_IF_ERROR(loaded.status());
  v1::Job job = *std::move(loaded);
  if (absl::Status startable = CheckNewAttempt(kOp, job, request); !startable.ok()) {
    return Refusal(startable);
  }
  v1::Attempt attempt = StartAttempt(request, &job);
  RETURN_IF_ERROR(StoreJob(job, kOp));
  RETURN_IF_ERROR(StoreAttempt(attempt, kOp));
  return Refusal(StartedAttempt{std::move(job), std::move(attempt)});
}

absl::StatusOr<v1::Attempt> SqliteJobStore::BeginAttempt(const NewAttempt& request) {
  constexpr const char* kOp = "beginning an attempt";
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<v1::Attempt> {
    ASSIGN_OR_RETURN(absl::StatusOr<StartedAttempt> started,
                     BeginAttemptInTransaction(request, kOp));
    if (!started.ok()) return started.status();
    return std::move(started->attempt);
  });
}

absl::StatusOr<std::vector<absl::StatusOr<JobStore::StartedAttempt>>> SqliteJobStore::BeginAttempts(
    const std::vector<NewAttempt>& requests) {
  constexpr const char* kOp = "beginning attempts";
  using Results = std::vector<absl::StatusOr<StartedAttempt>>;
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<Results> {
    Results results;
    results.reserve(requests.size());
    for (const NewAttempt& request : requests) {
      // A refusal is found before anything of that attempt is written.
      ASSIGN_OR_RETURN(absl::StatusOr<StartedAttempt> started,
                       BeginAttemptInTransaction(request, kOp));
      results.push_back(std::move(started));
    }
    return results;
  });
}

absl::StatusOr<std::vector<v1::Attempt>> SqliteJobStore::ListAttempts(const std::string& job_id) {
  constexpr const char* kOp = "listing attempts";
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(LoadJob(job_id, kOp).status());
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT record FROM attempts WHERE job_id = ?1 ORDER BY number", kOp));
  Statement select(db_, stmt, kOp);
  select.Bind(1, job_id);
  std::vector<v1::Attempt> attempts;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    ASSIGN_OR_RETURN(v1::Attempt attempt, select.Record<v1::Attempt>(0));
    attempts.push_back(std::move(attempt));
  }
  return attempts;
}

// ---- Workers ----

absl::Status SqliteJobStore::UpsertWorker(const v1::WorkerInfo& worker) {
  constexpr const char* kOp = "storing a worker";
  if (worker.id().empty()) return absl::InvalidArgumentError(absl::StrCat(kOp, ": empty id"));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT OR REPLACE INTO workers (id, record) VALUES (?1, ?2)", kOp));
  Statement insert(db_, stmt, kOp);
  insert.Bind(1, worker.id()).BindBlob(2, worker.SerializeAsString());
  return insert.Run();
}

absl::StatusOr<v1::WorkerInfo> SqliteJobStore::GetWorker(const std::string& worker_id) {
  constexpr const char* kOp = "getting a worker";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT record FROM workers WHERE id = ?1", kOp));
  Statement select(db_, stmt, kOp);
  select.Bind(1, worker_id);
  ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return absl::NotFoundError(absl::StrCat(kOp, ": no worker ", worker_id));
  return select.Record<v1::WorkerInfo>(0);
}

absl::StatusOr<std::vector<v1::WorkerInfo>> SqliteJobStore::ListWorkers() {
  constexpr const char* kOp = "listing workers";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT record FROM workers ORDER BY id", kOp));
  Statement select(db_, stmt, kOp);
  std::vector<v1::WorkerInfo> workers;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    ASSIGN_OR_RETURN(v1::WorkerInfo worker, select.Record<v1::WorkerInfo>(0));
    workers.push_back(std::move(worker));
  }
  return workers;
}

// ---- Checkpoints ----

absl::Status SqliteJobStore::AddCheckpoint(const v1::CheckpointInfo& info) {
  constexpr const char* kOp = "recording a checkpoint";
  if (info.id().empty()) return absl::InvalidArgumentError(absl::StrCat(kOp, ": empty id"));
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::Status {
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                       Prepare("SELECT record FROM checkpoints WHERE id = ?1", kOp));
      Statement select(db_, stmt, kOp);
      select.Bind(1, info.id());
      ASSIGN_OR_RETURN(bool has_row, select.Step());
      if (has_row) {
        // A retried upload of a committed checkpoint succeeds even after the attempt moved on.
        ASSIGN_OR_RETURN(v1::CheckpointInfo existing, select.Record<v1::CheckpointInfo>(0));
        if (MessageDifferencer::Equals(existing, info)) return absl::OkStatus();
        return absl::AlreadyExistsError(
            absl::StrCat(kOp, ": checkpoint ", info.id(), " exists with other content"));
      }
    }
    ASSIGN_OR_RETURN(v1::Job job, LoadJob(info.job_id(), kOp));
    if (job.attempt() != info.attempt()) {
      return absl::FailedPreconditionError(absl::StrCat(kOp, ": job ", job.id(), " is at attempt ",
                                                        job.attempt(), ", checkpoint ", info.id(),
                                                        " comes from attempt ", info.attempt()));
    }
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("INSERT INTO checkpoints (id, job_id, attempt, step, record)"
                             " VALUES (?1, ?2, ?3, ?4, ?5)",
                             kOp));
    Statement insert(db_, stmt, kOp);
    insert.Bind(1, info.id())
        .Bind(2, info.job_id())
        .Bind(3, info.attempt())
        .Bind(4, info.step())
        .BindBlob(5, info.SerializeAsString());
    return insert.Run();
  });
}

absl::StatusOr<v1::CheckpointInfo> SqliteJobStore::GetCheckpoint(const std::string& checkpoint_id) {
  constexpr const char* kOp = "getting a checkpoint";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT record FROM checkpoints WHERE id = ?1", kOp));
  Statement select(db_, stmt, kOp);
  select.Bind(1, checkpoint_id);
  ASSIGN_OR_RETURN(bool has_row, select.Step());
  if (!has_row) return absl::NotFoundError(absl::StrCat(kOp, ": no checkpoint ", checkpoint_id));
  return select.Record<v1::CheckpointInfo>(0);
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> SqliteJobStore::ListCheckpoints(
    const std::string& job_id) {
  constexpr const char* kOp = "listing checkpoints";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("SELECT record FROM checkpoints WHERE job_id = ?1 ORDER BY step, attempt", kOp));
  Statement select(db_, stmt, kOp);
  select.Bind(1, job_id);
  std::vector<v1::CheckpointInfo> checkpoints;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    ASSIGN_OR_RETURN(v1::CheckpointInfo info, select.Record<v1::CheckpointInfo>(0));
    checkpoints.push_back(std::move(info));
  }
  return checkpoints;
}

absl::Status SqliteJobStore::DeleteCheckpoint(const std::string& checkpoint_id) {
  constexpr const char* kOp = "deleting a checkpoint";
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("DELETE FROM checkpoints WHERE id = ?1", kOp));
  Statement remove(db_, stmt, kOp);
  remove.Bind(1, checkpoint_id);
  return remove.Run();
}

// ---- Audit ----

absl::Status SqliteJobStore::AppendAudit(const v1::AuditEntry& entry) {
  constexpr const char* kOp = "appending to the audit log";
  RETURN_IF_ERROR(CheckAuditEntry(kOp, entry));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT INTO audit (job_id, record) VALUES (?1, ?2)", kOp));
  Statement insert(db_, stmt, kOp);
  insert.Bind(1, entry.job_id()).BindBlob(2, entry.SerializeAsString());
  return insert.Run();
}

absl::StatusOr<std::vector<v1::AuditEntry>> SqliteJobStore::ListAudit(const std::string& job_id,
                                                                      int limit) {
  constexpr const char* kOp = "reading the audit log";
  if (limit < 1) return absl::InvalidArgumentError(absl::StrCat(kOp, ": limit must be >= 1"));
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("SELECT record FROM audit WHERE job_id = ?1 ORDER BY seq DESC LIMIT ?2", kOp));
  Statement select(db_, stmt, kOp);
  select.Bind(1, job_id).Bind(2, static_cast<int64_t>(limit));
  std::vector<v1::AuditEntry> entries;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    ASSIGN_OR_RETURN(v1::AuditEntry entry, select.Record<v1::AuditEntry>(0));
    entries.push_back(std::move(entry));
  }
  std::reverse(entries.begin(), entries.end());
  return entries;
}

// ---- Metrics ----

absl::StatusOr<int64_t> SqliteJobStore::AppendMetricPoints(
    const std::string& job_id, int64_t attempt, const std::vector<v1::MetricPoint>& points) {
  constexpr const char* kOp = "appending metric points";
  RETURN_IF_ERROR(CheckMetricPoints(kOp, job_id, attempt, points));
  absl::MutexLock lock(&mu_);
  return InTransaction(kOp, [&]() -> absl::StatusOr<int64_t> {
    // The fencing needs only the job's attempt number, not its whole record (runs per report).
    int64_t current_attempt = 0;
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT attempt FROM jobs WHERE id = ?1", kOp));
      Statement query(db_, stmt, kOp);
      query.Bind(1, job_id);
      ASSIGN_OR_RETURN(bool has_row, query.Step());
      if (!has_row) return absl::NotFoundError(absl::StrCat(kOp, ": no job ", job_id));
      current_attempt = query.Int(0);
    }
    if (attempt < 1 || current_attempt != attempt) {
      return absl::FailedPreconditionError(absl::StrCat(
          kOp, ": job ", job_id, " is at attempt ", current_attempt, ", points from ", attempt));
    }
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("INSERT OR IGNORE INTO metric_points"
                             " (job_id, attempt, rank, step, name, value, time_us)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             kOp));
    int64_t inserted = 0;
    for (const v1::MetricPoint& point : points) {
      // Sorted names keep the write order (and so the first-write-wins outcome) deterministic.
      std::map<std::string, double> values(point.values().begin(), point.values().end());
      for (const auto& [name, value] : values) {
        Statement insert(db_, stmt, kOp);
        insert.Bind(1, job_id)
            .Bind(2, attempt)
            .Bind(3, static_cast<int64_t>(point.rank()))
            .Bind(4, point.step())
            .Bind(5, name)
            .Bind(6, value)
            .Bind(7, point.time_us());
        RETURN_IF_ERROR(insert.Run());
        inserted += sqlite3_changes(db_);
      }
    }
    return inserted;
  });
}

absl::StatusOr<std::vector<v1::MetricPoint>> SqliteJobStore::ListMetricPoints(
    const MetricQuery& query) {
  constexpr const char* kOp = "listing metric points";
  absl::MutexLock lock(&mu_);
  // A point of attempt A at step S is superseded when a later attempt resumed from a step < S.
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT attempt, rank, step, name, value, time_us FROM metric_points m"
                           " WHERE job_id = ?1 AND (?2 IS NULL OR rank = ?2) AND (?3 OR NOT EXISTS"
                           " (SELECT 1 FROM attempts a WHERE a.job_id = m.job_id"
                           "  AND a.number > m.attempt AND a.resume_step < m.step))"
                           " ORDER BY step, attempt, rank, name",
                           kOp));
  RETURN_IF_ERROR(LoadJob(query.job_id, kOp).status());
  Statement select(db_, stmt, kOp);
  select.Bind(1, query.job_id);
  if (query.rank.has_value()) {
    select.Bind(2, static_cast<int64_t>(*query.rank));
  } else {
    select.BindNull(2);
  }
  select.Bind(3, static_cast<int64_t>(query.include_superseded ? 1 : 0));
  std::vector<v1::MetricPoint> points;
  while (true) {
    ASSIGN_OR_RETURN(bool has_row, select.Step());
    if (!has_row) break;
    int64_t attempt = select.Int(0);
    int32_t rank = static_cast<int32_t>(select.Int(1));
    int64_t step = select.Int(2);
    AppendMetricValue(query.job_id, attempt, rank, step, select.Int(5), select.Text(3),
                      select.Double(4), &points);
  }
  return points;
}

}  // namespace peco::coordinator
