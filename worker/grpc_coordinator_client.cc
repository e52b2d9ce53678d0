#include "worker/grpc_coordinator_client.h"

#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_manifest.h"
#include "common/status_macros.h"
#include "service/checkpoint_transfer.h"

namespace peco::worker {
namespace fs = std::filesystem;

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status GrpcCoordinatorClient::Options::Validate() const {
  auto bad = [](absl::string_view field, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("coordinator client options: ", field, ": ", why));
  };
  if (token.empty()) return bad("token", "must not be empty");
  if (rpc_timeout <= absl::ZeroDuration()) return bad("rpc_timeout", "must be > 0");
  if (transfer_timeout <= absl::ZeroDuration()) return bad("transfer_timeout", "must be > 0");
  if (chunk_bytes < 1 || chunk_bytes > (int64_t{1} << 20)) {
    return bad("chunk_bytes", "must be in [1, 1048576]");
  }
  return absl::OkStatus();
}

GrpcCoordinatorClient::GrpcCoordinatorClient(std::shared_ptr<grpc::ChannelInterface> channel,
                                             Options options)
    : options_(std::move(options)), stub_(v1::WorkerService::NewStub(std::move(channel))) {}

// Registers a call's context for Shutdown() for as long as the call runs.
class GrpcCoordinatorClient::ActiveCall {
 public:
  ActiveCall(GrpcCoordinatorClient* client, grpc::ClientContext* context)
      : client_(client), context_(context) {
    absl::MutexLock lock(&client_->mu_);
    refused_ = client_->shut_down_;
    if (!refused_) client_->active_.insert(context_);
  }
  ~ActiveCall() {
    absl::MutexLock lock(&client_->mu_);
    client_->active_.erase(context_);
  }
  // CANCELLED once the client was shut down.
  absl::Status status() const {
    return refused_ ? absl::CancelledError("coordinator client shut down") : absl::OkStatus();
  }

 private:
  GrpcCoordinatorClient* const client_;
  grpc::ClientContext* const context_;
  bool refused_ = false;
};

void GrpcCoordinatorClient::Shutdown() {
  absl::MutexLock lock(&mu_);
  shut_down_ = true;
  for (grpc::ClientContext* context : active_) context->TryCancel();
}

