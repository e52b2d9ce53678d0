#include "coordinator/checkpoint_file_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/checkpoint_receiver.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "service/checkpoint_transfer.h"

namespace peco::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr char kStagingPrefix[] = ".staging-";
constexpr char kTrashPrefix[] = ".deleting-";

absl::Status CreateDirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("create directory ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return absl::InternalError(absl::StrCat("remove ", path, ": ", ec.message()));
  return absl::OkStatus();
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace

struct CheckpointFileStore::Session {
  std::string job_id;
  int64_t attempt = 0;
  std::string checkpoint_id;
  int64_t step = 0;
  std::string job_dir;
  // When the session last received a chunk (or began), in microseconds since the epoch; read by
  // AbortIdleUploads without the session's mutex, which a slow write may hold.
  std::atomic<int64_t> last_activity_us{0};

  absl::Mutex mu;
  // Null once the session ended (committed or aborted); removes its staging directory then.
  std::unique_ptr<CheckpointReceiver> receiver ABSL_GUARDED_BY(mu);
};

absl::Status CheckpointFileStore::Options::Validate() const {
  if (data_dir.empty()) return absl::InvalidArgumentError("data_dir must not be empty");
  if (max_chunk_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_chunk_bytes must be positive, got ", max_chunk_bytes));
  }
  if (max_file_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_file_bytes must be positive, got ", max_file_bytes));
  }
  if (max_files_per_checkpoint < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_files_per_checkpoint must be >= 1, got ", max_files_per_checkpoint));
  }
  if (max_checkpoint_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_checkpoint_bytes must be positive, got ", max_checkpoint_bytes));
  }
  if (min_free_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_free_bytes must be >= 0, got ", min_free_bytes));
  }
  if (max_open_uploads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_open_uploads must be >= 1, got ", max_open_uploads));
  }
  if (upload_idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("upload_idle_timeout must be positive, got ",
                                                   absl::FormatDuration(upload_idle_timeout)));
  }
  if (clock == nullptr) return absl::InvalidArgumentError("clock must not be null");
  return absl::OkStatus();
}

CheckpointFileStore::CheckpointFileStore(const Options& options)
    : options_(options), root_(absl::StrCat(options.data_dir, "/checkpoints")) {}

CheckpointFileStore::~CheckpointFileStore() = default;

