// The `peco` commands end to end against an in-process fake JobService on 127.0.0.1:0 that
// checks the bearer token and records every request.
#include "cli/commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cli/format.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "peco/v1/job_service.grpc.pb.h"
#include "tests/test_util/files.h"
#include "tests/test_util/loopback_server.h"

namespace peco::cli {
namespace {

namespace fs = std::filesystem;

// Reads the CLI's JSON output into `message`: the proto fields, with the timestamps the CLI
// prints as RFC 3339 (`submit_time` for submit_time_us, cli/json_tree.h) left out.
google::protobuf::util::Status ParseCliJson(const std::string& json,
                                            google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(json, message, options);
}
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kToken[] = "secret-token";

v1::Job MakeJob(int n, v1::JobState state = v1::JOB_STATE_QUEUED) {
  v1::Job job;
  job.set_id(absl::StrFormat("job-%06d", n));
  job.mutable_spec()->set_name(absl::StrCat("name-", n));
  job.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  job.set_state(state);
  return job;
}

v1::WatchJobEvent StateEvent(v1::JobState state, int64_t attempt, int64_t time_s,
                             const std::string& reason = "") {
  v1::WatchJobEvent event;
  event.mutable_state_change()->set_job_id("job-000001");
  event.mutable_state_change()->set_attempt(attempt);
  event.mutable_state_change()->set_state(state);
  event.mutable_state_change()->set_reason(reason);
  event.mutable_state_change()->set_time_us(time_s * 1000000);
  return event;
}

v1::WatchJobEvent PointEvent(int64_t step, int64_t time_s) {
  v1::WatchJobEvent event;
  v1::MetricPoint* point = event.mutable_metric_point();
  point->set_job_id("job-000001");
  point->set_attempt(1);
  point->set_step(step);
  point->set_time_us(time_s * 1000000);
  (*point->mutable_values())["loss"] = 1.0 / static_cast<double>(step);
  return event;
}

// A scripted WatchJob stream: these events, then this status.
struct WatchScript {
  std::vector<v1::WatchJobEvent> events;
  grpc::Status status = grpc::Status::OK;
};

class FakeJobService final : public v1::JobService::Service {
 public:
  // --- Scripted behaviour (set before the calls). ---
  std::vector<v1::Job> jobs;         // what ListJobs pages through
  int default_page_size = 2;         // used when a request has page_size 0
  bool ignore_page_size = false;     // always use default_page_size
  std::vector<WatchScript> watches;  // one per WatchJob call; the last one repeats
  v1::Job get_job;                   // what GetJob returns (NOT_FOUND when its id is empty)
  v1::CheckpointInfo download_info;  // what DownloadCheckpoint sends first
  std::vector<v1::CheckpointChunk> download_chunks;

