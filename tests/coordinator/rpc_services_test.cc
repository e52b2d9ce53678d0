// The gRPC adapters over a real Coordinator, in process on 127.0.0.1:0: tokens, the upload
// stream's framing (truncated, out of order, wrong digest, oversized), WatchJob's history and
// live end, DownloadCheckpoint.
#include "coordinator/rpc_services.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "coordinator/memory_job_store.h"
#include "tests/test_util/files.h"
#include "tests/test_util/loopback_server.h"

namespace peco::coordinator {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kUserToken[] = "user-token-0123456789abcdef";
constexpr char kWorkerToken[] = "worker-token-0123456789abcdef";

class RpcServicesTest : public ::testing::Test {
 protected:
  RpcServicesTest() {
    store_ = std::make_unique<MemoryJobStore>();
    CheckpointFileStore::Options file_options;
    file_options.data_dir = temp_.path();
    files_ = *CheckpointFileStore::Open(file_options);
    coordinator_ = std::make_unique<Coordinator>(CoordinatorOptions(), store_.get(), files_.get(),
                                                 nullptr, &clock_, &events_, nullptr);
    EXPECT_TRUE(coordinator_->Recover().ok());
    tokens_ = std::make_unique<TokenRegistry>(
        TokenRegistry::Options{kUserToken, kWorkerToken, temp_.path() + "/issued_tokens", &clock_});
    JobLogStoreOptions log_options;
    log_options.dir = temp_.path() + "/logs";
    logs_ = *JobLogStore::Open(log_options);
    job_service_ =
        std::make_unique<JobServiceImpl>(coordinator_.get(), &events_, tokens_.get(), logs_.get());
    worker_service_ =
        std::make_unique<WorkerServiceImpl>(coordinator_.get(), tokens_.get(), logs_.get());
    server_ = std::make_unique<::peco::testing::LoopbackServer>(
        std::vector<grpc::Service*>{job_service_.get(), worker_service_.get()}, 2 << 20);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    auto channel =
        grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    jobs_ = v1::JobService::NewStub(channel);
    workers_ = v1::WorkerService::NewStub(channel);
  }

  ~RpcServicesTest() override {
    events_.Shutdown();
    server_->Shutdown();
  }

  std::unique_ptr<grpc::ClientContext> Context(const char* token) {
    auto context = std::make_unique<grpc::ClientContext>();
    if (token != nullptr) context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return context;
  }

  // A job running on a registered worker, so uploads for its attempt 1 are accepted.
  std::string RunningJob() {
    v1::RegisterRequest reg;
    reg.mutable_worker()->set_id("w1");
    reg.mutable_worker()->mutable_devices()->set_cpu_slots(1);
    reg.mutable_worker()->mutable_ports()->set_first(29500);
    reg.mutable_worker()->mutable_ports()->set_last(29500);
    EXPECT_TRUE(coordinator_->Register(reg).ok());
    v1::SubmitJobRequest submit;
    submit.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
    submit.mutable_spec()->set_config_yaml("kind: tokenizer\n");
    const std::string id = coordinator_->SubmitJob(submit)->job().id();
    v1::HeartbeatRequest beat;
    beat.set_worker_id("w1");
    v1::RunningRanks* running = beat.add_running();
    running->set_job_id(id);
    running->set_attempt(1);
    EXPECT_TRUE(coordinator_->Heartbeat(beat).ok());
    return id;
  }

