// CoordinatorClient: the worker's view of the coordinator's WorkerService (proto/peco/v1/
// worker_service.proto, docs/SERVICE.md). WorkerAgent talks only to this interface, so its tests
// use an in-memory fake and no gRPC; GrpcCoordinatorClient (grpc_coordinator_client.h) is the
// real implementation.
//
// Errors carry the canonical codes of the coordinator's answer (absl's retry meaning):
// UNAVAILABLE / DEADLINE_EXCEEDED: the call may be retried; NOT_FOUND on Heartbeat: the
// coordinator does not know this worker, Register again; FAILED_PRECONDITION on UploadCheckpoint:
// the attempt is stale, drop the upload; UNAUTHENTICATED: the worker token is wrong.
//
// Thread-safety: implementations must allow concurrent calls from several threads (the agent's
// control loop heartbeats while its transfer loop uploads).
#ifndef PECO_WORKER_COORDINATOR_CLIENT_H_
#define PECO_WORKER_COORDINATOR_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "peco/v1/worker_service.pb.h"

namespace peco::worker {

class CoordinatorClient {
 public:
  CoordinatorClient() = default;
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;
  virtual ~CoordinatorClient() = default;

  // Joins or rejoins the cluster.
  virtual absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request) = 0;

  // Liveness and work exchange. NOT_FOUND when the coordinator does not know the worker.
  virtual absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) = 0;

  // Sends `reports` as one ReportProgress stream. On OK every report was received: the response
  // says how many were accepted and how many refused (old attempts); nothing needs resending. On
  // an error none may be assumed received (points are idempotent, so resending is safe).
  virtual absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const std::vector<v1::ReportProgressRequest>& reports) = 0;

  // Uploads the checkpoint in `dir` (its files listed in `dir`/MANIFEST, and the MANIFEST):
  // `header`, the chunks of each file in name order, then the manifest entries. Returns the
  // committed checkpoint's info. Errors: ReadManifest's for a bad local checkpoint (DataLoss,
  // NotFound), the coordinator's (FAILED_PRECONDITION for a stale attempt, DATA_LOSS when the
  // bytes did not verify, UNAVAILABLE...).
  virtual absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(const v1::CheckpointHeader& header,
                                                              const std::string& dir) = 0;

  // Downloads committed checkpoint `checkpoint_id` into `dest_dir`, which must not exist: every
  // file is checked against the size and SHA-256 of the info's manifest, and MANIFEST is written
  // (`<sha256> <size> <name>` lines sorted by name, as the trainer writes it). The directory
  // appears only once everything verified; on any error nothing is left at `dest_dir`. Errors:
  // AlreadyExists for an existing `dest_dir`; DataLoss naming the file for bytes that do not
  // match; the coordinator's (NOT_FOUND for an unknown checkpoint...); Internal for local I/O.
  virtual absl::StatusOr<v1::CheckpointInfo> FetchCheckpoint(const std::string& checkpoint_id,
                                                             const std::string& worker_id,
                                                             const std::string& dest_dir) = 0;
};

}  // namespace peco::worker

#endif  // PECO_WORKER_COORDINATOR_CLIENT_H_