  // --- Recorded requests. ---
  std::vector<v1::SubmitJobRequest> submits() {
    absl::MutexLock lock(&mu_);
    return submits_;
  }
  std::vector<v1::ListJobsRequest> lists() {
    absl::MutexLock lock(&mu_);
    return lists_;
  }
  std::vector<v1::WatchJobRequest> watch_requests() {
    absl::MutexLock lock(&mu_);
    return watch_requests_;
  }
  std::vector<std::string> other_calls() {
    absl::MutexLock lock(&mu_);
    return other_calls_;
  }
  int unauthenticated() {
    absl::MutexLock lock(&mu_);
    return unauthenticated_;
  }

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    absl::MutexLock lock(&mu_);
    submits_.push_back(*request);
    *response->mutable_job() = MakeJob(7);
    *response->mutable_job()->mutable_spec() = request->spec();
    response->mutable_job()->set_client_request_id(request->client_request_id());
    response->set_created(!request->validate_only());
    // As the coordinator answers: a check stores no job; a fork's source is pinned.
    if (request->validate_only()) response->mutable_job()->clear_id();
    if (request->spec().init_from().has_job_id()) {
      response->mutable_job()->mutable_spec()->mutable_init_from()->set_checkpoint_id(
          absl::StrCat(request->spec().init_from().job_id(), "-a1-step-000000000100"));
    }
    return grpc::Status::OK;
  }

  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::GetJobResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    Record(absl::StrCat("GetJob ", request->job_id()));
    if (get_job.id().empty() || get_job.id() != request->job_id()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no job ", request->job_id()));
    }
    *response->mutable_job() = get_job;
    response->add_attempts()->set_number(1);
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    {
      absl::MutexLock lock(&mu_);
      lists_.push_back(*request);
    }
    // The filters as the coordinator applies them (on direct job dependencies here).
    std::vector<v1::Job> selected;
    for (const v1::Job& job : jobs) {
      if (!request->depends_on_job_id().empty() &&
          job.spec().depends_on().job_id() != request->depends_on_job_id()) {
        continue;
      }
      bool labelled = true;
      for (const auto& [key, value] : request->labels()) {
        auto it = job.spec().labels().find(key);
        labelled = labelled && it != job.spec().labels().end() && it->second == value;
      }
      if (labelled) selected.push_back(job);
    }
    size_t start = 0;
    if (!request->page_token().empty()) start = std::stoul(request->page_token());
    const size_t size =
        request->page_size() > 0 && !ignore_page_size ? request->page_size() : default_page_size;
    for (size_t i = start; i < selected.size() && i < start + size; ++i) {
      *response->add_jobs() = selected[i];
    }
    if (start + size < selected.size()) response->set_next_page_token(absl::StrCat(start + size));
    return grpc::Status::OK;
  }

  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                         v1::CancelJobResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    Record(absl::StrCat("CancelJob ", request->job_id(), " reason=", request->reason()));
    *response->mutable_job() = MakeJob(1, v1::JOB_STATE_RUNNING);
    return grpc::Status::OK;
  }

  grpc::Status ResumeJob(grpc::ServerContext* context, const v1::ResumeJobRequest* request,
                         v1::ResumeJobResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    Record(absl::StrCat("ResumeJob ", request->job_id(), " checkpoint=", request->checkpoint_id(),
                        request->config_overrides_size() > 0 ? " set=" : "",
                        absl::StrJoin(request->config_overrides(), ",")));
    *response->mutable_job() = MakeJob(1, v1::JOB_STATE_QUEUED);
    return grpc::Status::OK;
  }

  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::WatchJobEvent>* writer) override {
    if (!Authorized(context)) return Unauthenticated();
    WatchScript script;
    {
      absl::MutexLock lock(&mu_);
      const size_t call = watch_requests_.size();
      watch_requests_.push_back(*request);
      if (watches.empty()) return grpc::Status(grpc::StatusCode::INTERNAL, "no script");
      script = watches[std::min(call, watches.size() - 1)];
    }
    for (const v1::WatchJobEvent& event : script.events) {
      if (!writer->Write(event)) break;
    }
    return script.status;
  }

  grpc::Status ListCheckpoints(grpc::ServerContext* context,
                               const v1::ListCheckpointsRequest* request,
                               v1::ListCheckpointsResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    Record(absl::StrCat("ListCheckpoints ", request->job_id()));
    *response->add_checkpoints() = download_info;
    return grpc::Status::OK;
  }

  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::DownloadCheckpointResponse>* writer) override {
    if (!Authorized(context)) return Unauthenticated();
    Record(absl::StrCat("DownloadCheckpoint ", request->checkpoint_id()));
    v1::DownloadCheckpointResponse message;
    *message.mutable_info() = download_info;
    writer->Write(message);
    for (const v1::CheckpointChunk& chunk : download_chunks) {
      *message.mutable_chunk() = chunk;
      if (!writer->Write(message)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest*,
                           v1::ListWorkersResponse* response) override {
    if (!Authorized(context)) return Unauthenticated();
    Record("ListWorkers");
    v1::WorkerInfo* worker = response->add_workers();
    worker->set_id("worker-1");
    worker->set_host("node1");
    worker->set_state(v1::WORKER_STATE_ALIVE);
    worker->mutable_devices()->set_cpu_slots(2);
    return grpc::Status::OK;
  }

 private:
  bool Authorized(grpc::ServerContext* context) {
    const auto& metadata = context->client_metadata();
    auto it = metadata.find("authorization");
    if (it != metadata.end() &&
        std::string(it->second.data(), it->second.size()) == absl::StrCat("Bearer ", kToken)) {
      return true;
    }
    absl::MutexLock lock(&mu_);
    ++unauthenticated_;
    return false;
  }
  static grpc::Status Unauthenticated() {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or wrong bearer token");
  }
  void Record(std::string call) {
    absl::MutexLock lock(&mu_);
    other_calls_.push_back(std::move(call));
  }

  absl::Mutex mu_;
  std::vector<v1::SubmitJobRequest> submits_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ListJobsRequest> lists_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WatchJobRequest> watch_requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> other_calls_ ABSL_GUARDED_BY(mu_);
  int unauthenticated_ ABSL_GUARDED_BY(mu_) = 0;
};

struct CliResult {
  int code;
  std::string out;
  std::string err;
};

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest() : server_({&service_}), address_(server_.address()) {}

  // Runs peco with --coordinator and --token (none when `token` is empty: discovery then uses
  // `env`).
  CliResult Run(std::vector<std::string> args, const std::string& token = kToken,
                Environment env = {}) {
    std::vector<std::string> full = {"--coordinator", address_, "--token", token};
    if (token.empty()) full.clear();
    full.insert(full.end(), args.begin(), args.end());
    std::ostringstream out;
    std::ostringstream err;
    CliContext context;
    context.env = std::move(env);
    context.out = &out;
    context.err = &err;
    context.reconnect_backoff = absl::ZeroDuration();
    context.max_reconnects = 3;
    const int code = RunCli(full, context);
    return {code, out.str(), err.str()};
  }

  std::string WriteSpec(const std::string& text) {
    const std::string path = temp_.path() + "/small-job.yaml";
    EXPECT_TRUE(WriteFileSynced(path, text).ok());
    return path;
  }

  ::peco::testing::ScopedTempDir temp_{"commands_test"};
  FakeJobService service_;
  ::peco::testing::LoopbackServer server_;
  std::string address_;
};

