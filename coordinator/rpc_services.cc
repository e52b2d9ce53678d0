#include "coordinator/rpc_services.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/auth.h"
#include "coordinator/checkpoint_file_store.h"
#include "coordinator/grpc_status.h"
#include "coordinator/job_streams.h"

namespace peco::coordinator {
namespace {

// Reports are handed to the core in batches of this many.
constexpr size_t kReportBatch = 1000;

// Sends a verified checkpoint: its info, then every file in manifest order as chunks (an empty
// file as one empty chunk, so the receiver creates it). Works for DownloadCheckpointResponse
// and FetchCheckpointResponse, which share their shape.
// `only` (when not empty) limits the stream, and the info's manifest, to those files.
template <typename Response>
grpc::Status StreamCheckpoint(Coordinator* coordinator, absl::StatusOr<v1::CheckpointInfo> info,
                              grpc::ServerContext* context, grpc::ServerWriter<Response>* writer,
                              const google::protobuf::RepeatedPtrField<std::string>* only) {
  if (!info.ok()) return ToGrpcStatus(info.status());
  if (only != nullptr && !only->empty()) {
    absl::StatusOr<v1::CheckpointInfo> selected = SelectCheckpointFiles(*info, *only);
    if (!selected.ok()) return ToGrpcStatus(selected.status());
    info = *std::move(selected);
  }
  Response head;
  *head.mutable_info() = *info;
  if (!writer->Write(head)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  for (const v1::ManifestEntry& entry : info->manifest()) {
    int64_t offset = 0;
    do {
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      absl::StatusOr<std::string> data =
          coordinator->ReadCheckpointChunk(*info, entry.name(), offset, kCheckpointChunkBytes);
      if (!data.ok()) return ToGrpcStatus(data.status());
      if (data->empty() && offset > 0) break;
      Response part;
      v1::CheckpointChunk* chunk = part.mutable_chunk();
      chunk->set_file_name(entry.name());
      chunk->set_offset(offset);
      offset += static_cast<int64_t>(data->size());
      *chunk->mutable_data() = std::move(*data);
      if (!writer->Write(part))
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    } while (offset < entry.size());
  }
  return grpc::Status::OK;
}

// The one unary adapter: a refused credential as it is, else the core's answer, its Status
// mapped to gRPC's (grpc_status.h).
template <typename Response, typename Call>
grpc::Status Unary(const grpc::Status& authorized, Response* response, Call call) {
  if (!authorized.ok()) return authorized;
  absl::StatusOr<Response> result = call();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

}  // namespace

#define PECO_CHECK_WORKER(context, caller)                       \
  do {                                                           \
    grpc::Status auth_status = Authorize(*(context), &(caller)); \
    if (!auth_status.ok()) return auth_status;                   \
  } while (false)

// ---------------------------------------------------------------------------------------------
// JobService

JobServiceImpl::JobServiceImpl(Coordinator* coordinator, JobEventHub* events,
                               const TokenRegistry* tokens, JobLogStore* logs)
    : coordinator_(coordinator), events_(events), tokens_(tokens), logs_(logs) {}

grpc::Status JobServiceImpl::Authorize(const grpc::ServerContext& context,
                                       UserCaller* caller) const {
  Caller identity;
  grpc::Status token = tokens_->Authorize(context, Role::kUser, &identity);
  if (!token.ok()) return token;
  caller->name = identity.user_name();
  caller->admin = identity.admin();
  return token;
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context,
                                       const v1::SubmitJobRequest* request,
                                       v1::SubmitJobResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->SubmitJob(*request, caller); });
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                                    v1::GetJobResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->GetJob(*request, caller); });
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->ListJobs(*request, caller); });
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request,
                                       v1::CancelJobResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->CancelJob(*request, caller); });
}

