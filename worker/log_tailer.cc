#include "worker/log_tailer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

namespace peco::worker {

LogTailer::LogTailer(std::string path, std::string job_id, int64_t attempt, int32_t rank,
                     int64_t max_chunk_bytes, int64_t max_poll_bytes)
    : path_(std::move(path)),
      job_id_(std::move(job_id)),
      attempt_(attempt),
      rank_(rank),
      max_chunk_bytes_(std::max<int64_t>(1, max_chunk_bytes)),
      max_poll_bytes_(std::max<int64_t>(1, max_poll_bytes)) {}

std::vector<v1::LogChunk> LogTailer::Poll(bool at_end) {
  std::vector<v1::LogChunk> chunks;
  // Called every agent tick for every rank: nothing appended costs one stat and no buffer.
  struct stat info;
  if (::stat(path_.c_str(), &info) != 0 || info.st_size <= offset_) return chunks;
  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return chunks;
  std::string data(static_cast<size_t>(std::min<int64_t>(max_poll_bytes_, info.st_size - offset_)),
                   '\0');
  ssize_t n;
  do {
    n = ::pread(fd, data.data(), data.size(), offset_);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0) return chunks;
  data.resize(static_cast<size_t>(n));
  size_t begin = 0;
  while (begin < data.size()) {
    const size_t limit = std::min(data.size(), begin + static_cast<size_t>(max_chunk_bytes_));
    // End the chunk after the last newline within the limit.
    size_t end = limit;
    const size_t newline = data.rfind('\n', limit - 1);
    if (newline != std::string::npos && newline >= begin) {
      end = newline + 1;
    } else if (limit - begin < static_cast<size_t>(max_chunk_bytes_) && !at_end) {
      break;  // an unfinished line: wait for the rest
    }
    v1::LogChunk chunk;
    chunk.set_job_id(job_id_);
    chunk.set_attempt(attempt_);
    chunk.set_rank(rank_);
    chunk.set_offset(offset_);
    chunk.set_data(data.substr(begin, end - begin));
    offset_ += static_cast<int64_t>(end - begin);
    chunks.push_back(std::move(chunk));
    begin = end;
  }
  return chunks;
}

}  // namespace peco::worker