TEST_F(CommandsTest, SubmitSendsTheSpecWithOneRequestId) {
  const std::string path = WriteSpec(
      "kind: tokenizer\ntrain: {max_steps: 10}\njob:\n"
      "  world_size: 2\n  labels: {team: vision}\n");
  CliResult result = Run({"submit", path, "--set", "train.max_steps=20", "--priority", "3"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("submitted job-000007 (small-job, tokenizer, QUEUED)"));

  std::vector<v1::SubmitJobRequest> submits = service_.submits();
  ASSERT_THAT(submits, SizeIs(1));
  EXPECT_THAT(submits[0].client_request_id(),
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  const v1::JobSpec& spec = submits[0].spec();
  EXPECT_EQ(spec.name(), "small-job");
  EXPECT_EQ(spec.world_size(), 2);
  EXPECT_EQ(spec.priority(), 3);
  EXPECT_EQ(spec.labels().at("team"), "vision");
  EXPECT_THAT(spec.config_yaml(), AllOf(HasSubstr("max_steps: 20"), Not(HasSubstr("job"))));

  // A second invocation is a new request.
  ASSERT_EQ(Run({"submit", path, "--name", "other"}).code, kExitOk);
  submits = service_.submits();
  ASSERT_THAT(submits, SizeIs(2));
  EXPECT_NE(submits[1].client_request_id(), submits[0].client_request_id());
  EXPECT_EQ(submits[1].spec().name(), "other");
  EXPECT_FALSE(submits[1].spec().has_depends_on());

  // --after makes the job depend on another.
  ASSERT_EQ(Run({"submit", path, "--after", "job-000003"}).code, kExitOk);
  submits = service_.submits();
  ASSERT_THAT(submits, SizeIs(3));
  EXPECT_EQ(submits[2].spec().depends_on().job_id(), "job-000003");
}

TEST_F(CommandsTest, SubmitRefusesABadSpecWithoutCallingTheCoordinator) {
  const std::string path = WriteSpec("kind: tokenizer\njob: {world_size: 0}\n");
  CliResult result = Run({"submit", path});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr(path + ": job.world_size: expected an integer >= 1, got 0"));
  EXPECT_THAT(service_.submits(), SizeIs(0));

  result = Run({"submit", temp_.path() + "/missing.yaml"});
  EXPECT_EQ(result.code, kExitUsage);
  EXPECT_THAT(result.err, HasSubstr(temp_.path() + "/missing.yaml"));
}

TEST_F(CommandsTest, SubmitJsonIsTheResponse) {
  const std::string path = WriteSpec("kind: pretrain\n");
  CliResult result = Run({"-o", "json", "submit", path});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  v1::SubmitJobResponse response;
  ASSERT_TRUE(ParseCliJson(result.out, &response).ok()) << result.out;
  EXPECT_EQ(response.job().id(), "job-000007");
  EXPECT_EQ(response.job().client_request_id(), service_.submits().at(0).client_request_id());
}

TEST_F(CommandsTest, NameOutputPrintsOnlyIds) {
  CliResult submit = Run({"-o", "name", "submit", WriteSpec("kind: pretrain\n")});
  ASSERT_EQ(submit.code, kExitOk) << submit.err;
  EXPECT_EQ(submit.out, "job-000007\n");

  for (int i = 1; i <= 3; ++i) service_.jobs.push_back(MakeJob(i));
  CliResult list = Run({"list", "-o", "name"});
  ASSERT_EQ(list.code, kExitOk) << list.err;
  EXPECT_EQ(list.out, "job-000001\njob-000002\njob-000003\n");

  CliResult workers = Run({"workers", "-o", "name"});
  ASSERT_EQ(workers.code, kExitOk) << workers.err;
  EXPECT_EQ(workers.out, "worker-1\n");

  CliResult yaml = Run({"workers", "-o", "yaml"});
  ASSERT_EQ(yaml.code, kExitOk) << yaml.err;
  EXPECT_THAT(yaml.out, HasSubstr("workers:\n  - id: worker-1\n"));

  CliResult bad = Run({"workers", "-o", "xml"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("expected table, json, yaml or name"));
}

TEST_F(CommandsTest, WrongTokenIsExit1NamingWhereTheTokenCameFrom) {
  CliResult result = Run({"workers"}, "wrong-token");
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("ListWorkers: missing or wrong bearer token"));
  EXPECT_THAT(result.err, HasSubstr("token from --token"));
  EXPECT_EQ(service_.unauthenticated(), 1);
}

TEST_F(CommandsTest, DiscoveryFromTheDataDirectory) {
  const std::string data_dir = temp_.path() + "/data";
  fs::create_directory(data_dir);
  ASSERT_TRUE(WriteFileSynced(data_dir + "/coordinator.addr", address_ + "\n").ok());
  ASSERT_TRUE(WriteFileSynced(data_dir + "/user.token", std::string(kToken) + "\n").ok());
  Environment env;
  env.data_dir = data_dir;
  CliResult result = Run({"workers"}, "", env);
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("worker-1"));
  EXPECT_THAT(result.out, HasSubstr("ALIVE"));
}

