// The coordinator's gRPC services: thin adapters from JobService and WorkerService
// (proto/peco/v1/) to Coordinator. Each handler checks the bearer token (auth.h), converts the
// request, calls the core and maps its absl::Status with ToGrpcStatus(); nothing else happens
// here, so the behaviour is tested on Coordinator directly.
//
// Ownership: the services borrow the Coordinator and the JobEventHub, which must outlive the
// grpc::Server they are registered with. Thread-safety: handlers run concurrently on gRPC's
// threads; Coordinator is thread-safe.
#ifndef PECO_COORDINATOR_RPC_SERVICES_H_
#define PECO_COORDINATOR_RPC_SERVICES_H_

#include <string>

#include "coordinator/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/job_event_hub.h"
#include "coordinator/job_log_store.h"
#include "peco/v1/job_service.grpc.pb.h"
#include "peco/v1/worker_service.grpc.pb.h"

namespace peco::coordinator {

// Largest checkpoint chunk the services send.
inline constexpr int64_t kCheckpointChunkBytes = int64_t{1} << 20;

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // `tokens` decides who may call (Role::kUser). Everything is borrowed and must outlive the
  // service.
  JobServiceImpl(Coordinator* coordinator, JobEventHub* events, const TokenRegistry* tokens,
                 JobLogStore* logs);

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::GetJobResponse* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override;
  grpc::Status ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request,
                         v1::ResumeJobResponse* response) override;
  // History (when asked) and then live events until the job reaches a terminal state, the
  // client goes away or the server shuts down.
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::WatchJobEvent>* writer) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* context,
                               const v1::ListCheckpointsRequest* request,
                               v1::ListCheckpointsResponse* response) override;
  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;
  // The stored logs of the job (NOT_FOUND for an unknown job), each log from its start; with
  // `follow`, then new bytes as they arrive until the job is terminal (its last attempt's logs
  // precede its result: workers send the result only after every report was acknowledged), the
  // client goes away or the server shuts down (UNAVAILABLE).
  grpc::Status StreamLogs(grpc::ServerContext* context, const v1::StreamLogsRequest* request,
                          grpc::ServerWriter<v1::StreamLogsResponse>* writer) override;

 private:
  // Checks the user token; `caller` receives who the call acts as (job_access.h).
  grpc::Status Authorize(const grpc::ServerContext& context, UserCaller* caller) const;

  Coordinator* const coordinator_;
  JobEventHub* const events_;
  const TokenRegistry* const tokens_;
  JobLogStore* const logs_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // `tokens` decides who may call (Role::kWorker); borrowed, it must outlive the service. With
  // `require_client_certificate` (the coordinator's --tls_client_ca), every call must also come
  // over TLS from a peer whose certificate verified against that CA (mutual TLS).
  // Log chunks in ReportProgress go to `logs`. Everything is borrowed.
  WorkerServiceImpl(Coordinator* coordinator, const TokenRegistry* tokens, JobLogStore* logs,
                    bool require_client_certificate = false);

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;
  grpc::Status ReportProgress(grpc::ServerContext* context,
                              grpc::ServerReader<v1::ReportProgressRequest>* reader,
                              v1::ReportProgressResponse* response) override;
  // A header, chunks, then the manifest. A stream that ends early, a message out of order or a
  // digest that does not match aborts the upload: nothing is committed.
  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
                                v1::UploadCheckpointResponse* response) override;
  grpc::Status FetchCheckpoint(grpc::ServerContext* context,
                               const v1::FetchCheckpointRequest* request,
                               grpc::ServerWriter<v1::FetchCheckpointResponse>* writer) override;

 private:
  // The worker token, and the client certificate when required.
  // Checks the worker token (and the client certificate when required); `caller` receives the
  // identity the token is bound to (coordinator.h, NOTE [worker identity]).
  grpc::Status Authorize(const grpc::ServerContext& context, WorkerCaller* caller) const;

  Coordinator* const coordinator_;
  const TokenRegistry* const tokens_;
  JobLogStore* const logs_;
  const bool require_client_certificate_;
};

}  // namespace peco::coordinator

#endif  // PECO_COORDINATOR_RPC_SERVICES_H_