absl::StatusOr<std::unique_ptr<CheckpointFileStore>> CheckpointFileStore::Open(
    const Options& options) {
  RETURN_IF_ERROR(options.Validate());
  std::unique_ptr<CheckpointFileStore> store(new CheckpointFileStore(options));
  RETURN_IF_ERROR(CreateDirs(store->root_));
  // Sessions do not survive a restart: staging and half-deleted directories are garbage.
  std::error_code ec;
  for (const fs::directory_entry& job : fs::directory_iterator(store->root_, ec)) {
    if (!job.is_directory()) continue;
    std::error_code inner;
    for (const fs::directory_entry& entry : fs::directory_iterator(job.path(), inner)) {
      const std::string name = entry.path().filename().string();
      if (absl::StartsWith(name, kStagingPrefix) || absl::StartsWith(name, kTrashPrefix)) {
        RETURN_IF_ERROR(RemoveTree(entry.path().string()));
      }
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", store->root_, ": ", ec.message()));
  return store;
}

std::string CheckpointFileStore::JobDir(absl::string_view job_id) const {
  return absl::StrCat(root_, "/", job_id);
}

std::string CheckpointFileStore::CheckpointDir(absl::string_view job_id,
                                               absl::string_view checkpoint_id) const {
  return absl::StrCat(root_, "/", job_id, "/", checkpoint_id);
}

absl::StatusOr<std::shared_ptr<CheckpointFileStore::Session>> CheckpointFileStore::FindSession(
    uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return absl::NotFoundError(absl::StrCat("no upload session ", id));
  return it->second;
}

std::shared_ptr<CheckpointFileStore::Session> CheckpointFileStore::TakeSession(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return nullptr;
  std::shared_ptr<Session> session = std::move(it->second);
  sessions_.erase(it);
  return session;
}

absl::StatusOr<uint64_t> CheckpointFileStore::BeginUpload(absl::string_view job_id, int64_t attempt,
                                                          absl::string_view checkpoint_id,
                                                          int64_t step) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  RETURN_IF_ERROR(ValidateStoreId("checkpoint_id", checkpoint_id));
  if (step < 0) return absl::InvalidArgumentError(absl::StrCat("step must be >= 0, got ", step));
  auto session = std::make_shared<Session>();
  session->job_id = std::string(job_id);
  session->attempt = attempt;
  session->checkpoint_id = std::string(checkpoint_id);
  session->step = step;
  session->job_dir = JobDir(job_id);
  session->last_activity_us = absl::ToUnixMicros(options_.clock->Now());
  bool full;
  {
    absl::MutexLock lock(&mu_);
    full = static_cast<int>(sessions_.size()) >= options_.max_open_uploads;
  }
  if (full) AbortIdleUploads();
  uint64_t id;
  {
    // The session takes its place before its receiver starts, so that concurrent uploads cannot
    // pass the limit together; nobody knows its id until this returns.
    absl::MutexLock lock(&mu_);
    if (static_cast<int>(sessions_.size()) >= options_.max_open_uploads) {
      return absl::ResourceExhaustedError(
          absl::StrCat("checkpoint ", checkpoint_id, ": ", sessions_.size(),
                       " uploads are open, the most max_open_uploads allows"));
    }
    id = next_session_++;
    sessions_[id] = session;
  }
  absl::Status started = [&]() -> absl::Status {
    RETURN_IF_ERROR(CreateDirs(session->job_dir));
    CheckpointReceiver::Options receive;
    receive.staging_dir =
        absl::StrCat(session->job_dir, "/", kStagingPrefix, checkpoint_id, "-", id);
    receive.label = absl::StrCat("checkpoint ", checkpoint_id);
    receive.max_file_bytes = options_.max_file_bytes;
    receive.max_files = options_.max_files_per_checkpoint;
    receive.max_total_bytes = options_.max_checkpoint_bytes;
    receive.min_free_bytes = options_.min_free_bytes;
    ASSIGN_OR_RETURN(std::unique_ptr<CheckpointReceiver> receiver,
                     CheckpointReceiver::Start(std::move(receive)));
    absl::MutexLock session_lock(&session->mu);
    session->receiver = std::move(receiver);
    return absl::OkStatus();
  }();
  if (!started.ok()) {
    TakeSession(id);
    return started;
  }
  return id;
}

absl::Status CheckpointFileStore::AppendChunk(uint64_t session_id, absl::string_view file_name,
                                              int64_t offset, absl::string_view data) {
  if (absl::Status name = ValidateCheckpointFileName(file_name); !name.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("file_name: ", name.message()));
  }
  if (static_cast<int64_t>(data.size()) > options_.max_chunk_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk of ", data.size(), " bytes for ", absl::CEscape(file_name),
                     " exceeds max_chunk_bytes ", options_.max_chunk_bytes));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Session> session, FindSession(session_id));
  session->last_activity_us = absl::ToUnixMicros(options_.clock->Now());
  absl::MutexLock lock(&session->mu);
  if (session->receiver == nullptr) {
    return absl::NotFoundError(absl::StrCat("upload session ", session_id, " has ended"));
  }
  return session->receiver->Append(file_name, offset, data);
}

int CheckpointFileStore::AbortIdleUploads() {
  const int64_t cutoff_us =
      absl::ToUnixMicros(options_.clock->Now() - options_.upload_idle_timeout);
  std::vector<std::shared_ptr<Session>> idle;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      if (it->second->last_activity_us.load() < cutoff_us) {
        idle.push_back(std::move(it->second));
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const std::shared_ptr<Session>& session : idle) {
    absl::MutexLock lock(&session->mu);
    session->receiver.reset();  // removes what it received
  }
  return static_cast<int>(idle.size());
}

