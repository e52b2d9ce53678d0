#include "common/file_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"

namespace peco {

absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int error) {
  std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  switch (error) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return absl::ResourceExhaustedError(std::move(message));
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(std::move(message));
    default:
      return absl::InternalError(std::move(message));
  }
}

absl::StatusOr<std::string> ReadFileRange(int fd, const std::string& path, int64_t offset,
                                          int64_t size) {
  std::string out(static_cast<size_t>(size), '\0');
  int64_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pread(fd, out.data() + done, static_cast<size_t>(size - done), offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("cannot read", path, errno);
    if (n == 0) break;
    done += n;
  }
  out.resize(static_cast<size_t>(done));
  return out;
}

namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return ErrnoStatus(what, path, errno);
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return ErrnoError("cannot open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoError("fsync failed for", path);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("file not found: ", path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoError("cannot open", path);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return ErrnoError("read error in", path);
  return std::move(out).str();
}

absl::Status WriteFileSynced(const std::string& path, absl::string_view data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("cannot create", path);
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoError("write failed for", path);
      ::close(fd);
      return status;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    absl::Status status = ErrnoError("fsync failed for", path);
    ::close(fd);
    return status;
  }
  if (::close(fd) != 0) return ErrnoError("close failed for", path);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, mode_t mode) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  // A stale temporary (a crash of a process with this pid) would keep its permissions: the
  // file is created afresh so that it gets `mode`.
  ::unlink(tmp.c_str());
  absl::Status status = WriteFileSynced(tmp, data, mode);
  if (!status.ok()) {
    std::remove(tmp.c_str());
    return status;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError("cannot rename onto", path);
    std::remove(tmp.c_str());
    return status;
  }
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return FsyncDirectory(parent.empty() ? "." : parent.string());
}

absl::Status FsyncDirectory(const std::string& dir) {
  return FsyncPath(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

absl::Status FsyncFile(const std::string& path) { return FsyncPath(path, O_RDONLY | O_CLOEXEC); }

}  // namespace peco
