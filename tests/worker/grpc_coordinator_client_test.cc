// GrpcCoordinatorClient against an in-process WorkerService on 127.0.0.1:0: token metadata,
// deadlines, status mapping, upload chunking and order, fetch verification.
#include "worker/grpc_coordinator_client.h"

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/checkpoint_manifest.h"
#include "common/checkpoint_receiver.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/test_util/files.h"
#include "tests/test_util/loopback_server.h"

namespace peco::worker {
namespace {
namespace fs = std::filesystem;

using ::peco::testing::LoopbackServer;
using ::peco::testing::ReadFileForTest;
using ::peco::testing::ScopedTempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kToken[] = "s3cret-worker-token";
constexpr int64_t kMiB = 1 << 20;

v1::ManifestEntry Entry(const std::string& name, const std::string& content) {
  v1::ManifestEntry entry;
  entry.set_name(name);
  entry.set_size(static_cast<int64_t>(content.size()));
  entry.set_sha256(Sha256Hex(content));
  return entry;
}

// A WorkerService that checks the token, records what it receives and serves one checkpoint.
class FakeWorkerService : public v1::WorkerService::Service {
 public:
  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterRequest* request,
                        v1::RegisterResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    if (request->worker().id() == "unknown") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "worker unknown is not registered");
    }
    response->set_worker_id("worker-9");
    response->set_heartbeat_interval_ms(2500);
    return grpc::Status::OK;
  }

  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    *response->add_assignments()->mutable_job_id() = "job-" + request->worker_id();
    return grpc::Status::OK;
  }

  grpc::Status ReportProgress(grpc::ServerContext* context,
                              grpc::ServerReader<v1::ReportProgressRequest>* reader,
                              v1::ReportProgressResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    v1::ReportProgressRequest report;
    while (reader->Read(&report)) {
      if (report.metric_point().attempt() == 1) {
        response->set_refused(response->refused() + 1);
      } else {
        response->set_accepted(response->accepted() + 1);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status UploadCheckpoint(grpc::ServerContext* context,
                                grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
                                v1::UploadCheckpointResponse* response) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    v1::UploadCheckpointRequest message;
    absl::MutexLock lock(&mu_);
    upload_messages.clear();
    while (reader->Read(&message)) upload_messages.push_back(message);
    if (upload_messages.empty() || !upload_messages.front().has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "header first");
    }
    if (upload_messages.front().header().attempt() == 1) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "attempt 1 is stale");
    }
    response->mutable_checkpoint()->set_id("job-1-a2-step-000000000010");
    return grpc::Status::OK;
  }

  grpc::Status FetchCheckpoint(grpc::ServerContext* context,
                               const v1::FetchCheckpointRequest* request,
                               grpc::ServerWriter<v1::FetchCheckpointResponse>* writer) override {
    if (grpc::Status auth = Authorize(context); !auth.ok()) return auth;
    absl::MutexLock lock(&mu_);
    fetch_worker_id = request->worker_id();
    if (request->checkpoint_id() != "ckpt-1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no checkpoint " + request->checkpoint_id());
    }
    v1::FetchCheckpointResponse message;
    v1::CheckpointInfo* info = message.mutable_info();
    info->set_id("ckpt-1");
    info->set_step(10);
    for (const auto& [name, content] : files) *info->add_manifest() = Entry(name, content);
    writer->Write(message);
    for (const auto& [name, original] : files) {
      std::string content = original;
      if (name == corrupt_file) content[content.size() / 2] ^= 0x01;
      for (size_t offset = 0; offset < content.size(); offset += 300) {
        message.Clear();
        message.mutable_chunk()->set_file_name(name);
        message.mutable_chunk()->set_offset(static_cast<int64_t>(offset));
        message.mutable_chunk()->set_data(content.substr(offset, 300));
        writer->Write(message);
      }
    }
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  std::vector<v1::UploadCheckpointRequest> upload_messages;
  std::map<std::string, std::string> files;  // the checkpoint FetchCheckpoint serves
  std::string corrupt_file;                  // one of `files` whose bytes are damaged in transit
  std::string fetch_worker_id;
  std::vector<std::string> authorizations;
  std::vector<std::chrono::system_clock::time_point> deadlines;

 private:
  grpc::Status Authorize(grpc::ServerContext* context) {
    absl::MutexLock lock(&mu_);
    deadlines.push_back(context->deadline());
    auto it = context->client_metadata().find("authorization");
    const std::string value = it == context->client_metadata().end()
                                  ? ""
                                  : std::string(it->second.data(), it->second.size());
    authorizations.push_back(value);
    if (value != absl::StrCat("Bearer ", kToken)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong worker token");
    }
    return grpc::Status::OK;
  }
};

class GrpcCoordinatorClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<LoopbackServer>(std::vector<grpc::Service*>{&service_});
    address_ = server_->address();
    dir_ = temp_.path();
  }
  void TearDown() override { server_->Shutdown(); }

  std::unique_ptr<GrpcCoordinatorClient> Client(std::string token = kToken) {
    GrpcCoordinatorClient::Options options;
    options.token = std::move(token);
    options.rpc_timeout = absl::Seconds(7);
    options.transfer_timeout = absl::Minutes(3);
    EXPECT_TRUE(options.Validate().ok());
    return std::make_unique<GrpcCoordinatorClient>(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()), options);
  }

  // Writes a checkpoint directory with a MANIFEST, like the trainer.
  std::string WriteCheckpoint(const std::map<std::string, std::string>& files) {
    const std::string ck = dir_ + "/step-000000000010";
    fs::create_directories(ck);
    Manifest entries;
    for (const auto& [name, content] : files) {
      std::ofstream(fs::path(ck) / name, std::ios::binary) << content;
      entries.push_back({name, static_cast<int64_t>(content.size()), Sha256Hex(content)});
    }
    std::ofstream(fs::path(ck) / kManifestFileName) << FormatManifest(entries);
    return ck;
  }

  FakeWorkerService service_;
  std::unique_ptr<LoopbackServer> server_;
  std::string address_;
  ScopedTempDir temp_{"grpc_client"};
  std::string dir_;
};

TEST_F(GrpcCoordinatorClientTest, SendsTheBearerTokenAndADeadline) {
  auto client = Client();
  v1::RegisterRequest request;
  const auto before = std::chrono::system_clock::now();
  absl::StatusOr<v1::RegisterResponse> response = client->Register(request);
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->worker_id(), "worker-9");
  EXPECT_EQ(response->heartbeat_interval_ms(), 2500);
  absl::MutexLock lock(&service_.mu_);
  EXPECT_THAT(service_.authorizations, ElementsAre(absl::StrCat("Bearer ", kToken)));
  ASSERT_EQ(service_.deadlines.size(), 1u);
  // rpc_timeout is 7 s: the server sees a deadline about that far ahead (not none).
  EXPECT_GT(service_.deadlines[0], before + std::chrono::seconds(6));
  EXPECT_LE(service_.deadlines[0], before + std::chrono::seconds(8));
}

TEST_F(GrpcCoordinatorClientTest, MapsStatusCodesAndKeepsTheMessage) {
  absl::StatusOr<v1::RegisterResponse> wrong_token = Client("not-the-token")->Register({});
  EXPECT_EQ(wrong_token.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(wrong_token.status().message(), "missing or wrong worker token");

  v1::RegisterRequest unknown;
  unknown.mutable_worker()->set_id("unknown");
  absl::StatusOr<v1::RegisterResponse> not_found = Client()->Register(unknown);
  EXPECT_EQ(not_found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(not_found.status().message(), "worker unknown is not registered");

  server_->Shutdown();
  absl::StatusOr<v1::HeartbeatResponse> down = Client()->Heartbeat({});
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);

  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::DATA_LOSS, "bad bytes")),
            absl::DataLossError("bad bytes"));
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST_F(GrpcCoordinatorClientTest, HeartbeatAndReportProgressRoundTrip) {
  auto client = Client();
  v1::HeartbeatRequest heartbeat;
  heartbeat.set_worker_id("w7");
  absl::StatusOr<v1::HeartbeatResponse> response = client->Heartbeat(heartbeat);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->assignments_size(), 1);
  EXPECT_EQ(response->assignments(0).job_id(), "job-w7");

  std::vector<v1::ReportProgressRequest> reports(5);
  for (int i = 0; i < 5; ++i) reports[i].mutable_metric_point()->set_attempt(i < 2 ? 1 : 2);
  absl::StatusOr<v1::ReportProgressResponse> progress = client->ReportProgress(reports);
  ASSERT_TRUE(progress.ok()) << progress.status();
  EXPECT_EQ(progress->accepted(), 3);
  EXPECT_EQ(progress->refused(), 2);
}

TEST_F(GrpcCoordinatorClientTest, UploadStreamsHeaderChunksInNameOrderThenTheManifest) {
  std::string big(2 * kMiB + 12345, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 1000);
  const std::map<std::string, std::string> files = {
      {"optimizer.pt", big}, {"a_empty.bin", ""}, {"config.yaml", "kind: tokenizer\n"}};
  const std::string ck = WriteCheckpoint(files);
  v1::CheckpointHeader header;
  header.set_job_id("job-1");
  header.set_attempt(2);
  header.set_step(10);
  header.set_final(true);
  absl::StatusOr<v1::CheckpointInfo> info = Client()->UploadCheckpoint(header, ck);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->id(), "job-1-a2-step-000000000010");

  absl::MutexLock lock(&service_.mu_);
  const auto& messages = service_.upload_messages;
  ASSERT_GE(messages.size(), 3u);
  ASSERT_TRUE(messages.front().has_header());
  EXPECT_EQ(messages.front().header().step(), 10);
  EXPECT_TRUE(messages.front().header().final());
  ASSERT_TRUE(messages.back().has_manifest());
  std::vector<std::string> order;
  std::map<std::string, std::string> received;
  for (size_t i = 1; i + 1 < messages.size(); ++i) {
    ASSERT_TRUE(messages[i].has_chunk()) << i;
    const v1::CheckpointChunk& chunk = messages[i].chunk();
    EXPECT_LE(static_cast<int64_t>(chunk.data().size()), kMiB);
    EXPECT_EQ(chunk.offset(), static_cast<int64_t>(received[chunk.file_name()].size()));
    if (order.empty() || order.back() != chunk.file_name()) order.push_back(chunk.file_name());
    received[chunk.file_name()] += chunk.data();
  }
  EXPECT_THAT(order, ElementsAre("a_empty.bin", "config.yaml", "optimizer.pt"));
  EXPECT_EQ(received, files);
  const v1::CheckpointManifest& manifest = messages.back().manifest();
  ASSERT_EQ(manifest.entries_size(), 3);
  EXPECT_EQ(manifest.entries(2).name(), "optimizer.pt");
  EXPECT_EQ(manifest.entries(2).size(), static_cast<int64_t>(big.size()));
  EXPECT_EQ(manifest.entries(2).sha256(), Sha256Hex(big));
  EXPECT_EQ(messages.size(), 1u + 1u + 1u + 3u + 1u);  // header, 1+1+3 chunks, manifest
}

