#include "coordinator/job_log_store.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "coordinator/checkpoint_file_store.h"

namespace peco::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr char kMarksSuffix[] = ".marks";
constexpr char kTruncatedMark[] = "truncated";

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// Appends `data` to `path` (created when missing).
absl::Status AppendToFile(const std::string& path, absl::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot open", path);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = Errno("cannot write", path);
      ::close(fd);
      return status;
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return Errno("cannot close", path);
  return absl::OkStatus();
}

}  // namespace

absl::Status JobLogStoreOptions::Validate() const {
  if (dir.empty()) return absl::InvalidArgumentError("logs dir: expected a directory");
  if (max_bytes_per_log < 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_log_bytes: expected at least 4096, got ", max_bytes_per_log));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<JobLogStore>> JobLogStore::Open(JobLogStoreOptions options) {
  RETURN_IF_ERROR(options.Validate());
  std::error_code error;
  fs::create_directories(options.dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create log directory ", options.dir, ": ", error.message()));
  }
  return std::unique_ptr<JobLogStore>(new JobLogStore(std::move(options)));
}

std::string JobLogStore::LogPath(const std::string& job_id, const LogKey& key) const {
  return absl::StrCat(options_.dir, "/", job_id, "/attempt-", key.first, "-rank-", key.second,
                      ".log");
}

absl::StatusOr<JobLogStore::JobLogs*> JobLogStore::LoadLocked(const std::string& job_id) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  auto it = jobs_.find(job_id);
  if (it != jobs_.end()) return &it->second;
  JobLogs logs;
  std::error_code error;
  for (fs::directory_iterator entry(fs::path(options_.dir) / job_id, error), end;
       !error && entry != end; entry.increment(error)) {
    int64_t attempt = 0;
    int32_t rank = 0;
    char tail = 0;
    const std::string name = entry->path().filename().string();
    if (std::sscanf(name.c_str(), "attempt-%ld-rank-%d.lo%c", &attempt, &rank, &tail) != 3 ||
        name != absl::StrCat("attempt-", attempt, "-rank-", rank, ".log")) {
      continue;
    }
    LogState& state = logs.logs[{attempt, rank}];
    state.stored = static_cast<int64_t>(fs::file_size(entry->path(), error));
    if (error) state.stored = 0;
    absl::StatusOr<std::string> marks = ReadFileToString(entry->path().string() + kMarksSuffix);
    if (!marks.ok()) continue;
    for (absl::string_view line : absl::StrSplit(*marks, '\n', absl::SkipEmpty())) {
      int64_t shift = 0;
      if (line == kTruncatedMark) {
        state.truncated = true;
      } else if (absl::SimpleAtoi(line, &shift)) {
        state.shift += shift;
      }
    }
  }
  return &jobs_.emplace(job_id, std::move(logs)).first->second;
}

absl::Status JobLogStore::WriteLocked(const std::string& path, LogState& state,
                                      const std::string& data) {
  if (state.stored == 0) {
    std::error_code error;
    const fs::path dir = fs::path(path).parent_path();
    fs::create_directories(dir, error);
    if (error) {
      return absl::InternalError(
          absl::StrCat("cannot create ", dir.string(), ": ", error.message()));
    }
    // The new file's entry, and the directories that may have been created with it.
    unsynced_dirs_.insert(dir.string());
    unsynced_dirs_.insert(dir.parent_path().string());
  }
  RETURN_IF_ERROR(AppendToFile(path, data));
  unsynced_files_.insert(path);
  state.stored += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::Status JobLogStore::Sync() {
  std::set<std::string> files;
  std::set<std::string> dirs;
  {
    absl::MutexLock lock(&mu_);
    files.swap(unsynced_files_);
    dirs.swap(unsynced_dirs_);
  }
  absl::Status status = absl::OkStatus();
  std::set<std::string> failed_files;
  std::set<std::string> failed_dirs;
  for (const std::string& file : files) {
    absl::Status synced = FsyncFile(file);
    if (!synced.ok()) {
      failed_files.insert(file);
      status.Update(synced);
    }
  }
  for (const std::string& dir : dirs) {
    absl::Status synced = FsyncDirectory(dir);
    if (!synced.ok()) {
      failed_dirs.insert(dir);
      status.Update(synced);
    }
  }
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    unsynced_files_.insert(failed_files.begin(), failed_files.end());
    unsynced_dirs_.insert(failed_dirs.begin(), failed_dirs.end());
  }
  return status;
}