grpc::Status JobServiceImpl::ResumeJob(grpc::ServerContext* context,
                                       const v1::ResumeJobRequest* request,
                                       v1::ResumeJobResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->ResumeJob(*request, caller); });
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context,
                                      const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::WatchJobEvent>* writer) {
  UserCaller caller;
  if (grpc::Status auth = Authorize(*context, &caller); !auth.ok()) return auth;
  if (absl::Status access = coordinator_->AuthorizeJobRead(request->job_id(), caller, "watch");
      !access.ok()) {
    return ToGrpcStatus(access);
  }
  return ToGrpcStatus(WatchJobEvents(
      *coordinator_, *events_, *request,
      [&](const v1::WatchJobEvent& event) { return writer->Write(event); },
      [&] { return context->IsCancelled(); }));
}

grpc::Status JobServiceImpl::ListCheckpoints(grpc::ServerContext* context,
                                             const v1::ListCheckpointsRequest* request,
                                             v1::ListCheckpointsResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->ListCheckpoints(*request, caller); });
}

grpc::Status JobServiceImpl::DownloadCheckpoint(
    grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
    grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) {
  UserCaller caller;
  if (grpc::Status auth = Authorize(*context, &caller); !auth.ok()) return auth;
  return StreamCheckpoint(
      coordinator_,
      coordinator_->OpenCheckpoint(request->checkpoint_id(), caller,
                                   {request->files().begin(), request->files().end()}),
      context, writer, &request->files());
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext* context,
                                         const v1::ListWorkersRequest* request,
                                         v1::ListWorkersResponse* response) {
  UserCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->ListWorkers(*request); });
}

grpc::Status JobServiceImpl::StreamLogs(grpc::ServerContext* context,
                                        const v1::StreamLogsRequest* request,
                                        grpc::ServerWriter<v1::StreamLogsResponse>* writer) {
  UserCaller caller;
  if (grpc::Status auth = Authorize(*context, &caller); !auth.ok()) return auth;
  if (absl::Status access = coordinator_->AuthorizeJobRead(request->job_id(), caller, "logs");
      !access.ok()) {
    return ToGrpcStatus(access);
  }
  return ToGrpcStatus(FollowJobLogs(
      *coordinator_, *logs_, *request, kCheckpointChunkBytes,
      [&](v1::StreamLogsResponse piece) { return writer->Write(piece); },
      [&] { return context->IsCancelled(); }));
}

// ---------------------------------------------------------------------------------------------
// WorkerService

WorkerServiceImpl::WorkerServiceImpl(Coordinator* coordinator, const TokenRegistry* tokens,
                                     JobLogStore* logs, bool require_client_certificate)
    : coordinator_(coordinator),
      tokens_(tokens),
      logs_(logs),
      require_client_certificate_(require_client_certificate) {}

grpc::Status WorkerServiceImpl::Authorize(const grpc::ServerContext& context,
                                          WorkerCaller* caller) const {
  Caller identity;
  grpc::Status token = tokens_->Authorize(context, Role::kWorker, &identity);
  if (!token.ok()) return token;
  if (caller != nullptr) caller->bound_worker_id = identity.bound_worker_id();
  if (!require_client_certificate_) return token;
  grpc::Status certificate = CheckPeerCertificate(context, "WorkerService");
  if (!certificate.ok()) return certificate;
  // With mutual TLS the certificate names the worker too: its common name is the worker id the
  // caller acts as, and must agree with an issued token's.
  const std::string common_name = PeerCommonName(context);
  if (common_name.empty() || caller == nullptr) return certificate;
  if (!ValidateStoreId("certificate common name", common_name).ok()) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat("the client certificate's common name '", common_name,
                                     "' is not a worker id ([A-Za-z0-9._-], 1 to 255)"));
  }
  if (!caller->bound_worker_id.empty() && caller->bound_worker_id != common_name) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat("the worker token is bound to worker '", caller->bound_worker_id,
                     "' but the client certificate is '", common_name, "'"));
  }
  caller->bound_worker_id = common_name;
  return certificate;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* context,
                                         const v1::RegisterRequest* request,
                                         v1::RegisterResponse* response) {
  WorkerCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->Register(*request, caller); });
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext* context,
                                          const v1::HeartbeatRequest* request,
                                          v1::HeartbeatResponse* response) {
  WorkerCaller caller;
  return Unary(Authorize(*context, &caller), response,
               [&] { return coordinator_->Heartbeat(*request, caller); });
}