TEST_F(CommandsTest, ListPagesThroughEveryJob) {
  for (int i = 1; i <= 5; ++i) service_.jobs.push_back(MakeJob(i));
  CliResult result = Run({"list"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  std::vector<v1::ListJobsRequest> lists = service_.lists();
  ASSERT_THAT(lists, SizeIs(3));
  EXPECT_EQ(lists[0].page_token(), "");
  EXPECT_EQ(lists[1].page_token(), "2");
  EXPECT_EQ(lists[2].page_token(), "4");
  std::vector<std::string> lines = absl::StrSplit(result.out, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, SizeIs(6));
  EXPECT_THAT(lines[0], HasSubstr("STATE"));
  for (int i = 1; i <= 5; ++i) EXPECT_THAT(lines[i], HasSubstr(absl::StrFormat("job-%06d", i)));
}

TEST_F(CommandsTest, ListLimitAndStatesAndJson) {
  for (int i = 1; i <= 5; ++i) service_.jobs.push_back(MakeJob(i));
  CliResult result =
      Run({"list", "--state", "running,failed", "--state", "QUEUED", "--limit", "3", "-o", "json"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  std::vector<v1::ListJobsRequest> lists = service_.lists();
  ASSERT_THAT(lists, SizeIs(1));
  EXPECT_THAT(lists[0].states(),
              ElementsAre(v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED, v1::JOB_STATE_QUEUED));
  EXPECT_EQ(lists[0].page_size(), 3);
  v1::ListJobsResponse response;
  ASSERT_TRUE(ParseCliJson(result.out, &response).ok());
  EXPECT_THAT(response.jobs(), SizeIs(3));
  EXPECT_EQ(response.next_page_token(), "3");  // scripts can continue from here

  CliResult bad = Run({"list", "--state", "runing"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("peco list: --state: unknown job state 'runing'"));
}

TEST_F(CommandsTest, ListFiltersByLabelsAndDependencyOnTheServer) {
  for (int i = 1; i <= 4; ++i) {
    v1::Job job = MakeJob(i);
    (*job.mutable_spec()->mutable_labels())["team"] = i % 2 == 0 ? "vision" : "speech";
    if (i > 1) job.mutable_spec()->mutable_depends_on()->set_job_id("job-000001");
    service_.jobs.push_back(job);
  }
  CliResult result =
      Run({"list", "--label", "team=vision", "--depends-on", "job-000001", "-o", "name"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_EQ(result.out, "job-000002\njob-000004\n");
  std::vector<v1::ListJobsRequest> lists = service_.lists();
  ASSERT_THAT(lists, SizeIs(1));
  EXPECT_EQ(lists[0].labels().at("team"), "vision");
  EXPECT_EQ(lists[0].depends_on_job_id(), "job-000001");

  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"list", "--label", "team"},
        std::vector<std::string>{"list", "--label", "=x"},
        std::vector<std::string>{"list", "--label", "a=1", "--label", "a=2"}}) {
    CliResult refused = Run(bad);
    EXPECT_EQ(refused.code, kExitUsage) << bad.back();
    EXPECT_THAT(refused.err, HasSubstr("--label"));
  }
}

TEST_F(CommandsTest, SubmitDryRunAsksTheCoordinatorToValidateOnly) {
  const std::string path = WriteSpec("kind: tokenizer\ntrain: {max_steps: 10}\n");
  CliResult result = Run({"submit", path, "--dry-run"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("valid: small-job (tokenizer, 1 rank) passed the "
                                    "coordinator's checks; nothing was submitted"));
  ASSERT_THAT(service_.submits(), SizeIs(1));
  EXPECT_TRUE(service_.submits()[0].validate_only());

  // --print-request sends nothing.
  CliResult printed = Run({"submit", path, "--print-request"});
  ASSERT_EQ(printed.code, kExitOk) << printed.err;
  EXPECT_THAT(printed.out, HasSubstr("\"config_yaml\""));
  EXPECT_THAT(service_.submits(), SizeIs(1));
}

TEST_F(CommandsTest, ListLimitInsideAPageGivesNoInexactToken) {
  for (int i = 1; i <= 5; ++i) service_.jobs.push_back(MakeJob(i));
  service_.default_page_size = 4;
  service_.ignore_page_size = true;
  CliResult result = Run({"list", "--limit", "3", "-o", "json"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  v1::ListJobsResponse response;
  ASSERT_TRUE(ParseCliJson(result.out, &response).ok());
  ASSERT_THAT(response.jobs(), SizeIs(3));
  EXPECT_EQ(response.jobs(2).id(), "job-000003");
  // The server's token ("4") would skip job-000004, so none is given.
  EXPECT_EQ(response.next_page_token(), "");
  EXPECT_THAT(result.err, HasSubstr("more jobs"));
}

TEST_F(CommandsTest, WatchExitCodeFollowsTheTerminalState) {
  struct Case {
    v1::JobState state;
    int code;
  };
  for (const Case& c :
       {Case{v1::JOB_STATE_SUCCEEDED, kExitOk}, Case{v1::JOB_STATE_FAILED, kExitFailure},
        Case{v1::JOB_STATE_CANCELLED, kExitFailure}}) {
    service_.watches = {{{StateEvent(v1::JOB_STATE_RUNNING, 1, 100), PointEvent(10, 110),
                          PointEvent(20, 120), StateEvent(c.state, 1, 130, "done here")}}};
    CliResult result = Run({"watch", "job-000001"});
    EXPECT_EQ(result.code, c.code) << result.err;
    EXPECT_THAT(result.out, HasSubstr(absl::StrCat("job-000001 ", JobStateName(c.state),
                                                   " (attempt 1): done here")));
    EXPECT_THAT(result.out, HasSubstr("step 20"));
  }
  std::vector<v1::WatchJobRequest> requests = service_.watch_requests();
  ASSERT_THAT(requests, SizeIs(3));
  EXPECT_EQ(requests[0].job_id(), "job-000001");
  EXPECT_TRUE(requests[0].include_history());
}

TEST_F(CommandsTest, WatchReconnectsAfterUnavailableWithoutRepeatingEvents) {
  WatchScript broken;
  broken.events = {StateEvent(v1::JOB_STATE_RUNNING, 1, 100), PointEvent(10, 110)};
  broken.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator restarting");
  WatchScript full;
  full.events = {StateEvent(v1::JOB_STATE_RUNNING, 1, 100), PointEvent(10, 110),
                 PointEvent(20, 120), StateEvent(v1::JOB_STATE_SUCCEEDED, 1, 130)};
  service_.watches = {broken, full};
  CliResult result = Run({"watch", "job-000001"});
  EXPECT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(service_.watch_requests(), SizeIs(2));
  EXPECT_THAT(result.err, HasSubstr("reconnecting"));
  std::vector<std::string> running = absl::StrSplit(result.out, "RUNNING (attempt 1)");
  EXPECT_EQ(running.size(), 2u) << result.out;  // printed once
  EXPECT_THAT(result.out, HasSubstr("SUCCEEDED"));
}

TEST_F(CommandsTest, WatchGivesUpAfterRepeatedFailures) {
  // One event before the failure: gRPC's own retry policy never repeats a stream that has
  // delivered a message, so every failure reaches the CLI's reconnect logic.
  WatchScript broken;
  broken.events = {StateEvent(v1::JOB_STATE_RUNNING, 1, 100)};
  broken.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "down");
  service_.watches = {broken};
  CliResult result = Run({"watch", "job-000001"});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("WatchJob job-000001"));
  EXPECT_THAT(result.err, HasSubstr("gave up after 3 reconnects"));
  EXPECT_THAT(service_.watch_requests(), SizeIs(4));  // the first call and 3 reconnects
}

TEST_F(CommandsTest, WatchAsksForTheStateWhenTheStreamEndsEarly) {
  service_.watches = {{{StateEvent(v1::JOB_STATE_RUNNING, 1, 100)}}};
  service_.get_job = MakeJob(1, v1::JOB_STATE_FAILED);
  service_.get_job.set_failure_reason("rank 0 exited with exit code 3");
  CliResult result = Run({"watch", "job-000001"});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.out, HasSubstr("FAILED"));
  EXPECT_THAT(result.out, HasSubstr("rank 0 exited with exit code 3"));
  EXPECT_THAT(service_.other_calls(), ElementsAre("GetJob job-000001"));
}

TEST_F(CommandsTest, WatchJsonWritesOneEventPerLine) {
  service_.watches = {{{StateEvent(v1::JOB_STATE_RUNNING, 1, 100), PointEvent(10, 110),
                        StateEvent(v1::JOB_STATE_SUCCEEDED, 1, 130)}}};
  CliResult result = Run({"watch", "job-000001", "-o", "json"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  std::vector<std::string> lines = absl::StrSplit(result.out, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, SizeIs(3));
  v1::WatchJobEvent event;
  ASSERT_TRUE(ParseCliJson(lines[1], &event).ok());
  EXPECT_EQ(event.metric_point().step(), 10);
}

TEST_F(CommandsTest, TensorboardWritesTheJobsHistoryAsARunRecord) {
  service_.get_job = MakeJob(1, v1::JOB_STATE_SUCCEEDED);
  service_.get_job.mutable_spec()->set_config_yaml("kind: tokenizer\n");
  v1::WatchJobEvent eval = PointEvent(20, 125);
  (*eval.mutable_metric_point()->mutable_values())["eval_top1"] = 71.5;
  v1::WatchJobEvent other_rank = PointEvent(10, 111);
  other_rank.mutable_metric_point()->set_rank(1);
  service_.watches = {{{StateEvent(v1::JOB_STATE_RUNNING, 1, 100), PointEvent(10, 110), other_rank,
                        eval, StateEvent(v1::JOB_STATE_SUCCEEDED, 1, 130)}}};
  const std::string dir = temp_.path() + "/tb";
  CliResult result = Run({"tensorboard", "job-000001", dir});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("wrote 2 metric points of job-000001"));
  ASSERT_THAT(service_.watch_requests(), SizeIs(1));
  EXPECT_TRUE(service_.watch_requests()[0].include_history());

  absl::StatusOr<std::string> metrics = ReadFileToString(dir + "/metrics.jsonl");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  std::vector<std::string> lines = absl::StrSplit(*metrics, '\n', absl::SkipEmpty());
  ASSERT_THAT(lines, SizeIs(4));  // RUNNING, two rank-0 points, SUCCEEDED
  EXPECT_THAT(lines[0], HasSubstr("\"event\":\"state\""));
  EXPECT_THAT(lines[0], HasSubstr("\"time\":\"1970-01-01T00:01:40"));
  EXPECT_THAT(lines[1], HasSubstr("\"event\":\"metrics\""));
  EXPECT_THAT(lines[1], HasSubstr("\"step\":10"));
  EXPECT_THAT(lines[2], HasSubstr("\"eval_top1\":71.5"));
  EXPECT_THAT(lines[3], HasSubstr("\"state\":\"SUCCEEDED\""));

  // One event file: the version, the config text and three scalars (loss at 10 and 20,
  // eval/top1 at 20), each a framed record (the records' contents are read back by an
  // independent reader in tests/scripts/run_record_test.py).
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("events.out.tfevents.", 0) == 0) {
      files.push_back(entry.path().string());
    }
  }
  ASSERT_THAT(files, SizeIs(1));
  absl::StatusOr<std::string> events = ReadFileToString(files[0]);
  ASSERT_TRUE(events.ok());
  int records = 0;
  for (size_t offset = 0; offset + 12 <= events->size(); ++records) {
    uint64_t length = 0;
    for (int i = 7; i >= 0; --i)
      length = (length << 8) | static_cast<unsigned char>((*events)[offset + i]);
    offset += 12 + length + 4;
  }
  EXPECT_EQ(records, 5);
  EXPECT_THAT(*events, HasSubstr("eval/top1"));
  EXPECT_THAT(*events, HasSubstr("train/loss"));
  EXPECT_THAT(*events, HasSubstr("kind: tokenizer"));

  CliResult missing = Run({"tensorboard", "job-000404", temp_.path() + "/tb2"});
  EXPECT_EQ(missing.code, kExitFailure);
  EXPECT_THAT(missing.err, HasSubstr("no job job-000404"));
  EXPECT_FALSE(fs::exists(temp_.path() + "/tb2"));
}

TEST_F(CommandsTest, SubmitWatchReturnsTheJobsOutcome) {
  service_.watches = {{{StateEvent(v1::JOB_STATE_FAILED, 1, 100, "bad config")}}};
  const std::string path = WriteSpec("kind: tokenizer\n");
  CliResult result = Run({"submit", path, "--watch"});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.out, HasSubstr("submitted job-000007"));
  EXPECT_THAT(result.out, HasSubstr("FAILED (attempt 1): bad config"));
  ASSERT_THAT(service_.watch_requests(), SizeIs(1));
  EXPECT_EQ(service_.watch_requests()[0].job_id(), "job-000007");
}

class DownloadCommandTest : public CommandsTest {
 protected:
  DownloadCommandTest() {
    model_ = std::string(5000, '\0');
    for (size_t i = 0; i < model_.size(); ++i) model_[i] = static_cast<char>(i * 13 % 256);
    state_ = R"({"step":300,"final":true})";
    v1::CheckpointInfo& info = service_.download_info;
    info.set_id("job-000001-a1-step-000000000300");
    info.set_step(300);
    for (const auto& [name, data] :
         {std::pair{"model.pt", model_}, {"trainer_state.json", state_}}) {
      v1::ManifestEntry* entry = info.add_manifest();
      entry->set_name(name);
      entry->set_size(static_cast<int64_t>(data.size()));
      entry->set_sha256(Sha256Hex(data));
      for (size_t offset = 0; offset < data.size(); offset += 2048) {
        v1::CheckpointChunk chunk;
        chunk.set_file_name(name);
        chunk.set_offset(static_cast<int64_t>(offset));
        chunk.set_data(data.substr(offset, 2048));
        service_.download_chunks.push_back(chunk);
      }
    }
  }

  std::string model_;
  std::string state_;
};

TEST_F(DownloadCommandTest, WritesVerifiedFiles) {
  const std::string dir = temp_.path() + "/out";
  CliResult result = Run({"download", "job-000001-a1-step-000000000300", dir});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("SHA-256 verified"));
  EXPECT_EQ(*ReadFileToString(dir + "/model.pt"), model_);
  EXPECT_EQ(*ReadFileToString(dir + "/trainer_state.json"), state_);
  EXPECT_EQ(*ReadFileToString(dir + "/MANIFEST"),
            absl::StrCat(Sha256Hex(model_), " 5000 model.pt\n", Sha256Hex(state_), " ",
                         state_.size(), " trainer_state.json\n"));
  EXPECT_FALSE(fs::exists(temp_.path() + "/.out.partial"));
  EXPECT_THAT(service_.other_calls(),
              ElementsAre("DownloadCheckpoint job-000001-a1-step-000000000300"));
}

TEST_F(DownloadCommandTest, CorruptedStreamLeavesNothing) {
  std::string* data = service_.download_chunks[1].mutable_data();
  (*data)[100] = static_cast<char>((*data)[100] ^ 0x40);
  const std::string dir = temp_.path() + "/out";
  CliResult result = Run({"download", "job-000001-a1-step-000000000300", dir});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("file model.pt has SHA-256"));
  EXPECT_THAT(result.err, HasSubstr("nothing was written to " + dir));
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(DownloadCommandTest, TruncatedStreamLeavesNothing) {
  service_.download_chunks.pop_back();
  const std::string dir = temp_.path() + "/out";
  CliResult result = Run({"download", "ck", dir});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr("trainer_state.json in the manifest was not received"));
  EXPECT_FALSE(fs::exists(dir));
}