void GrpcCoordinatorClient::Prepare(grpc::ClientContext& context, absl::Duration timeout) const {
  context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

absl::StatusOr<v1::RegisterResponse> GrpcCoordinatorClient::Register(
    const v1::RegisterRequest& request) {
  grpc::ClientContext context;
  Prepare(context, options_.rpc_timeout);
  ActiveCall active(this, &context);
  RETURN_IF_ERROR(active.status());
  v1::RegisterResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Register(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> GrpcCoordinatorClient::Heartbeat(
    const v1::HeartbeatRequest& request) {
  grpc::ClientContext context;
  Prepare(context, options_.rpc_timeout);
  ActiveCall active(this, &context);
  RETURN_IF_ERROR(active.status());
  v1::HeartbeatResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Heartbeat(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::ReportProgressResponse> GrpcCoordinatorClient::ReportProgress(
    const std::vector<v1::ReportProgressRequest>& reports) {
  grpc::ClientContext context;
  Prepare(context, options_.rpc_timeout);
  ActiveCall active(this, &context);
  RETURN_IF_ERROR(active.status());
  v1::ReportProgressResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::ReportProgressRequest>> writer =
      stub_->ReportProgress(&context, &response);
  for (const v1::ReportProgressRequest& report : reports) {
    if (!writer->Write(report)) break;  // the stream broke: Finish() says why
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response;
}

absl::StatusOr<v1::CheckpointInfo> GrpcCoordinatorClient::UploadCheckpoint(
    const v1::CheckpointHeader& header, const std::string& dir) {
  ASSIGN_OR_RETURN(const Manifest entries, ReadManifest(dir));
  // Refuse a checkpoint that no longer matches its manifest before sending anything.
  for (const ManifestEntry& entry : entries) {
    const std::string path = (fs::path(dir) / entry.name).string();
    std::error_code error;
    const uintmax_t size = fs::file_size(path, error);
    if (error) {
      return absl::NotFoundError(absl::StrCat("checkpoint file ", path, ": ", error.message()));
    }
    if (static_cast<int64_t>(size) != entry.size) {
      return absl::DataLossError(absl::StrCat("checkpoint file ", path, " has ", size,
                                              " bytes, MANIFEST says ", entry.size));
    }
  }

  grpc::ClientContext context;
  Prepare(context, options_.transfer_timeout);
  ActiveCall active(this, &context);
  RETURN_IF_ERROR(active.status());
  v1::UploadCheckpointResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::UploadCheckpointRequest>> writer =
      stub_->UploadCheckpoint(&context, &response);
  v1::UploadCheckpointRequest message;
  *message.mutable_header() = header;
  bool open = writer->Write(message);
  std::string buffer(static_cast<size_t>(options_.chunk_bytes), '\0');
  absl::Status local = absl::OkStatus();
  for (const ManifestEntry& entry : entries) {
    if (!open) break;
    const std::string path = (fs::path(dir) / entry.name).string();
    std::FILE* in = std::fopen(path.c_str(), "rb");
    if (in == nullptr) {
      local = absl::NotFoundError(absl::StrCat("cannot open checkpoint file ", path));
      break;
    }
    int64_t offset = 0;
    do {
      const size_t n = std::fread(buffer.data(), 1, buffer.size(), in);
      if (n == 0 && std::ferror(in)) {
        local = absl::InternalError(absl::StrCat("reading checkpoint file ", path, " failed"));
        break;
      }
      // An empty file is sent as one empty chunk at offset 0, which creates it.
      if (n == 0 && offset > 0) break;
      message.Clear();
      v1::CheckpointChunk* chunk = message.mutable_chunk();
      chunk->set_file_name(entry.name);
      chunk->set_offset(offset);
      chunk->set_data(buffer.data(), n);
      open = writer->Write(message);
      offset += static_cast<int64_t>(n);
    } while (open && offset < entry.size);
    std::fclose(in);
    if (!local.ok()) break;
  }
  if (!local.ok()) {
    context.TryCancel();
    writer->Finish().ok();  // the local error is the one that matters
    return local;
  }
  if (open) {
    message.Clear();
    service::ManifestToProto(entries, message.mutable_manifest()->mutable_entries());
    writer->Write(message);
  }
  writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response.checkpoint();
}

absl::StatusOr<v1::CheckpointInfo> GrpcCoordinatorClient::FetchCheckpoint(
    const std::string& checkpoint_id, const std::string& worker_id, const std::string& dest_dir) {
  std::error_code error;
  if (fs::exists(dest_dir, error)) {
    return absl::AlreadyExistsError(absl::StrCat("checkpoint destination ", dest_dir, " exists"));
  }
  grpc::ClientContext context;
  Prepare(context, options_.transfer_timeout);
  ActiveCall active(this, &context);
  RETURN_IF_ERROR(active.status());
  v1::FetchCheckpointRequest request;
  request.set_checkpoint_id(checkpoint_id);
  request.set_worker_id(worker_id);
  std::unique_ptr<grpc::ClientReader<v1::FetchCheckpointResponse>> reader =
      stub_->FetchCheckpoint(&context, request);
  v1::FetchCheckpointResponse message;
  v1::CheckpointInfo info;
  std::unique_ptr<CheckpointReceiver> download;
  absl::Status local = absl::OkStatus();
  while (local.ok() && reader->Read(&message)) {
    if (message.has_info()) {
      if (download != nullptr) {
        local = absl::DataLossError(
            absl::StrCat("checkpoint ", checkpoint_id, ": a second info message"));
        break;
      }
      info = message.info();
      absl::StatusOr<std::unique_ptr<CheckpointReceiver>> begun =
          service::StartDownload(info, dest_dir);
      if (!begun.ok()) {
        local = begun.status();
        break;
      }
      download = *std::move(begun);
    } else if (message.has_chunk()) {
      if (download == nullptr) {
        local = absl::DataLossError(
            absl::StrCat("checkpoint ", checkpoint_id, ": a chunk before the info message"));
        break;
      }
      local = service::AppendChunk(*download, message.chunk());
    }
  }
  if (!local.ok()) {
    context.TryCancel();
    reader->Finish().ok();  // the local error is the one that matters
    return local;           // `download` removes what it wrote
  }
  RETURN_IF_ERROR(FromGrpcStatus(reader->Finish()));
  if (download == nullptr) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", checkpoint_id, ": the stream carried no info message"));
  }
  RETURN_IF_ERROR(service::FinishDownload(*download, dest_dir));
  return info;
}

}  // namespace peco::worker
