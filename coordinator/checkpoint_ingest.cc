#include "coordinator/checkpoint_ingest.h"

#include <sys/stat.h>

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "coordinator/coordinator_internal.h"
#include "service/checkpoint_transfer.h"

namespace peco::coordinator {

using internal::CheckpointIdFor;
using internal::Log;

CheckpointIngest::CheckpointIngest(JobStore* store, CheckpointFileStore* files, JobEventHub* events,
                                   CoordinatorMetrics* metrics, Clock* clock, int keep_checkpoints)
    : store_(store),
      files_(files),
      events_(events),
      metrics_(metrics),
      clock_(clock),
      keep_checkpoints_(keep_checkpoints) {}

absl::StatusOr<CheckpointUpload> CheckpointIngest::Begin(const v1::CheckpointHeader& header) {
  if (header.job_id().empty())
    return absl::InvalidArgumentError("header.job_id: must not be empty");
  if (header.attempt() < 1) return absl::InvalidArgumentError("header.attempt: must be >= 1");
  if (header.step() < 0) return absl::InvalidArgumentError("header.step: must be >= 0");
  CheckpointUpload upload;
  upload.checkpoint_id = CheckpointIdFor(header);
  upload.header = header;
  ASSIGN_OR_RETURN(upload.session, files_->BeginUpload(header.job_id(), header.attempt(),
                                                       upload.checkpoint_id, header.step()));
  return upload;
}

absl::Status CheckpointIngest::Append(const CheckpointUpload& upload,
                                      const v1::CheckpointChunk& chunk) {
  return files_->AppendChunk(upload.session, chunk.file_name(), chunk.offset(), chunk.data());
}

absl::StatusOr<v1::CheckpointInfo> CheckpointIngest::Commit(
    const CheckpointUpload& upload, const v1::CheckpointManifest& manifest) {
  absl::StatusOr<v1::CheckpointInfo> committed =
      files_->Commit(upload.session, service::ManifestFromProto(manifest.entries()));
  if (!committed.ok()) {
    if (metrics_ != nullptr && absl::IsDataLoss(committed.status())) {
      metrics_->CountVerificationFailure();
    }
    return committed.status();
  }
  v1::CheckpointInfo info = *committed;
  info.set_final(upload.header.final());
  info.set_committed_time_us(absl::ToUnixMicros(clock_->Now()));
  absl::Status recorded = store_->AddCheckpoint(info);
  if (absl::IsAlreadyExists(recorded)) {
    // A retried upload of a checkpoint already recorded: the same bytes are on disk.
    absl::StatusOr<v1::CheckpointInfo> existing = store_->GetCheckpoint(info.id());
    if (existing.ok()) return *existing;
  }
  if (!recorded.ok()) {
    // Nothing may stay on disk that the store does not know.
    files_->Delete(info.job_id(), info.id()).IgnoreError();
    return recorded;
  }
  if (metrics_ != nullptr) metrics_->CountCheckpointCommitted(info.bytes());
  v1::WatchJobEvent event;
  v1::TrainerEvent* committed_event = event.mutable_trainer_event();
  committed_event->set_job_id(info.job_id());
  committed_event->set_attempt(info.attempt());
  committed_event->set_type("checkpoint_committed");
  committed_event->set_message(info.id());
  committed_event->set_step(info.step());
  committed_event->set_time_us(info.committed_time_us());
  events_->Publish(info.job_id(), std::move(event));
  absl::Status retention = ApplyRetention(info.job_id());
  if (!retention.ok()) {
    Log(absl::StrCat("retention for ", info.job_id(), ": ", retention.ToString()));
  }
  return info;
}

void CheckpointIngest::Abort(const CheckpointUpload& upload) {
  files_->Abort(upload.session).IgnoreError();
}

absl::Status CheckpointIngest::ApplyRetention(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> infos, store_->ListCheckpoints(job_id));
  // Ordered by (step, attempt): keep the newest keep_checkpoints, every final one and every one
  // another job still needs (asked of the coordinator only when something would go).
  std::optional<std::set<std::string>> pinned;
  int kept = 0;
  for (auto it = infos.rbegin(); it != infos.rend(); ++it) {
    if (it->final() || kept < keep_checkpoints_) {
      if (!it->final()) ++kept;
      continue;
    }
    if (!pinned.has_value()) pinned = pinned_ ? pinned_() : std::set<std::string>();
    if (pinned->count(it->id()) > 0) continue;
    RETURN_IF_ERROR(store_->DeleteCheckpoint(it->id()));
    RETURN_IF_ERROR(files_->Delete(job_id, it->id()));
  }
  // Only what was chosen above is removed: a checkpoint of this job committed meanwhile (its
  // directory published, its record not yet written) is not among the records listed here and
  // must survive. Directories a crash left without a record go at the next start
  // (RemoveOrphans).
  return absl::OkStatus();
}

absl::Status CheckpointIngest::RemoveOrphans(const std::vector<std::string>& job_ids) {
  for (const std::string& job_id : job_ids) {
    ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> infos, store_->ListCheckpoints(job_id));
    std::vector<std::string> recorded;
    for (const v1::CheckpointInfo& info : infos) recorded.push_back(info.id());
    RETURN_IF_ERROR(files_->ApplyRetention(job_id, recorded));
  }
  return absl::OkStatus();
}

