#include "worker/checkpoint_outbox.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "worker/checkpoint_link.h"

namespace peco::worker {
namespace fs = std::filesystem;

CheckpointOutbox::CheckpointOutbox(std::string root, absl::Duration initial_backoff,
                                   absl::Duration max_backoff)
    : root_(std::move(root)), initial_backoff_(initial_backoff), max_backoff_(max_backoff) {}

absl::Status CheckpointOutbox::Add(const v1::CheckpointHeader& header,
                                   const std::string& checkpoint_dir) {
  const std::string dir = (fs::path(root_) / absl::StrFormat("%s-a%d-step-%012d", header.job_id(),
                                                             header.attempt(), header.step()))
                              .string();
  {
    absl::MutexLock lock(&mu_);
    for (const Item& item : items_) {
      if (item.entry.dir == dir && !item.dropped) {
        return absl::AlreadyExistsError(absl::StrCat("checkpoint ", dir, " is already queued"));
      }
    }
  }
  std::error_code error;
  fs::create_directories(root_, error);
  if (error)
    return absl::InternalError(absl::StrCat("cannot create ", root_, ": ", error.message()));
  fs::remove_all(dir, error);  // a leftover of an earlier worker process
  RETURN_IF_ERROR(LinkCheckpoint(checkpoint_dir, dir));
  absl::MutexLock lock(&mu_);
  Item item;
  item.entry.id = next_id_++;
  item.entry.header = header;
  item.entry.dir = dir;
  items_.push_back(std::move(item));
  return absl::OkStatus();
}

std::optional<CheckpointOutbox::Entry> CheckpointOutbox::NextDue(absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (Item& item : items_) {
    if (item.busy || item.dropped || item.entry.next_try > now) continue;
    item.busy = true;
    return item.entry;
  }
  return std::nullopt;
}

void CheckpointOutbox::Finish(uint64_t id, bool retry, absl::Time now, const absl::Status& error) {
  std::string remove;
  {
    absl::MutexLock lock(&mu_);
    auto it = std::find_if(items_.begin(), items_.end(),
                           [&](const Item& item) { return item.entry.id == id; });
    if (it == items_.end()) return;
    it->busy = false;
    if (retry && !it->dropped) {
      Entry& entry = it->entry;
      absl::Duration backoff = initial_backoff_;
      for (int i = 0; i < entry.tries && backoff < max_backoff_; ++i) backoff *= 2;
      entry.next_try = now + std::min(backoff, max_backoff_);
      ++entry.tries;
      entry.last_error = error;
      return;
    }
    remove = it->entry.dir;
    items_.erase(it);
  }
  RemoveDir(remove);
}

void CheckpointOutbox::DropAttempt(const std::string& job_id, int64_t attempt) {
  std::vector<std::string> remove;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = items_.begin(); it != items_.end();) {
      const v1::CheckpointHeader& header = it->entry.header;
      if (header.job_id() != job_id || header.attempt() != attempt) {
        ++it;
      } else if (it->busy) {
        it->dropped = true;
        ++it;
      } else {
        remove.push_back(it->entry.dir);
        it = items_.erase(it);
      }
    }
  }
  for (const std::string& dir : remove) RemoveDir(dir);
}

int CheckpointOutbox::Pending(const std::string& job_id, int64_t attempt) const {
  absl::MutexLock lock(&mu_);
  int count = 0;
  for (const Item& item : items_) {
    if (job_id.empty() ||
        (item.entry.header.job_id() == job_id && item.entry.header.attempt() == attempt)) {
      ++count;
    }
  }
  return count;
}

void CheckpointOutbox::RemoveDir(const std::string& dir) const {
  std::error_code ignored;
  fs::remove_all(dir, ignored);
}

}  // namespace peco::worker