  // Streams `messages` as one UploadCheckpoint call.
  grpc::Status Upload(const std::vector<v1::UploadCheckpointRequest>& messages,
                      v1::UploadCheckpointResponse* response, const char* token = kWorkerToken) {
    auto context = Context(token);
    auto writer = workers_->UploadCheckpoint(context.get(), response);
    for (const v1::UploadCheckpointRequest& message : messages) {
      if (!writer->Write(message)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  static v1::UploadCheckpointRequest Header(const std::string& job_id, int64_t step) {
    v1::UploadCheckpointRequest message;
    message.mutable_header()->set_job_id(job_id);
    message.mutable_header()->set_attempt(1);
    message.mutable_header()->set_step(step);
    return message;
  }
  static v1::UploadCheckpointRequest Chunk(const std::string& name, const std::string& data) {
    v1::UploadCheckpointRequest message;
    message.mutable_chunk()->set_file_name(name);
    message.mutable_chunk()->set_data(data);
    return message;
  }
  static v1::UploadCheckpointRequest Manifest(const std::string& name, const std::string& data) {
    v1::UploadCheckpointRequest message;
    v1::ManifestEntry* entry = message.mutable_manifest()->add_entries();
    entry->set_name(name);
    entry->set_size(static_cast<int64_t>(data.size()));
    entry->set_sha256(Sha256Hex(data));
    return message;
  }

  std::vector<v1::CheckpointInfo> Checkpoints(const std::string& job_id) {
    v1::ListCheckpointsRequest request;
    request.set_job_id(job_id);
    v1::ListCheckpointsResponse response;
    EXPECT_TRUE(jobs_->ListCheckpoints(Context(kUserToken).get(), request, &response).ok());
    return {response.checkpoints().begin(), response.checkpoints().end()};
  }

  ::peco::testing::ScopedTempDir temp_{"rpc_services_test"};
  FakeClock clock_;
  JobEventHub events_;
  std::unique_ptr<MemoryJobStore> store_;
  std::unique_ptr<CheckpointFileStore> files_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<TokenRegistry> tokens_;
  std::unique_ptr<JobLogStore> logs_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<::peco::testing::LoopbackServer> server_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(RpcServicesTest, EveryCallNeedsTheRightToken) {
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  EXPECT_EQ(jobs_->ListJobs(Context(nullptr).get(), list, &jobs).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(jobs_->ListJobs(Context("not-a-token-0123456789").get(), list, &jobs).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // A worker token is a valid token of the wrong role, and the other way round.
  EXPECT_EQ(jobs_->ListJobs(Context(kWorkerToken).get(), list, &jobs).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), list, &jobs).ok());
  v1::HeartbeatRequest beat;
  v1::HeartbeatResponse reply;
  EXPECT_EQ(workers_->Heartbeat(Context(kUserToken).get(), beat, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::SubmitJobRequest submit;
  v1::SubmitJobResponse submitted;
  EXPECT_EQ(jobs_->SubmitJob(Context(kWorkerToken).get(), submit, &submitted).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(jobs_->ListJobs(Context(kUserToken).get(), list, &jobs).ok(), true);
  EXPECT_THAT(jobs.jobs(), IsEmpty()) << "a worker token submitted a job";
}

TEST_F(RpcServicesTest, IssuedTokensWorkUntilTheyExpireOrAreRevoked) {
  const std::string path = temp_.path() + "/issued_tokens";
  absl::StatusOr<std::string> alice =
      IssueToken(path, "alice", Role::kUser, absl::Hours(1), clock_);
  absl::StatusOr<std::string> bob = IssueToken(path, "bob", Role::kUser, absl::Hours(3), clock_);
  ASSERT_TRUE(alice.ok() && bob.ok());
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  EXPECT_TRUE(jobs_->ListJobs(Context(alice->c_str()).get(), list, &jobs).ok());
  v1::HeartbeatRequest beat;
  v1::HeartbeatResponse reply;
  grpc::Status as_worker = workers_->Heartbeat(Context(alice->c_str()).get(), beat, &reply);
  EXPECT_EQ(as_worker.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(as_worker.error_message(), HasSubstr("token 'alice'"));

  clock_.Advance(absl::Hours(2));
  grpc::Status expired = jobs_->ListJobs(Context(alice->c_str()).get(), list, &jobs);
  EXPECT_EQ(expired.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(expired.error_message(), HasSubstr("token 'alice' expired at"));
  EXPECT_TRUE(jobs_->ListJobs(Context(bob->c_str()).get(), list, &jobs).ok());

  ASSERT_TRUE(RevokeToken(path, "bob").ok());
  EXPECT_EQ(jobs_->ListJobs(Context(bob->c_str()).get(), list, &jobs).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), list, &jobs).ok());
}

// Users see and act on their own jobs; an admin token on every job; every state-changing call
// and every refusal is in the job's audit log, which GetJob returns.
TEST_F(RpcServicesTest, UsersActOnlyOnTheirOwnJobsAndTheAuditLogSaysWhoDidWhat) {
  const std::string path = temp_.path() + "/issued_tokens";
  absl::StatusOr<std::string> alice =
      IssueToken(path, "alice", Role::kUser, absl::Hours(1), clock_);
  absl::StatusOr<std::string> bob = IssueToken(path, "bob", Role::kUser, absl::Hours(1), clock_);
  absl::StatusOr<std::string> carol =
      IssueToken(path, "carol", Role::kAdmin, absl::Hours(1), clock_);
  ASSERT_TRUE(alice.ok() && bob.ok() && carol.ok());
  EXPECT_EQ(IssueToken(path, "admin", Role::kUser, absl::Hours(1), clock_).status().code(),
            absl::StatusCode::kInvalidArgument);

  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  submit.mutable_spec()->set_name("alices-tokenizer");
  submit.mutable_spec()->set_config_yaml("kind: tokenizer\n");
  submit.set_client_request_id("req-1");
  v1::SubmitJobResponse submitted;
  ASSERT_TRUE(jobs_->SubmitJob(Context(alice->c_str()).get(), submit, &submitted).ok());
  const std::string job = submitted.job().id();
  EXPECT_EQ(submitted.job().owner(), "alice");
  // Bob reusing alice's request id gets neither her job nor a duplicate.
  grpc::Status reused = jobs_->SubmitJob(Context(bob->c_str()).get(), submit, &submitted);
  EXPECT_EQ(reused.error_code(), grpc::StatusCode::ALREADY_EXISTS);

  // Bob: not listed, and every call on the job is refused.
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(jobs_->ListJobs(Context(bob->c_str()).get(), list, &listed).ok());
  EXPECT_THAT(listed.jobs(), IsEmpty());
  v1::GetJobRequest get;
  get.set_job_id(job);
  v1::GetJobResponse got;
  EXPECT_EQ(jobs_->GetJob(Context(bob->c_str()).get(), get, &got).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job);
  v1::CancelJobResponse cancelled;
  grpc::Status bob_cancel = jobs_->CancelJob(Context(bob->c_str()).get(), cancel, &cancelled);
  EXPECT_EQ(bob_cancel.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(bob_cancel.error_message(), HasSubstr("belongs to another user"));
  v1::ListCheckpointsRequest checkpoints;
  checkpoints.set_job_id(job);
  v1::ListCheckpointsResponse checkpoint_list;
  EXPECT_EQ(jobs_->ListCheckpoints(Context(bob->c_str()).get(), checkpoints, &checkpoint_list)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  v1::WatchJobRequest watch;
  watch.set_job_id(job);
  {
    auto context = Context(bob->c_str());
    auto reader = jobs_->WatchJob(context.get(), watch);
    v1::WatchJobEvent event;
    EXPECT_FALSE(reader->Read(&event));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  v1::StreamLogsRequest logs;
  logs.set_job_id(job);
  {
    auto context = Context(bob->c_str());
    auto reader = jobs_->StreamLogs(context.get(), logs);
    v1::StreamLogsResponse piece;
    EXPECT_FALSE(reader->Read(&piece));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // A job of bob's may not read alice's job's checkpoints either.
  v1::SubmitJobRequest dependent = submit;
  dependent.set_client_request_id("");
  dependent.mutable_spec()->mutable_depends_on()->set_job_id(job);
  EXPECT_EQ(jobs_->SubmitJob(Context(bob->c_str()).get(), dependent, &submitted).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Alice lists and cancels her job; carol, an admin, sees it and everyone's actions on it.
  ASSERT_TRUE(jobs_->ListJobs(Context(alice->c_str()).get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).owner(), "alice");
  cancel.set_reason("not needed");
  ASSERT_TRUE(jobs_->CancelJob(Context(alice->c_str()).get(), cancel, &cancelled).ok());
  ASSERT_TRUE(jobs_->ListJobs(Context(carol->c_str()).get(), list, &listed).ok());
  EXPECT_EQ(listed.jobs_size(), 1);
  ASSERT_TRUE(jobs_->GetJob(Context(carol->c_str()).get(), get, &got).ok());
  std::vector<std::string> audit;
  for (const v1::AuditEntry& entry : got.audit()) {
    audit.push_back(absl::StrCat(entry.actor(), " ", entry.action(), " ", entry.outcome()));
    EXPECT_EQ(entry.job_id(), job);
  }
  EXPECT_THAT(audit,
              ::testing::ElementsAre(
                  "alice submit OK", "bob get PERMISSION_DENIED", "bob cancel PERMISSION_DENIED",
                  "bob checkpoints PERMISSION_DENIED", "bob watch PERMISSION_DENIED",
                  "bob logs PERMISSION_DENIED", "bob depend PERMISSION_DENIED", "alice cancel OK"));
  EXPECT_EQ(got.audit(7).detail(), "not needed");
  // The primary user token is the admin.
  ASSERT_TRUE(jobs_->GetJob(Context(kUserToken).get(), get, &got).ok());
}

// A user cannot flood the queue: at max_pending_jobs_per_user queued or waiting jobs the next
// submission is refused, a retry of one already stored still gets its job, and an admin is not
// limited.
TEST_F(RpcServicesTest, AUsersQueuedJobsAreBoundedByTheQuota) {
  CoordinatorOptions options;
  options.max_pending_jobs_per_user = 2;
  Coordinator coordinator(options, store_.get(), files_.get(), nullptr, &clock_, &events_, nullptr);
  ASSERT_TRUE(coordinator.Recover().ok());
  const UserCaller alice{"alice", false};
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  submit.mutable_spec()->set_config_yaml("kind: tokenizer\n");
  submit.set_client_request_id("a-1");
  ASSERT_TRUE(coordinator.SubmitJob(submit, alice).ok());  // no worker: the jobs stay queued
  submit.set_client_request_id("a-2");
  ASSERT_TRUE(coordinator.SubmitJob(submit, alice).ok());
  submit.set_client_request_id("a-3");
  absl::StatusOr<v1::SubmitJobResponse> third = coordinator.SubmitJob(submit, alice);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("max_pending_jobs_per_user"));
  submit.set_client_request_id("a-2");
  absl::StatusOr<v1::SubmitJobResponse> retry = coordinator.SubmitJob(submit, alice);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_FALSE(retry->created());
  submit.set_client_request_id("");
  EXPECT_TRUE(coordinator.SubmitJob(submit, UserCaller{}).ok());  // the admin
  EXPECT_TRUE(coordinator.SubmitJob(submit, UserCaller{"bob", false}).ok());
}

TEST_F(RpcServicesTest, CompleteUploadCommitsAndDownloadStreamsItBack) {
  const std::string job = RunningJob();
  const std::string data(3 << 20, 'x');  // several 1 MiB chunks on the way back
  v1::UploadCheckpointResponse response;
  std::vector<v1::UploadCheckpointRequest> messages = {Header(job, 10)};
  for (size_t offset = 0; offset < data.size(); offset += 1 << 20) {
    v1::UploadCheckpointRequest chunk = Chunk("model.pt", data.substr(offset, 1 << 20));
    chunk.mutable_chunk()->set_offset(static_cast<int64_t>(offset));
    messages.push_back(chunk);
  }
  messages.push_back(Manifest("model.pt", data));
  grpc::Status status = Upload(messages, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.checkpoint().id(), absl::StrCat(job, "-a1-step-000000000010"));

  v1::DownloadCheckpointRequest request;
  request.set_checkpoint_id(response.checkpoint().id());
  auto context = Context(kUserToken);
  auto reader = jobs_->DownloadCheckpoint(context.get(), request);
  v1::DownloadCheckpointResponse part;
  ASSERT_TRUE(reader->Read(&part));
  ASSERT_TRUE(part.has_info());
  std::string received;
  int chunks = 0;
  while (reader->Read(&part)) {
    ASSERT_TRUE(part.has_chunk());
    EXPECT_EQ(part.chunk().offset(), static_cast<int64_t>(received.size()));
    received += part.chunk().data();
    ++chunks;
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(received, data);
  EXPECT_EQ(chunks, 3);
}

TEST_F(RpcServicesTest, TruncatedOrMalformedUploadsCommitNothing) {
  const std::string job = RunningJob();
  const std::string data = "weights";
  v1::UploadCheckpointResponse response;

  grpc::Status truncated = Upload({Header(job, 10), Chunk("model.pt", data)}, &response);
  EXPECT_EQ(truncated.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(truncated.error_message(), HasSubstr("before the manifest"));

  grpc::Status no_header = Upload({Chunk("model.pt", data)}, &response);
  EXPECT_EQ(no_header.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(no_header.error_message(), HasSubstr("header"));

  grpc::Status trailing = Upload(
      {Header(job, 20), Chunk("model.pt", data), Manifest("model.pt", data), Chunk("x", "y")},
      &response);
  EXPECT_EQ(trailing.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::UploadCheckpointRequest wrong = Manifest("model.pt", data);
  wrong.mutable_manifest()->mutable_entries(0)->set_sha256(Sha256Hex("other bytes"));
  grpc::Status mismatch = Upload({Header(job, 30), Chunk("model.pt", data), wrong}, &response);
  EXPECT_EQ(mismatch.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(mismatch.error_message(), HasSubstr("model.pt"));

  grpc::Status traversal =
      Upload({Header(job, 40), Chunk("../escape", data), Manifest("../escape", data)}, &response);
  EXPECT_EQ(traversal.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::UploadCheckpointRequest oversized = Chunk("model.pt", std::string(3 << 20, 'z'));
  grpc::Status too_big = Upload({Header(job, 50), oversized}, &response);
  EXPECT_EQ(too_big.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  EXPECT_THAT(Checkpoints(job), IsEmpty());
  EXPECT_THAT(*files_->ListCheckpoints(job), IsEmpty());
}

TEST_F(RpcServicesTest, WatchSendsTheHistoryThenLiveEventsAndEndsAtTheTerminalState) {
  const std::string job = RunningJob();
  std::vector<v1::ReportProgressRequest> reports(1);
  v1::MetricPoint* point = reports[0].mutable_metric_point();
  point->set_job_id(job);
  point->set_attempt(1);
  point->set_step(5);
  (*point->mutable_values())["loss"] = 0.5;
  ASSERT_TRUE(coordinator_->ReportProgress(reports).ok());

  v1::WatchJobRequest request;
  request.set_job_id(job);
  request.set_include_history(true);
  auto context = Context(kUserToken);
  auto reader = jobs_->WatchJob(context.get(), request);
  std::vector<v1::WatchJobEvent> events;
  v1::WatchJobEvent event;
  // History: queued, assigned, the point at step 5, then the current state (running).
  while (events.size() < 4 && reader->Read(&event)) events.push_back(event);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[2].metric_point().step(), 5);
  EXPECT_EQ(events[3].state_change().state(), v1::JOB_STATE_RUNNING);

  // Live: a new point, then the end.
  std::thread finisher([&] {
    point->set_step(6);
    ASSERT_TRUE(coordinator_->ReportProgress(reports).ok());
    v1::HeartbeatRequest beat;
    beat.set_worker_id("w1");
    v1::AttemptResult* result = beat.add_finished();
    result->set_job_id(job);
    result->set_attempt(1);
    result->set_result(v1::AttemptResult::RESULT_SUCCEEDED);
    ASSERT_TRUE(coordinator_->Heartbeat(beat).ok());
  });
  std::vector<v1::WatchJobEvent> live;
  while (reader->Read(&event)) live.push_back(event);
  finisher.join();
  ASSERT_TRUE(reader->Finish().ok());
  ASSERT_GE(live.size(), 2u);
  EXPECT_EQ(live.front().metric_point().step(), 6);
  EXPECT_EQ(live.back().state_change().state(), v1::JOB_STATE_SUCCEEDED);
}

// Reads a StreamLogs call to its end; returns the bytes per "attempt/rank" and the status.
std::pair<std::map<std::string, std::string>, grpc::Status> ReadLogs(
    grpc::ClientReaderInterface<v1::StreamLogsResponse>* reader) {
  std::map<std::string, std::string> logs;
  v1::StreamLogsResponse piece;
  while (reader->Read(&piece)) {
    logs[absl::StrCat(piece.attempt(), "/", piece.rank())] += piece.data();
  }
  return {logs, reader->Finish()};
}

// A rogue worker with a valid worker token of its own (issued, bound to its id) tries to act on
// another worker's attempt through every WorkerService method: each is refused with a clear
// error and nothing changes; the worker that runs the attempt is not hindered.
TEST_F(RpcServicesTest, AWorkerTokenActsOnlyOnItsOwnPlacements) {
  const std::string path = temp_.path() + "/issued_tokens";
  absl::StatusOr<std::string> w1 =
      IssueToken(path, "w1", Role::kWorker, absl::InfiniteDuration(), clock_);
  absl::StatusOr<std::string> w2 =
      IssueToken(path, "w2", Role::kWorker, absl::InfiniteDuration(), clock_);
  ASSERT_TRUE(w1.ok() && w2.ok());
  const std::string job_id = RunningJob();  // attempt 1 runs on w1

  v1::RegisterRequest reg;
  reg.mutable_worker()->mutable_devices()->set_cpu_slots(1);
  reg.mutable_worker()->mutable_ports()->set_first(29600);
  reg.mutable_worker()->mutable_ports()->set_last(29600);
  v1::RegisterResponse registered;
  // Registering as w1 (whose attempts a re-registration without them would mark lost) makes it
  // w2, and w1's attempt runs on.
  reg.mutable_worker()->set_id("w1");
  ASSERT_TRUE(workers_->Register(Context(w2->c_str()).get(), reg, &registered).ok());
  EXPECT_EQ(registered.worker_id(), "w2");
  reg.mutable_worker()->set_id("");
  reg.mutable_worker()->mutable_devices()->set_cpu_slots(1'000'000);
  grpc::Status huge = workers_->Register(Context(w2->c_str()).get(), reg, &registered);
  EXPECT_EQ(huge.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(huge.error_message(), HasSubstr("worker.devices: at most"));
  reg.mutable_worker()->mutable_devices()->set_cpu_slots(1);
  ASSERT_TRUE(workers_->Register(Context(w2->c_str()).get(), reg, &registered).ok());
  EXPECT_EQ(registered.worker_id(), "w2");  // the token names the worker

  // Heartbeating as w1, or reporting a fatal result of w1's attempt as itself.
  v1::HeartbeatRequest beat;
  v1::HeartbeatResponse reply;
  beat.set_worker_id("w1");
  EXPECT_EQ(workers_->Heartbeat(Context(w2->c_str()).get(), beat, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  beat.set_worker_id("w2");
  v1::AttemptResult* fatal = beat.add_finished();
  fatal->set_job_id(job_id);
  fatal->set_attempt(1);
  fatal->set_result(v1::AttemptResult::RESULT_FAILED);
  fatal->set_retryable(false);
  fatal->set_reason("planted");
  ASSERT_TRUE(workers_->Heartbeat(Context(w2->c_str()).get(), beat, &reply).ok());
  v1::GetJobRequest get;
  get.set_job_id(job_id);
  EXPECT_EQ(coordinator_->GetJob(get)->job().state(), v1::JOB_STATE_RUNNING);  // not FAILED

  // Metric points and log lines of w1's ranks.
  auto report = [&](const std::string& token, bool log) {
    auto context = Context(token.c_str());
    v1::ReportProgressResponse response;
    auto writer = workers_->ReportProgress(context.get(), &response);
    v1::ReportProgressRequest message;
    if (log) {
      message.mutable_log_chunk()->set_job_id(job_id);
      message.mutable_log_chunk()->set_attempt(1);
      message.mutable_log_chunk()->set_data("planted line\n");
    } else {
      message.mutable_metric_point()->set_job_id(job_id);
      message.mutable_metric_point()->set_attempt(1);
      message.mutable_metric_point()->set_step(5);
      (*message.mutable_metric_point()->mutable_values())["loss"] = 0.1;
    }
    writer->Write(message);
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    return std::make_pair(status, response);
  };
  auto [points_status, points] = report(*w2, /*log=*/false);
  ASSERT_TRUE(points_status.ok());
  EXPECT_EQ(points.accepted(), 0);
  EXPECT_EQ(points.refused(), 1);
  grpc::Status log = report(*w2, /*log=*/true).first;
  EXPECT_EQ(log.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(log.error_message(), HasSubstr("worker w2 may not send the log of rank 0"));

  // Uploading a "final" checkpoint for w1's attempt, or fetching w1's.
  const std::string data = "weights";
  v1::UploadCheckpointRequest header = Header(job_id, 10);
  header.mutable_header()->set_final(true);
  v1::UploadCheckpointResponse uploaded;
  grpc::Status planted =
      Upload({header, Chunk("model.pt", data), Manifest("model.pt", data)}, &uploaded, w2->c_str());
  EXPECT_EQ(planted.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(planted.error_message(), HasSubstr("its rank 0 runs elsewhere"));
  EXPECT_TRUE(Checkpoints(job_id).empty());

  // w1, with its own token, is not hindered: its point, its log and its upload are taken.
  auto [own_status, own] = report(*w1, /*log=*/false);
  ASSERT_TRUE(own_status.ok());
  EXPECT_EQ(own.accepted(), 1);
  EXPECT_TRUE(report(*w1, /*log=*/true).first.ok());
  ASSERT_TRUE(
      Upload({header, Chunk("model.pt", data), Manifest("model.pt", data)}, &uploaded, w1->c_str())
          .ok());
  ASSERT_EQ(Checkpoints(job_id).size(), 1u);
  const std::string checkpoint_id = Checkpoints(job_id)[0].id();
  for (const std::string& as : {std::string("w1"), std::string("w2")}) {
    v1::FetchCheckpointRequest fetch;
    fetch.set_checkpoint_id(checkpoint_id);
    fetch.set_worker_id(as);
    auto context = Context(w2->c_str());
    auto reader = workers_->FetchCheckpoint(context.get(), fetch);
    v1::FetchCheckpointResponse part;
    EXPECT_FALSE(reader->Read(&part)) << as;
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED) << as;
  }
  // A checkpoint header of another rank, or of a step before the resume point, is refused too.
  header.mutable_header()->set_rank(1);
  EXPECT_EQ(Upload({header}, &uploaded, w1->c_str()).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(RpcServicesTest, LogChunksFromWorkersStreamToUsersAndFollowEndsWithTheJob) {
  const std::string job_id = RunningJob();
  auto report = [&](int32_t rank, int64_t offset, const std::string& data) {
    auto context = Context(kWorkerToken);
    v1::ReportProgressResponse response;
    auto writer = workers_->ReportProgress(context.get(), &response);
    v1::ReportProgressRequest message;
    v1::LogChunk* chunk = message.mutable_log_chunk();
    chunk->set_job_id(job_id);
    chunk->set_attempt(1);
    chunk->set_rank(rank);
    chunk->set_offset(offset);
    chunk->set_data(data);
    writer->Write(message);
    writer->WritesDone();
    return writer->Finish();
  };
  ASSERT_TRUE(report(0, 0, "step 1\n").ok());
  ASSERT_TRUE(report(1, 0, "rank one\n").ok());
  ASSERT_TRUE(report(0, 0, "step 1\n").ok());  // a resend after a lost acknowledgement
  ASSERT_TRUE(report(0, 7, "step 2\n").ok());

  v1::StreamLogsRequest request;
  request.set_job_id(job_id);
  {
    auto context = Context(kUserToken);
    auto [logs, status] = ReadLogs(jobs_->StreamLogs(context.get(), request).get());
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(logs["1/0"], "step 1\nstep 2\n");
    EXPECT_EQ(logs["1/1"], "rank one\n");
  }
  request.add_ranks(1);
  {
    auto context = Context(kUserToken);
    auto [logs, status] = ReadLogs(jobs_->StreamLogs(context.get(), request).get());
    ASSERT_TRUE(status.ok());
    EXPECT_EQ(logs.size(), 1u);
    EXPECT_EQ(logs["1/1"], "rank one\n");
  }
  {
    auto context = Context(kWorkerToken);  // users' logs need a user token
    auto [logs, status] = ReadLogs(jobs_->StreamLogs(context.get(), request).get());
    EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }

  // Follow: what is stored, new lines, and the end when the job finishes.
  request.clear_ranks();
  request.set_follow(true);
  auto context = Context(kUserToken);
  auto reader = jobs_->StreamLogs(context.get(), request);
  v1::StreamLogsResponse piece;
  std::string rank0;
  while (rank0 != "step 1\nstep 2\n" && reader->Read(&piece)) {
    if (piece.rank() == 0) rank0 += piece.data();
  }
  ASSERT_TRUE(report(0, 14, "completed\n").ok());
  while (rank0 != "step 1\nstep 2\ncompleted\n" && reader->Read(&piece)) {
    if (piece.rank() == 0) rank0 += piece.data();
  }
  EXPECT_EQ(rank0, "step 1\nstep 2\ncompleted\n");
  v1::HeartbeatRequest beat;
  beat.set_worker_id("w1");
  v1::AttemptResult* result = beat.add_finished();
  result->set_job_id(job_id);
  result->set_attempt(1);
  result->set_result(v1::AttemptResult::RESULT_SUCCEEDED);
  ASSERT_TRUE(coordinator_->Heartbeat(beat).ok());
  while (reader->Read(&piece)) ADD_FAILURE() << "nothing more was logged";
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(RpcServicesTest, OversizedSubmitIsRefusedAndNothingIsStored) {
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  submit.mutable_spec()->set_config_yaml(std::string(3 << 20, '#'));
  v1::SubmitJobResponse response;
  EXPECT_EQ(jobs_->SubmitJob(Context(kUserToken).get(), submit, &response).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  submit.mutable_spec()->set_config_yaml(std::string((1 << 20) + 10, '#'));
  grpc::Status status = jobs_->SubmitJob(Context(kUserToken).get(), submit, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("spec.config_yaml"));
  v1::ListJobsRequest list;
  v1::ListJobsResponse jobs;
  ASSERT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), list, &jobs).ok());
  EXPECT_EQ(jobs.jobs_size(), 0);
}

// Malformed, unknown, out-of-place and out-of-order requests to every method: each gets a
// canonical error code, the server keeps serving, and nothing stored changes.
TEST_F(RpcServicesTest, MalformedCallsToEveryMethodGetCanonicalCodesAndChangeNothing) {
  const std::string job_id = RunningJob();
  auto snapshot = [&] {
    v1::ListJobsResponse jobs;
    EXPECT_TRUE(jobs_->ListJobs(Context(kUserToken).get(), v1::ListJobsRequest(), &jobs).ok());
    v1::ListWorkersResponse workers;
    EXPECT_TRUE(
        jobs_->ListWorkers(Context(kUserToken).get(), v1::ListWorkersRequest(), &workers).ok());
    for (v1::WorkerInfo& worker : *workers.mutable_workers()) worker.clear_last_heartbeat_us();
    return jobs.SerializeAsString() + "|" + workers.SerializeAsString();
  };
  const std::string before = snapshot();

  using Code = grpc::StatusCode;
  struct Case {
    std::string what;
    std::function<grpc::Status()> call;
    Code want;
  };
  auto user = [&] { return Context(kUserToken); };
  auto worker = [&] { return Context(kWorkerToken); };
  std::vector<Case> cases;
  auto submit = [&](std::function<void(v1::JobSpec*)> edit) {
    return [&, edit] {
      v1::SubmitJobRequest request;
      request.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
      request.mutable_spec()->set_config_yaml("kind: tokenizer\n");
      edit(request.mutable_spec());
      v1::SubmitJobResponse response;
      return jobs_->SubmitJob(user().get(), request, &response);
    };
  };
  cases.push_back({"SubmitJob without a kind",
                   submit([](v1::JobSpec* spec) { spec->clear_kind(); }), Code::INVALID_ARGUMENT});
  cases.push_back({"SubmitJob with world_size -1",
                   submit([](v1::JobSpec* spec) { spec->set_world_size(-1); }),
                   Code::INVALID_ARGUMENT});
  cases.push_back({"SubmitJob with max_restarts -1",
                   submit([](v1::JobSpec* spec) { spec->set_max_restarts(-1); }),
                   Code::INVALID_ARGUMENT});
  cases.push_back({"SubmitJob depending on an unknown job", submit([](v1::JobSpec* spec) {
                     spec->mutable_depends_on()->set_job_id("job-999999");
                   }),
                   Code::NOT_FOUND});
  auto get = [&](const std::string& id) {
    return [&, id] {
      v1::GetJobRequest request;
      request.set_job_id(id);
      v1::GetJobResponse response;
      return jobs_->GetJob(user().get(), request, &response);
    };
  };
  cases.push_back({"GetJob of an unknown job", get("job-999999"), Code::NOT_FOUND});
  cases.push_back({"GetJob of a path", get("../../etc/passwd"), Code::NOT_FOUND});
  cases.push_back({"CancelJob of an unknown job",
                   [&] {
                     v1::CancelJobRequest request;
                     request.set_job_id("job-999999");
                     v1::CancelJobResponse response;
                     return jobs_->CancelJob(user().get(), request, &response);
                   },
                   Code::NOT_FOUND});
  cases.push_back({"ResumeJob of a running job",
                   [&] {
                     v1::ResumeJobRequest request;
                     request.set_job_id(job_id);
                     v1::ResumeJobResponse response;
                     return jobs_->ResumeJob(user().get(), request, &response);
                   },
                   Code::FAILED_PRECONDITION});
  cases.push_back({"ListJobs with a forged page token",
                   [&] {
                     v1::ListJobsRequest request;
                     request.set_page_token("not-a-token");
                     v1::ListJobsResponse response;
                     return jobs_->ListJobs(user().get(), request, &response);
                   },
                   Code::INVALID_ARGUMENT});
  cases.push_back({"WatchJob of an unknown job",
                   [&] {
                     v1::WatchJobRequest request;
                     request.set_job_id("job-999999");
                     auto context = user();
                     auto reader = jobs_->WatchJob(context.get(), request);
                     v1::WatchJobEvent event;
                     while (reader->Read(&event)) {
                     }
                     return reader->Finish();
                   },
                   Code::NOT_FOUND});
  cases.push_back({"ListCheckpoints of an unknown job",
                   [&] {
                     v1::ListCheckpointsRequest request;
                     request.set_job_id("job-999999");
                     v1::ListCheckpointsResponse response;
                     return jobs_->ListCheckpoints(user().get(), request, &response);
                   },
                   Code::NOT_FOUND});
  cases.push_back({"DownloadCheckpoint of a path",
                   [&] {
                     v1::DownloadCheckpointRequest request;
                     request.set_checkpoint_id("../state.db");
                     auto context = user();
                     auto reader = jobs_->DownloadCheckpoint(context.get(), request);
                     v1::DownloadCheckpointResponse chunk;
                     while (reader->Read(&chunk)) {
                     }
                     return reader->Finish();
                   },
                   Code::NOT_FOUND});
  cases.push_back({"Register with no devices",
                   [&] {
                     v1::RegisterRequest request;
                     request.mutable_worker()->mutable_ports()->set_first(29500);
                     request.mutable_worker()->mutable_ports()->set_last(29500);
                     v1::RegisterResponse response;
                     return workers_->Register(worker().get(), request, &response);
                   },
                   Code::INVALID_ARGUMENT});
  cases.push_back({"Register with a 200-character id",
                   [&] {
                     v1::RegisterRequest request;
                     request.mutable_worker()->set_id(std::string(200, 'w'));
                     request.mutable_worker()->mutable_devices()->set_cpu_slots(1);
                     request.mutable_worker()->mutable_ports()->set_first(29500);
                     request.mutable_worker()->mutable_ports()->set_last(29500);
                     v1::RegisterResponse response;
                     return workers_->Register(worker().get(), request, &response);
                   },
                   Code::INVALID_ARGUMENT});
  cases.push_back({"Heartbeat of an unknown worker",
                   [&] {
                     v1::HeartbeatRequest request;
                     request.set_worker_id("w-unknown");
                     v1::HeartbeatResponse response;
                     return workers_->Heartbeat(worker().get(), request, &response);
                   },
                   Code::NOT_FOUND});
  cases.push_back({"UploadCheckpoint for an unknown job",
                   [&] {
                     v1::UploadCheckpointResponse response;
                     return Upload({Header("job-999999", 1), Chunk("model.pt", "x")}, &response);
                   },
                   Code::NOT_FOUND});
  cases.push_back({"UploadCheckpoint starting with a chunk",
                   [&] {
                     v1::UploadCheckpointResponse response;
                     return Upload({Chunk("model.pt", "x")}, &response);
                   },
                   Code::INVALID_ARGUMENT});
  cases.push_back({"FetchCheckpoint of an unknown checkpoint",
                   [&] {
                     v1::FetchCheckpointRequest request;
                     request.set_checkpoint_id("job-999999-a1-step-000000000001");
                     request.set_worker_id("w1");
                     auto context = worker();
                     auto reader = workers_->FetchCheckpoint(context.get(), request);
                     v1::FetchCheckpointResponse chunk;
                     while (reader->Read(&chunk)) {
                     }
                     return reader->Finish();
                   },
                   Code::NOT_FOUND});
  cases.push_back({"StreamLogs of an unknown job",
                   [&] {
                     v1::StreamLogsRequest request;
                     request.set_job_id("job-999999");
                     auto context = user();
                     auto reader = jobs_->StreamLogs(context.get(), request);
                     v1::StreamLogsResponse piece;
                     while (reader->Read(&piece)) {
                     }
                     return reader->Finish();
                   },
                   Code::NOT_FOUND});
  cases.push_back(
      {"DownloadCheckpoint of a file the checkpoint lacks",
       [&] {
         v1::UploadCheckpointResponse uploaded;
         EXPECT_TRUE(Upload({Header(job_id, 5), Chunk("model.pt", "w"), Manifest("model.pt", "w")},
                            &uploaded)
                         .ok());
         v1::DownloadCheckpointRequest request;
         request.set_checkpoint_id(uploaded.checkpoint().id());
         request.add_files("preview.png");
         auto context = user();
         auto reader = jobs_->DownloadCheckpoint(context.get(), request);
         v1::DownloadCheckpointResponse chunk;
         while (reader->Read(&chunk)) {
         }
         return reader->Finish();
       },
       Code::NOT_FOUND});
  cases.push_back({"ReportProgress with a log chunk of attempt 0",
                   [&] {
                     auto context = worker();
                     v1::ReportProgressResponse response;
                     auto writer = workers_->ReportProgress(context.get(), &response);
                     v1::ReportProgressRequest report;
                     report.mutable_log_chunk()->set_job_id(job_id);
                     report.mutable_log_chunk()->set_data("x\n");
                     writer->Write(report);
                     writer->WritesDone();
                     return writer->Finish();
                   },
                   Code::INVALID_ARGUMENT});

  for (const Case& c : cases) {
    const grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), c.want)
        << c.what << ": got code " << status.error_code() << " (" << status.error_message() << ")";
    EXPECT_FALSE(status.error_message().empty()) << c.what << ": the error says why";
  }
  EXPECT_EQ(snapshot(), before) << "a refused call changed the stored state";
}

}  // namespace
}  // namespace peco::coordinator