std::vector<int64_t> CheckpointIngest::StampOf(const std::string& dir, const Manifest& manifest) {
  std::vector<int64_t> stamp;
  auto add = [&](const std::string& name) {
    struct stat st;
    if (::stat((dir + "/" + name).c_str(), &st) != 0) return false;
    stamp.insert(stamp.end(),
                 {static_cast<int64_t>(st.st_ino), static_cast<int64_t>(st.st_size),
                  static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec});
    return true;
  };
  if (!add(kManifestFileName)) return {};
  for (const ManifestEntry& entry : manifest) {
    if (!add(entry.name)) return {};
  }
  return stamp;
}

std::optional<Manifest> CheckpointIngest::CachedVerification(const std::string& job_id,
                                                             const std::string& checkpoint_id,
                                                             std::vector<int64_t>* stamp) {
  const std::string dir = files_->CheckpointDir(job_id, checkpoint_id);
  if (ValidateStoreId("job_id", job_id).ok() &&
      ValidateStoreId("checkpoint_id", checkpoint_id).ok()) {
    absl::StatusOr<Manifest> listed = ReadManifest(dir);
    if (listed.ok()) *stamp = StampOf(dir, *listed);
  }
  if (stamp->empty()) return std::nullopt;
  absl::MutexLock lock(&verified_mu_);
  auto it = verified_.find(dir);
  if (it != verified_.end() && it->second.stamp == *stamp &&
      clock_->Now() - it->second.at < kVerifiedFor) {
    return it->second.manifest;
  }
  return std::nullopt;
}

absl::StatusOr<Manifest> CheckpointIngest::Verify(const std::string& job_id,
                                                  const std::string& checkpoint_id) {
  const std::string dir = files_->CheckpointDir(job_id, checkpoint_id);
  const absl::Time now = clock_->Now();
  std::vector<int64_t> stamp;
  if (std::optional<Manifest> cached = CachedVerification(job_id, checkpoint_id, &stamp)) {
    return *std::move(cached);
  }
  absl::StatusOr<Manifest> verified = files_->OpenForRead(job_id, checkpoint_id);
  absl::MutexLock lock(&verified_mu_);
  if (!verified.ok()) {
    verified_.erase(dir);
    if (metrics_ != nullptr && absl::IsDataLoss(verified.status())) {
      metrics_->CountVerificationFailure();
    }
    return verified;
  }
  if (!stamp.empty()) {
    // Bounded: entries past their time go first, then the cache starts over.
    if (verified_.size() >= 10000) {
      for (auto it = verified_.begin(); it != verified_.end();) {
        it = now - it->second.at >= kVerifiedFor ? verified_.erase(it) : std::next(it);
      }
      if (verified_.size() >= 10000) verified_.clear();
    }
    verified_[dir] = Verified{std::move(stamp), *verified, now};
  }
  return verified;
}

std::pair<std::string, int64_t> CheckpointIngest::NewestVerified(const std::string& job_id) {
  absl::StatusOr<std::vector<v1::CheckpointInfo>> infos = store_->ListCheckpoints(job_id);
  if (!infos.ok()) {
    Log(absl::StrCat("listing checkpoints of ", job_id, ": ", infos.status().ToString()));
    return {"", 0};
  }
  for (auto it = infos->rbegin(); it != infos->rend(); ++it) {
    absl::StatusOr<Manifest> verified = Verify(job_id, it->id());
    if (verified.ok()) return {it->id(), it->step()};
    Log(absl::StrCat(job_id, ": checkpoint ", it->id(), " is refused (",
                     verified.status().message(), "); trying the one before"));
  }
  return {"", 0};
}

absl::StatusOr<v1::CheckpointInfo> CheckpointIngest::Open(const std::string& checkpoint_id,
                                                          const std::vector<std::string>& only) {
  if (checkpoint_id.empty()) {
    return absl::InvalidArgumentError("checkpoint_id: must not be empty");
  }
  ASSIGN_OR_RETURN(v1::CheckpointInfo info, store_->GetCheckpoint(checkpoint_id));
  if (only.empty()) {
    RETURN_IF_ERROR(Verify(info.job_id(), info.id()).status());
    return info;
  }
  std::vector<int64_t> stamp;
  if (CachedVerification(info.job_id(), info.id(), &stamp).has_value()) return info;
  RETURN_IF_ERROR(ValidateStoreId("checkpoint_id", info.id()));
  const std::string dir = files_->CheckpointDir(info.job_id(), info.id());
  ASSIGN_OR_RETURN(Manifest manifest, ReadManifest(dir));
  for (const std::string& name : only) {
    auto entry = std::find_if(manifest.begin(), manifest.end(),
                              [&](const ManifestEntry& e) { return e.name == name; });
    if (entry == manifest.end()) continue;  // SelectCheckpointFiles names what is missing
    if (absl::Status file = VerifyCheckpointFile(dir, *entry); !file.ok()) {
      if (metrics_ != nullptr && absl::IsDataLoss(file)) metrics_->CountVerificationFailure();
      return file;
    }
  }
  return info;
}

absl::StatusOr<std::string> CheckpointIngest::ReadChunk(const v1::CheckpointInfo& info,
                                                        const std::string& file_name,
                                                        int64_t offset, int64_t max_bytes) {
  return files_->ReadChunk(info.job_id(), info.id(), file_name, offset, max_bytes);
}

}  // namespace peco::coordinator