absl::Status JobLogStore::MarkLocked(const std::string& path, LogState& state,
                                     const std::string& line, int64_t worker_bytes,
                                     bool truncated) {
  RETURN_IF_ERROR(WriteLocked(path, state, line));
  state.shift += static_cast<int64_t>(line.size()) - worker_bytes;
  state.truncated = state.truncated || truncated;
  absl::StatusOr<std::string> marks = ReadFileToString(path + kMarksSuffix);
  std::string text = marks.ok() ? *marks : "";
  absl::StrAppend(&text, static_cast<int64_t>(line.size()) - worker_bytes, "\n",
                  truncated ? absl::StrCat(kTruncatedMark, "\n") : "");
  return WriteFileAtomic(path + kMarksSuffix, text);
}

absl::Status JobLogStore::Append(const v1::LogChunk& chunk) {
  if (chunk.attempt() < 1 || chunk.rank() < 0 || chunk.offset() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("log_chunk: expected attempt >= 1, rank >= 0 and offset >= 0, got attempt ",
                     chunk.attempt(), " rank ", chunk.rank(), " offset ", chunk.offset()));
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobLogs * job, LoadLocked(chunk.job_id()));
  const LogKey key{chunk.attempt(), chunk.rank()};
  LogState& state = job->logs[key];
  if (state.truncated) return absl::OkStatus();
  const std::string path = LogPath(chunk.job_id(), key);
  const int64_t worker_end = state.stored - state.shift;  // worker bytes accounted for
  int64_t offset = chunk.offset();
  std::string data = chunk.data();
  if (offset + static_cast<int64_t>(data.size()) <= worker_end) return absl::OkStatus();
  if (offset < worker_end) {  // a resent chunk that overlaps what is stored
    data.erase(0, static_cast<size_t>(worker_end - offset));
    offset = worker_end;
  }
  if (offset > worker_end) {
    RETURN_IF_ERROR(MarkLocked(path, state,
                               absl::StrCat(state.stored > 0 ? "\n" : "", "[peco: ",
                                            offset - worker_end, " bytes of this log were lost]\n"),
                               offset - worker_end, /*truncated=*/false));
  }
  const int64_t room = options_.max_bytes_per_log - state.stored;
  if (static_cast<int64_t>(data.size()) > room) {
    const std::string kept = data.substr(0, static_cast<size_t>(std::max<int64_t>(room, 0)));
    RETURN_IF_ERROR(WriteLocked(path, state, kept));
    RETURN_IF_ERROR(MarkLocked(
        path, state,
        absl::StrCat("\n[peco: log truncated at ", options_.max_bytes_per_log,
                     " bytes (--max_log_bytes); the whole log is in the worker's work_dir]\n"),
        static_cast<int64_t>(kept.size()), /*truncated=*/true));
  } else {
    RETURN_IF_ERROR(WriteLocked(path, state, data));
  }
  ++job->version;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredLog>> JobLogStore::List(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobLogs * job, LoadLocked(job_id));
  std::vector<StoredLog> logs;
  for (const auto& [key, state] : job->logs) {
    if (state.stored > 0) logs.push_back(StoredLog{key.first, key.second, state.stored});
  }
  return logs;
}

absl::StatusOr<std::string> JobLogStore::Read(const std::string& job_id, int64_t attempt,
                                              int32_t rank, int64_t offset, int64_t max_bytes) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  const std::string path = LogPath(job_id, {attempt, rank});
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("no log of ", job_id, " attempt ", attempt, " rank ", rank));
    }
    return Errno("cannot open", path);
  }
  std::string data(static_cast<size_t>(std::max<int64_t>(max_bytes, 0)), '\0');
  ssize_t n;
  do {
    n = ::pread(fd, data.data(), data.size(), offset);
  } while (n < 0 && errno == EINTR);
  absl::Status status = n < 0 ? Errno("cannot read", path) : absl::OkStatus();
  ::close(fd);
  RETURN_IF_ERROR(status);
  data.resize(static_cast<size_t>(n));
  return data;
}

uint64_t JobLogStore::Version(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? 0 : it->second.version;
}

bool JobLogStore::WaitForChange(const std::string& job_id, uint64_t seen, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = jobs_.find(job_id);
    return shutdown_ || (it != jobs_.end() && it->second.version != seen);
  };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  auto it = jobs_.find(job_id);
  return it != jobs_.end() && it->second.version != seen;
}

void JobLogStore::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

bool JobLogStore::shut_down() {
  absl::MutexLock lock(&mu_);
  return shutdown_;
}

}  // namespace peco::coordinator
