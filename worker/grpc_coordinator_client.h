// GrpcCoordinatorClient: CoordinatorClient over a gRPC channel to the coordinator's
// WorkerService.
//
// Every call carries `authorization: Bearer <token>` metadata (docs/SERVICE.md, Security) and a
// deadline: `rpc_timeout` for Register, Heartbeat and ReportProgress, `transfer_timeout` for a
// whole checkpoint upload or fetch. The client makes one try per call; retrying is the caller's
// decision (WorkerAgent retries with backoff). grpc::Status is turned into absl::Status in one
// place, FromGrpcStatus(), which keeps the canonical code and the message.
//
//   GrpcCoordinatorClient::Options options;
//   options.token = "...";
//   GrpcCoordinatorClient client(grpc::CreateChannel("127.0.0.1:7450",
//                                                    grpc::InsecureChannelCredentials()),
//                                options);
//   ASSIGN_OR_RETURN(v1::RegisterResponse registered, client.Register(request));
//
// Thread-safety: thread-safe (the stub is); calls may run concurrently.
#ifndef PECO_WORKER_GRPC_COORDINATOR_CLIENT_H_
#define PECO_WORKER_GRPC_COORDINATOR_CLIENT_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"
#include "peco/v1/worker_service.grpc.pb.h"
#include "worker/coordinator_client.h"

namespace peco::worker {

// Returns `status` as an absl::Status with the same canonical code and message (the numeric
// values of the two code enums are the same).
absl::Status FromGrpcStatus(const grpc::Status& status);

class GrpcCoordinatorClient : public CoordinatorClient {
 public:
  struct Options {
    // The worker token (sent as `authorization: Bearer <token>`). Not empty.
    std::string token;
    // Deadline of Register, Heartbeat and ReportProgress.
    absl::Duration rpc_timeout = absl::Seconds(10);
    // Deadline of one whole UploadCheckpoint or FetchCheckpoint.
    absl::Duration transfer_timeout = absl::Minutes(30);
    // Largest chunk an upload sends (the protocol allows at most 1 MiB).
    int64_t chunk_bytes = int64_t{1} << 20;

    // Returns InvalidArgument naming the first bad field.
    absl::Status Validate() const;
  };

  // `channel` is shared with the stub. Options must be valid (Validate()).
  GrpcCoordinatorClient(std::shared_ptr<grpc::ChannelInterface> channel, Options options);

  absl::StatusOr<v1::RegisterResponse> Register(const v1::RegisterRequest& request) override;
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const v1::HeartbeatRequest& request) override;
  absl::StatusOr<v1::ReportProgressResponse> ReportProgress(
      const std::vector<v1::ReportProgressRequest>& reports) override;
  absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(const v1::CheckpointHeader& header,
                                                      const std::string& dir) override;
  absl::StatusOr<v1::CheckpointInfo> FetchCheckpoint(const std::string& checkpoint_id,
                                                     const std::string& worker_id,
                                                     const std::string& dest_dir) override;

  // Cancels every call in flight (they return CANCELLED) and makes later calls return CANCELLED
  // at once. For a daemon that must stop within a deadline.
  void Shutdown();

 private:
  class ActiveCall;

  // Sets the token metadata and a deadline of `timeout` from now.
  void Prepare(grpc::ClientContext& context, absl::Duration timeout) const;

  const Options options_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;

  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<grpc::ClientContext*> active_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::worker

#endif  // PECO_WORKER_GRPC_COORDINATOR_CLIENT_H_