TEST_F(DownloadCommandTest, ExistingDirectoryIsRefused) {
  const std::string dir = temp_.path() + "/out";
  fs::create_directory(dir);
  ASSERT_TRUE(WriteFileSynced(dir + "/keep", "x").ok());
  CliResult result = Run({"download", "ck", dir});
  EXPECT_EQ(result.code, kExitFailure);
  EXPECT_THAT(result.err, HasSubstr(dir + " exists and is not an empty directory"));
  EXPECT_TRUE(fs::exists(dir + "/keep"));
}

TEST_F(DownloadCommandTest, CheckpointsTable) {
  CliResult result = Run({"checkpoints", "job-000001"});
  ASSERT_EQ(result.code, kExitOk) << result.err;
  EXPECT_THAT(result.out, HasSubstr("job-000001-a1-step-000000000300"));
  CliResult names = Run({"checkpoints", "job-000001", "-o", "name"});
  ASSERT_EQ(names.code, kExitOk) << names.err;
  EXPECT_EQ(names.out, "job-000001-a1-step-000000000300\n");
  EXPECT_THAT(service_.other_calls(),
              ElementsAre("ListCheckpoints job-000001", "ListCheckpoints job-000001"));
}

TEST_F(CommandsTest, GetCancelResume) {
  service_.get_job = MakeJob(1, v1::JOB_STATE_RUNNING);
  CliResult get = Run({"get", "job-000001"});
  ASSERT_EQ(get.code, kExitOk) << get.err;
  EXPECT_THAT(get.out, HasSubstr("RUNNING"));
  EXPECT_THAT(get.out, HasSubstr("Checkpoints:"));

  CliResult missing = Run({"get", "job-000404"});
  EXPECT_EQ(missing.code, kExitFailure);
  EXPECT_THAT(missing.err, HasSubstr("peco get: GetJob job-000404: no job job-000404"));

  CliResult cancel = Run({"cancel", "job-000001", "--reason", "wrong lr"});
  ASSERT_EQ(cancel.code, kExitOk) << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("job-000001 cancelling"));

  CliResult resume = Run({"resume", "job-000001", "--checkpoint", "ck-9"});
  ASSERT_EQ(resume.code, kExitOk) << resume.err;
  EXPECT_THAT(resume.out, HasSubstr("resuming from ck-9"));

  // `get` also lists the job's checkpoints (and every job, for its dependents).
  EXPECT_THAT(
      service_.other_calls(),
      ElementsAre("GetJob job-000001", "ListCheckpoints job-000001", "GetJob job-000404",
                  "CancelJob job-000001 reason=wrong lr", "ResumeJob job-000001 checkpoint=ck-9"));
}

