// An in-memory CoordinatorClient for WorkerAgent tests: records every call, answers with
// queued responses, and fails on demand.
// Thread-safety: every method locks one mutex (the agent calls from its control and transfer
// threads).
#ifndef PECO_TESTS_WORKER_FAKE_COORDINATOR_CLIENT_H_
#define PECO_TESTS_WORKER_FAKE_COORDINATOR_CLIENT_H_

#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/checkpoint_manifest.h"
#include "common/sha256.h"
#include "service/checkpoint_transfer.h"
#include "worker/coordinator_client.h"

namespace peco::worker {

class FakeCoordinatorClient : public CoordinatorClient {
 public:
  struct Upload {
    v1::CheckpointHeader header;
    std::map<std::string, std::string> files;  // name -> content, read at upload time
    std::string manifest;                      // MANIFEST text
    size_t heartbeats_before = 0;              // heartbeats answered before this upload
  };
  struct Fetch {
    std::string checkpoint_id;
    std::string worker_id;
    std::string dest;
  };

  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request) override {
    absl::MutexLock lock(&mu_);
    registers.push_back(request);
    if (!register_error.ok()) return register_error;
    v1::RegisterResponse response;
    response.set_worker_id(request.worker().id().empty() ? assigned_id : request.worker().id());
    response.set_heartbeat_interval_ms(heartbeat_interval_ms);
    *response.mutable_stale() = register_stale;
    return response;
  }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override {
    absl::MutexLock lock(&mu_);
    heartbeats.push_back(request);
    if (!heartbeat_errors.empty()) {
      absl::Status error = heartbeat_errors.front();
      heartbeat_errors.pop_front();
      return error;
    }
    if (!heartbeat_error.ok()) return heartbeat_error;
    ++heartbeats_ok;
    for (const v1::AttemptResult& result : request.finished()) results.push_back(result);
    if (heartbeat_responses.empty()) return v1::HeartbeatResponse();
    v1::HeartbeatResponse response = heartbeat_responses.front();
    heartbeat_responses.pop_front();
    return response;
  }

  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const std::vector<v1::ReportProgressRequest>& batch) override {
    absl::MutexLock lock(&mu_);
    ++report_calls;
    if (!report_error.ok()) return report_error;
    reports.insert(reports.end(), batch.begin(), batch.end());
    v1::ReportProgressResponse response;
    response.set_accepted(static_cast<int64_t>(batch.size()));
    return response;
  }

  absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(const v1::CheckpointHeader& header,
                                                      const std::string& dir) override {
    absl::MutexLock lock(&mu_);
    ++upload_calls;
    if (!upload_errors.empty()) {
      absl::Status error = upload_errors.front();
      upload_errors.pop_front();
      return error;
    }
    if (!upload_error.ok()) return upload_error;
    Upload upload;
    upload.header = header;
    upload.heartbeats_before = heartbeats_ok;
    v1::CheckpointInfo info;
    for (const auto& item : std::filesystem::directory_iterator(dir)) {
      std::ifstream in(item.path());
      std::stringstream content;
      content << in.rdbuf();
      const std::string name = item.path().filename().string();
      if (name == kManifestFileName) {
        upload.manifest = content.str();
      } else {
        upload.files[name] = content.str();
        info.set_bytes(info.bytes() + static_cast<int64_t>(content.str().size()));
      }
    }
    uploads.push_back(upload);
    info.set_id(absl::StrCat(header.job_id(), "-a", header.attempt(), "-step-", header.step()));
    info.set_job_id(header.job_id());
    info.set_attempt(header.attempt());
    info.set_step(header.step());
    return info;
  }

  absl::StatusOr<v1::CheckpointInfo> FetchCheckpoint(const std::string& checkpoint_id,
                                                     const std::string& worker_id,
                                                     const std::string& dest_dir) override {
    absl::MutexLock lock(&mu_);
    fetches.push_back({checkpoint_id, worker_id, dest_dir});
    if (!fetch_error.ok()) return fetch_error;
    auto it = checkpoints.find(checkpoint_id);
    if (it == checkpoints.end()) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", checkpoint_id, " not found"));
    }
    std::filesystem::create_directories(dest_dir);
    v1::CheckpointInfo info;
    info.set_id(checkpoint_id);
    info.set_step(2);
    Manifest entries;
    for (const auto& [name, content] : it->second) {
      std::ofstream(std::filesystem::path(dest_dir) / name) << content;
      entries.push_back({name, static_cast<int64_t>(content.size()), Sha256Hex(content)});
    }
    service::ManifestToProto(entries, info.mutable_manifest());
    info.set_bytes(ManifestBytes(entries));
    std::ofstream(std::filesystem::path(dest_dir) / kManifestFileName) << FormatManifest(entries);
    return info;
  }

  // Everything below is guarded by mu(); tests read it with the lock or between agent calls
  // (the agent calls the client only from Tick()/TransferOnce(), which the test drives).
  absl::Mutex& mu() { return mu_; }

  // Switches.
  std::string assigned_id = "worker-1";
  int64_t heartbeat_interval_ms = 1000;
  absl::Status register_error;
  absl::Status heartbeat_error;               // every heartbeat while set
  std::deque<absl::Status> heartbeat_errors;  // one per heartbeat, before heartbeat_error
  absl::Status report_error;
  std::deque<absl::Status> upload_errors;  // one per upload call, before upload_error
  absl::Status upload_error;               // every upload while set
  absl::Status fetch_error;
  google::protobuf::RepeatedPtrField<v1::RunningRanks> register_stale;
  std::deque<v1::HeartbeatResponse> heartbeat_responses;
  std::map<std::string, std::map<std::string, std::string>> checkpoints;  // for fetches

  // Records.
  std::vector<v1::RegisterRequest> registers;
  std::vector<v1::HeartbeatRequest> heartbeats;
  size_t heartbeats_ok = 0;
  std::vector<v1::AttemptResult> results;  // from successful heartbeats, in order
  std::vector<v1::ReportProgressRequest> reports;
  int report_calls = 0;
  int upload_calls = 0;
  std::vector<Upload> uploads;
  std::vector<Fetch> fetches;

 private:
  absl::Mutex mu_;
};

}  // namespace peco::worker

#endif  // PECO_TESTS_WORKER_FAKE_COORDINATOR_CLIENT_H_