grpc::Status WorkerServiceImpl::ReportProgress(
    grpc::ServerContext* context, grpc::ServerReader<v1::ReportProgressRequest>* reader,
    v1::ReportProgressResponse* response) {
  WorkerCaller caller;
  PECO_CHECK_WORKER(context, caller);
  std::vector<v1::ReportProgressRequest> batch;
  v1::ReportProgressRequest report;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    absl::StatusOr<v1::ReportProgressResponse> result = coordinator_->ReportProgress(batch, caller);
    batch.clear();
    if (!result.ok()) return result.status();
    response->set_accepted(response->accepted() + result->accepted());
    response->set_refused(response->refused() + result->refused());
    return absl::OkStatus();
  };
  while (reader->Read(&report)) {
    if (report.has_log_chunk()) {
      // Logs bypass the job state: an ended or stale attempt's last lines are worth keeping.
      if (absl::Status allowed = coordinator_->CheckLogChunk(report.log_chunk(), caller);
          !allowed.ok()) {
        return ToGrpcStatus(allowed);
      }
      absl::Status stored = logs_->Append(report.log_chunk());
      if (!stored.ok()) return ToGrpcStatus(stored);
      response->set_accepted(response->accepted() + 1);
      continue;
    }
    batch.push_back(std::move(report));
    report.Clear();
    if (batch.size() >= kReportBatch) {
      absl::Status flushed = flush();
      if (!flushed.ok()) return ToGrpcStatus(flushed);
    }
  }
  // Acknowledged log lines are on disk (the worker drops what is acknowledged).
  if (absl::Status synced = logs_->Sync(); !synced.ok()) return ToGrpcStatus(synced);
  return ToGrpcStatus(flush());
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(
    grpc::ServerContext* context, grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
    v1::UploadCheckpointResponse* response) {
  WorkerCaller caller;
  PECO_CHECK_WORKER(context, caller);
  v1::UploadCheckpointRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "upload: the first message must be the checkpoint header");
  }
  absl::StatusOr<CheckpointUpload> upload =
      coordinator_->BeginCheckpointUpload(message.header(), caller);
  if (!upload.ok()) return ToGrpcStatus(upload.status());
  while (reader->Read(&message)) {
    if (message.has_chunk()) {
      absl::Status appended = coordinator_->AppendCheckpointChunk(*upload, message.chunk());
      if (!appended.ok()) {
        coordinator_->AbortCheckpointUpload(*upload);
        return ToGrpcStatus(appended);
      }
    } else if (message.has_manifest()) {
      v1::UploadCheckpointRequest extra;
      if (reader->Read(&extra)) {
        coordinator_->AbortCheckpointUpload(*upload);
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "upload: nothing may follow the manifest");
      }
      absl::StatusOr<v1::CheckpointInfo> info =
          coordinator_->CommitCheckpointUpload(*upload, message.manifest());
      if (!info.ok()) return ToGrpcStatus(info.status());
      *response->mutable_checkpoint() = std::move(*info);
      return grpc::Status::OK;
    } else {
      coordinator_->AbortCheckpointUpload(*upload);
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "upload: expected a chunk or the manifest after the header");
    }
  }
  coordinator_->AbortCheckpointUpload(*upload);
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "upload: the stream ended before the manifest; nothing was committed");
}

grpc::Status WorkerServiceImpl::FetchCheckpoint(
    grpc::ServerContext* context, const v1::FetchCheckpointRequest* request,
    grpc::ServerWriter<v1::FetchCheckpointResponse>* writer) {
  WorkerCaller caller;
  PECO_CHECK_WORKER(context, caller);
  return StreamCheckpoint(
      coordinator_,
      coordinator_->OpenCheckpointForWorker(request->checkpoint_id(), request->worker_id(), caller),
      context, writer, /*only=*/nullptr);
}

#undef PECO_CHECK_WORKER

}  // namespace peco::coordinator