TEST_F(CommandsTest, ForkSubmitsACopyThatStartsFromTheJobAndResumeCarriesOverrides) {
  service_.get_job = MakeJob(3, v1::JOB_STATE_SUCCEEDED);
  service_.get_job.mutable_spec()->set_name("tok");
  service_.get_job.mutable_spec()->set_config_yaml("kind: tokenizer\ntrain: {max_steps: 100}\n");
  (*service_.get_job.mutable_spec()->mutable_labels())["team"] = "vision";
  CliResult fork =
      Run({"fork", "job-000003", "--set", "train.max_steps=400", "--set", "optim.lr=0.0001"});
  ASSERT_EQ(fork.code, kExitOk) << fork.err;
  EXPECT_THAT(fork.out, HasSubstr("forked job-000003"));
  const std::vector<v1::SubmitJobRequest> submits = service_.submits();
  ASSERT_THAT(submits, SizeIs(1));
  const v1::JobSpec& spec = submits[0].spec();
  EXPECT_EQ(spec.name(), "tok-fork");
  EXPECT_EQ(spec.init_from().job_id(), "job-000003");
  EXPECT_EQ(spec.labels().at("team"), "vision");
  EXPECT_THAT(spec.config_yaml(), HasSubstr("max_steps: 400"));
  EXPECT_THAT(spec.config_yaml(), HasSubstr("lr: 0.0001"));

  ASSERT_EQ(Run({"fork", "job-000003", "--checkpoint", "ck-7", "--name", "again"}).code, kExitOk);
  const std::vector<v1::SubmitJobRequest> both = service_.submits();
  ASSERT_THAT(both, SizeIs(2));
  EXPECT_EQ(both[1].spec().init_from().checkpoint_id(), "ck-7");
  EXPECT_EQ(both[1].spec().name(), "again");
  EXPECT_NE(both[1].client_request_id(), both[0].client_request_id());

  CliResult bad = Run({"fork", "job-000003", "--set", "train.max_steps"});
  EXPECT_EQ(bad.code, kExitUsage);
  EXPECT_THAT(bad.err, HasSubstr("--set"));

  ASSERT_EQ(Run({"resume", "job-000001", "--set", "train.max_steps=2000"}).code, kExitOk);
  EXPECT_THAT(service_.other_calls(),
              Contains("ResumeJob job-000001 checkpoint= set=train.max_steps=2000"));
}