TEST_F(GrpcCoordinatorClientTest, UploadRefusesACheckpointThatDoesNotMatchItsManifest) {
  const std::string ck = WriteCheckpoint({{"model.pt", "weights"}});
  std::ofstream(fs::path(ck) / "model.pt", std::ios::app) << "extra";
  absl::StatusOr<v1::CheckpointInfo> info = Client()->UploadCheckpoint({}, ck);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("model.pt"));
  absl::MutexLock lock(&service_.mu_);
  EXPECT_TRUE(service_.authorizations.empty());  // nothing was sent
}

TEST_F(GrpcCoordinatorClientTest, UploadOfAStaleAttemptIsFailedPrecondition) {
  const std::string ck = WriteCheckpoint({{"model.pt", "weights"}});
  v1::CheckpointHeader header;
  header.set_attempt(1);
  EXPECT_EQ(Client()->UploadCheckpoint(header, ck).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(GrpcCoordinatorClientTest, FetchVerifiesAndWritesTheManifest) {
  {
    absl::MutexLock lock(&service_.mu_);
    service_.files = {{"model.pt", std::string(1000, 'm')}, {"rng.pt", "rng"}, {"zero", ""}};
  }
  const std::string dest = dir_ + "/attempt-2/resume";
  absl::StatusOr<v1::CheckpointInfo> info = Client()->FetchCheckpoint("ckpt-1", "worker-3", dest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->step(), 10);
  EXPECT_EQ(ReadFileForTest(fs::path(dest) / "model.pt"), std::string(1000, 'm'));
  EXPECT_EQ(ReadFileForTest(fs::path(dest) / "rng.pt"), "rng");
  EXPECT_TRUE(fs::exists(fs::path(dest) / "zero"));
  EXPECT_EQ(ReadFileForTest(fs::path(dest) / "MANIFEST"),
            absl::StrCat(Sha256Hex(std::string(1000, 'm')), " 1000 model.pt\n", Sha256Hex("rng"),
                         " 3 rng.pt\n", Sha256Hex(""), " 0 zero\n"));
  EXPECT_TRUE(ReadManifest(dest).ok());
  EXPECT_FALSE(fs::exists(StagingDirFor(dest)));
  absl::MutexLock lock(&service_.mu_);
  EXPECT_EQ(service_.fetch_worker_id, "worker-3");
}

TEST_F(GrpcCoordinatorClientTest, FetchRefusesACorruptedChunkAndLeavesNothing) {
  {
    absl::MutexLock lock(&service_.mu_);
    service_.files = {{"model.pt", std::string(1000, 'm')}, {"rng.pt", "rng"}};
    service_.corrupt_file = "model.pt";
  }
  const std::string dest = dir_ + "/resume";
  absl::StatusOr<v1::CheckpointInfo> info = Client()->FetchCheckpoint("ckpt-1", "w", dest);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(info.status().message(), HasSubstr("model.pt"));
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_FALSE(fs::exists(StagingDirFor(dest)));
}

TEST_F(GrpcCoordinatorClientTest, FetchErrorsLeaveNothingAndKeepTheirCode) {
  const std::string dest = dir_ + "/resume";
  EXPECT_EQ(Client()->FetchCheckpoint("nope", "w", dest).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(dest));
  fs::create_directories(dest);
  EXPECT_EQ(Client()->FetchCheckpoint("ckpt-1", "w", dest).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(GrpcCoordinatorClientTest, ShutdownFailsLaterCallsFast) {
  auto client = Client();
  client->Shutdown();
  EXPECT_EQ(client->Heartbeat({}).status().code(), absl::StatusCode::kCancelled);
}

TEST(GrpcCoordinatorClientOptionsTest, ValidateNamesTheBadField) {
  GrpcCoordinatorClient::Options options;
  EXPECT_THAT(options.Validate().message(), HasSubstr("token"));
  options.token = "t";
  EXPECT_TRUE(options.Validate().ok());
  options.chunk_bytes = 2 * kMiB;
  EXPECT_THAT(options.Validate().message(), HasSubstr("chunk_bytes"));
}

}  // namespace
}  // namespace peco::worker