absl::Status CheckpointFileStore::Abort(uint64_t session_id) {
  std::shared_ptr<Session> session = TakeSession(session_id);
  if (session == nullptr) {
    return absl::NotFoundError(absl::StrCat("no upload session ", session_id));
  }
  absl::MutexLock lock(&session->mu);
  session->receiver.reset();  // removes what it received
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> CheckpointFileStore::Commit(uint64_t session_id,
                                                               const Manifest& manifest) {
  std::shared_ptr<Session> session = TakeSession(session_id);
  if (session == nullptr) {
    return absl::NotFoundError(absl::StrCat("no upload session ", session_id));
  }
  absl::MutexLock lock(&session->mu);
  // Whatever happens below, the session ends here; the receiver removes its staging directory
  // unless it was published.
  std::unique_ptr<CheckpointReceiver> receiver = std::move(session->receiver);
  if (receiver == nullptr) {
    return absl::NotFoundError(absl::StrCat("upload session ", session_id, " has ended"));
  }
  ASSIGN_OR_RETURN(const Manifest sealed, receiver->Seal(&manifest));

  v1::CheckpointInfo info;
  info.set_id(session->checkpoint_id);
  info.set_job_id(session->job_id);
  info.set_attempt(session->attempt);
  info.set_step(session->step);
  info.set_bytes(ManifestBytes(sealed));
  service::ManifestToProto(sealed, info.mutable_manifest());

  const std::string final_dir = CheckpointDir(session->job_id, session->checkpoint_id);
  absl::MutexLock publish(&publish_mu_);
  if (Exists(final_dir)) {
    ASSIGN_OR_RETURN(const Manifest existing, ReadManifest(final_dir));
    if (existing != sealed) {
      return absl::AlreadyExistsError(absl::StrCat("checkpoint ", session->checkpoint_id,
                                                   " of job ", session->job_id,
                                                   " already exists with a different manifest"));
    }
    return info;  // idempotent re-commit; the staging copy is removed with the receiver
  }
  RETURN_IF_ERROR(receiver->Publish(final_dir));
  return info;
}

absl::StatusOr<Manifest> CheckpointFileStore::OpenForRead(absl::string_view job_id,
                                                          absl::string_view checkpoint_id) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  RETURN_IF_ERROR(ValidateStoreId("checkpoint_id", checkpoint_id));
  const std::string dir = CheckpointDir(job_id, checkpoint_id);
  if (!Exists(dir)) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", checkpoint_id, " of job ", job_id, " not found"));
  }
  return VerifyCheckpointDir(dir);
}

absl::StatusOr<std::string> CheckpointFileStore::ReadChunk(absl::string_view job_id,
                                                           absl::string_view checkpoint_id,
                                                           absl::string_view file_name,
                                                           int64_t offset, int64_t max_bytes) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  RETURN_IF_ERROR(ValidateStoreId("checkpoint_id", checkpoint_id));
  RETURN_IF_ERROR(ValidateCheckpointFileName(file_name));
  if (offset < 0)
    return absl::InvalidArgumentError(absl::StrCat("offset must be >= 0, got ", offset));
  if (max_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_bytes must be positive, got ", max_bytes));
  }
  const std::string path = absl::StrCat(CheckpointDir(job_id, checkpoint_id), "/", file_name);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("file ", file_name, " of checkpoint ", checkpoint_id,
                                              " of job ", job_id, " not found"));
    }
    return ErrnoStatus("cannot open", path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus("stat", path, err);
  }
  if (offset > st.st_size) {
    ::close(fd);
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ", file_name,
                                              " (", st.st_size, " bytes)"));
  }
  const int64_t n = std::min<int64_t>({max_bytes, options_.max_chunk_bytes, st.st_size - offset});
  absl::StatusOr<std::string> out = ReadFileRange(fd, path, offset, n);
  ::close(fd);
  return out;
}