TEST_F(CommandsTest, UsageErrorsAreExit2AndNameTheProblem) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"get"}, "peco get: missing argument JOB"},
           {{"download", "ck"}, "peco download: missing argument DIR"},
           {{"get", "a", "b"}, "peco get: unexpected argument 'b'"},
           {{"list", "--limt", "3"}, "peco list: unknown flag --limt"},
           {{"list", "-o", "xml"}, "-o/--output: expected table, json, yaml or name, got 'xml'"},
           {{"list", "--timeout", "soon"}, "--timeout: expected a duration"},
           {{"frobnicate"}, "peco: unknown command 'frobnicate'"},
           {{"cancel", "j", "--reason", "a", "--reason", "b"}, "--reason given more than once"},
       }) {
    CliResult result = Run(c.args);
    EXPECT_EQ(result.code, kExitUsage) << c.expected;
    EXPECT_THAT(result.err, HasSubstr(c.expected));
  }
  EXPECT_THAT(service_.other_calls(), SizeIs(0));
}

TEST_F(CommandsTest, HelpGoesToStdoutWithExit0) {
  CliResult main_help = Run({"--help"});
  EXPECT_EQ(main_help.code, kExitOk);
  for (const char* command : {"submit", "list", "get", "watch", "cancel", "resume", "checkpoints",
                              "download", "workers"}) {
    EXPECT_THAT(main_help.out, HasSubstr(command));
  }
  CliResult submit_help = Run({"submit", "--help"});
  EXPECT_EQ(submit_help.code, kExitOk);
  EXPECT_THAT(submit_help.out, HasSubstr("Usage: peco submit FILE.yaml"));
  EXPECT_THAT(submit_help.out, HasSubstr("--set KEY=VALUE"));

  std::ostringstream out, err;
  CliContext context;
  context.out = &out;
  context.err = &err;
  EXPECT_EQ(RunCli({}, context), kExitUsage);
  EXPECT_THAT(err.str(), HasSubstr("Usage: peco"));
}

TEST(RequestIdTest, UniqueAndVersion4) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewClientRequestId();
    ASSERT_THAT(id, MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                                 "[0-9a-f]{12}"));
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace peco::cli