absl::Status CheckpointFileStore::RemoveCommitted(const std::string& job_dir,
                                                  const std::string& checkpoint_id) {
  const std::string dir = absl::StrCat(job_dir, "/", checkpoint_id);
  if (!Exists(dir)) return absl::OkStatus();
  // Rename first so a crash mid-removal never leaves a half checkpoint under its id.
  const std::string trash =
      absl::StrCat(job_dir, "/", kTrashPrefix, checkpoint_id, "-", next_trash_++);
  if (::rename(dir.c_str(), trash.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("rename ", dir, " to"), trash, errno);
  }
  RETURN_IF_ERROR(FsyncDirectory(job_dir));
  return RemoveTree(trash);
}

absl::Status CheckpointFileStore::Delete(absl::string_view job_id,
                                         absl::string_view checkpoint_id) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  RETURN_IF_ERROR(ValidateStoreId("checkpoint_id", checkpoint_id));
  absl::MutexLock publish(&publish_mu_);
  return RemoveCommitted(JobDir(job_id), std::string(checkpoint_id));
}

absl::StatusOr<std::vector<std::string>> CheckpointFileStore::ListCheckpoints(
    absl::string_view job_id) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  const std::string job_dir = JobDir(job_id);
  std::vector<std::string> ids;
  if (!Exists(job_dir)) return ids;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(job_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_directory()) continue;
    ids.push_back(name);
  }
  if (ec) return absl::InternalError(absl::StrCat("list ", job_dir, ": ", ec.message()));
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::Status CheckpointFileStore::ApplyRetention(absl::string_view job_id,
                                                 const std::vector<std::string>& keep_ids) {
  RETURN_IF_ERROR(ValidateStoreId("job_id", job_id));
  for (const std::string& id : keep_ids) RETURN_IF_ERROR(ValidateStoreId("keep_ids", id));
  const std::set<std::string> keep(keep_ids.begin(), keep_ids.end());
  absl::MutexLock publish(&publish_mu_);
  ASSIGN_OR_RETURN(std::vector<std::string> ids, ListCheckpoints(job_id));
  const std::string job_dir = JobDir(job_id);
  for (const std::string& id : ids) {
    if (keep.count(id) == 0) RETURN_IF_ERROR(RemoveCommitted(job_dir, id));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> SelectCheckpointFiles(
    const v1::CheckpointInfo& info, const google::protobuf::RepeatedPtrField<std::string>& names) {
  if (names.empty()) return absl::InvalidArgumentError("files: expected at least one file name");
  std::set<std::string> wanted(names.begin(), names.end());
  std::vector<std::string> present;
  for (const v1::ManifestEntry& entry : info.manifest()) present.push_back(entry.name());
  for (const std::string& name : wanted) {
    if (std::find(present.begin(), present.end(), name) == present.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", info.id(), " has no file '", name,
                                              "'; it has: ", absl::StrJoin(present, ", ")));
    }
  }
  v1::CheckpointInfo selected = info;
  selected.clear_manifest();
  int64_t bytes = 0;
  for (const v1::ManifestEntry& entry : info.manifest()) {
    if (wanted.count(entry.name()) == 0) continue;
    *selected.add_manifest() = entry;
    bytes += entry.size();
  }
  selected.set_bytes(bytes);
  return selected;
}

absl::Status ValidateStoreId(absl::string_view field, absl::string_view id) {
  if (id.empty() || id == "." || id == ".." || id.size() > 255) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " \"", absl::CEscape(id), "\" must be 1..255 characters, not . or .."));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " \"", absl::CEscape(id), "\" may only contain [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

}  // namespace peco::coordinator
