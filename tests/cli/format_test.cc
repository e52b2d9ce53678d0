#include "cli/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"

namespace peco::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

int64_t MicrosAgo(absl::Duration ago) { return absl::ToUnixMicros(kNow - ago); }

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

v1::Job MakeJob(const std::string& id, const std::string& name, v1::JobState state) {
  v1::Job job;
  job.set_id(id);
  job.mutable_spec()->set_name(name);
  job.mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  job.mutable_spec()->set_max_restarts(5);
  job.set_state(state);
  job.set_attempt(2);
  job.set_restart_count(1);
  job.set_submit_time_us(MicrosAgo(absl::Minutes(10)));
  job.set_start_time_us(MicrosAgo(absl::Minutes(9)));
  job.set_client_request_id("req-1");
  return job;
}

TEST(FormatTest, HumanDurations) {
  EXPECT_EQ(HumanDuration(absl::Milliseconds(850)), "850ms");
  EXPECT_EQ(HumanDuration(absl::Seconds(42)), "42s");
  EXPECT_EQ(HumanDuration(absl::Seconds(185)), "3m05s");
  EXPECT_EQ(HumanDuration(absl::Minutes(127)), "2h07m");
  EXPECT_EQ(HumanDuration(absl::Hours(76)), "3d04h");
  EXPECT_EQ(HumanDuration(-absl::Seconds(5)), "0ms");
  EXPECT_EQ(FormatAge(MicrosAgo(absl::Seconds(185)), kNow), "3m05s ago");
  EXPECT_EQ(FormatAge(0, kNow), "-");
  EXPECT_EQ(FormatTime(0), "-");
}

TEST(FormatTest, Bytes) {
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(int64_t{12} << 20), "12.0 MiB");
  EXPECT_EQ(FormatBytes(int64_t{13} << 29), "6.50 GiB");
}

TEST(FormatTest, TableColumnsAlign) {
  TextTable table({"ID", "NAME", "X"});
  table.AddRow({"job-1", "a", "1"});
  table.AddRow({"job-000002", "", "22"});
  const std::vector<std::string> lines = Lines(table.Render());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "ID          NAME  X");
  EXPECT_EQ(lines[1], "job-1       a     1");
  EXPECT_EQ(lines[2], "job-000002  -     22");
}

TEST(FormatTest, JobTableHasTheColumnsAligned) {
  std::vector<v1::Job> jobs = {MakeJob("job-000001", "tok", v1::JOB_STATE_RUNNING),
                               MakeJob("job-000002", "a-much-longer-name", v1::JOB_STATE_QUEUED)};
  jobs[0].mutable_progress()->set_step(120);
  jobs[0].mutable_progress()->set_max_steps(300);
  jobs[0].mutable_progress()->set_time_us(1);
  const std::vector<std::string> lines = Lines(FormatJobTable(jobs, kNow));
  ASSERT_EQ(lines.size(), 3u);
  for (const char* column : {"ID", "NAME", "KIND", "STATE", "STEP", "ATTEMPT", "RESTARTS",
                             "PRIORITY", "AGE", "RUNTIME"}) {
    EXPECT_THAT(lines[0], HasSubstr(column));
  }
  EXPECT_EQ(lines[1].find("120/300"), lines[0].find("STEP"));
  EXPECT_EQ(lines[2].substr(lines[0].find("STEP"), 2), "- ") << "no progress reported yet";
  const size_t state_column = lines[0].find("STATE");
  EXPECT_EQ(lines[1].find("RUNNING"), state_column);
  EXPECT_EQ(lines[2].find("QUEUED"), state_column);
  EXPECT_EQ(lines[1].find("tokenizer"), lines[0].find("KIND"));
  EXPECT_THAT(lines[1], HasSubstr("1/5"));         // restarts of max_restarts
  EXPECT_THAT(lines[1], HasSubstr("10m00s ago"));  // age since submit
  EXPECT_THAT(lines[1], HasSubstr("9m00s"));       // runtime so far
}

TEST(FormatTest, JobDetailsShowAttemptsAndFailure) {
  v1::GetJobResponse response;
  *response.mutable_job() = MakeJob("job-000003", "probe", v1::JOB_STATE_FAILED);
  response.mutable_job()->set_failure_reason("rank 0 exited with exit code 3: non-finite loss");
  v1::Attempt* attempt = response.add_attempts();
  attempt->set_number(1);
  attempt->set_state(v1::JOB_STATE_FAILED);
  attempt->add_placements()->set_worker_id("worker-a");
  attempt->set_resume_checkpoint_id("job-000003-a1-step-000000000100");
  attempt->set_resume_step(100);
  v1::InputCheckpoint* input = attempt->add_inputs();
  input->set_checkpoint_id("job-000002-a1-step-000000000400");
  input->set_config_field("backbone.checkpoint");
  response.mutable_job()->mutable_progress()->set_time_us(1);
  (*response.mutable_job()->mutable_progress()->mutable_eval())["eval_top1"] = 71.25;
  (*response.mutable_job()->mutable_progress()->mutable_eval())["eval_knn_top1"] = 69.5;
  const std::string text = FormatJobDetails(response, kNow);
  EXPECT_THAT(text, HasSubstr("backbone.checkpoint <- job-000002-a1-step-000000000400"));
  EXPECT_THAT(text, HasSubstr("eval top-1 71.25%, k-NN top-1 69.50%"));
  EXPECT_THAT(text, HasSubstr("job-000003"));
  EXPECT_THAT(text, HasSubstr("FAILED"));
  EXPECT_THAT(text, HasSubstr("non-finite loss"));
  EXPECT_THAT(text, HasSubstr("worker-a"));
  EXPECT_THAT(text, HasSubstr("(step 100)"));
  EXPECT_THAT(text, HasSubstr("req-1"));
}

// -o yaml: the same fields and values as -o json, as a YAML document in block style.
TEST(FormatTest, YamlHasTheJsonFieldsInBlockStyle) {
  v1::GetJobResponse response;
  *response.mutable_job() = MakeJob("job-000005", "yaml", v1::JOB_STATE_RUNNING);
  response.mutable_job()->set_owner("alice");
  absl::StatusOr<std::string> yaml = ToYaml(response);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  EXPECT_THAT(*yaml, HasSubstr("job:\n"));
  EXPECT_THAT(*yaml, HasSubstr("  id: job-000005\n"));
  EXPECT_THAT(*yaml, HasSubstr("  owner: alice\n"));
  EXPECT_THAT(*yaml, HasSubstr("  state: JOB_STATE_RUNNING\n"));
  const YAML::Node node = YAML::Load(*yaml);
  EXPECT_EQ(node["job"]["spec"]["name"].as<std::string>(), "yaml");
  EXPECT_EQ(yaml->back(), '\n');
}

TEST(FormatTest, JobDetailsShowTheOwnerAndTheAuditLog) {
  v1::GetJobResponse response;
  *response.mutable_job() = MakeJob("job-000004", "mine", v1::JOB_STATE_CANCELLED);
  response.mutable_job()->set_owner("alice");
  v1::AuditEntry* denied = response.add_audit();
  denied->set_time_us(1);
  denied->set_actor("bob");
  denied->set_action("cancel");
  denied->set_outcome("PERMISSION_DENIED");
  denied->set_detail("job job-000004 belongs to another user");
  v1::AuditEntry* cancelled = response.add_audit();
  cancelled->set_time_us(2);
  cancelled->set_actor("alice");
  cancelled->set_action("cancel");
  cancelled->set_outcome("OK");
  const std::string text = FormatJobDetails(response, kNow);
  EXPECT_THAT(text, ::testing::ContainsRegex("Owner: +alice"));
  EXPECT_THAT(text, ::testing::ContainsRegex("USER +ACTION +OUTCOME"));
  EXPECT_THAT(text, ::testing::ContainsRegex("bob +cancel +PERMISSION_DENIED +job job-000004"));
  EXPECT_THAT(text, ::testing::ContainsRegex("alice +cancel +OK +-"));
  EXPECT_LT(text.find("PERMISSION_DENIED"), text.find(" OK "));  // oldest first
}

TEST(FormatTest, JobDetailsShowThePipelineCheckpointsAndAttemptCauses) {
  v1::GetJobResponse response;
  *response.mutable_job() = MakeJob("job-000002", "pre", v1::JOB_STATE_RUNNING);
  response.mutable_job()->mutable_spec()->set_kind(v1::JOB_KIND_PRETRAIN);
  v1::Attempt* lost = response.add_attempts();
  lost->set_number(1);
  lost->set_state(v1::JOB_STATE_RESTARTING);
  lost->set_cause("worker_lost");
  lost->set_failure_reason("worker w-1 lost (no heartbeat for 15s)");
  v1::Attempt* running = response.add_attempts();
  running->set_number(2);
  running->set_state(v1::JOB_STATE_RUNNING);

  JobRelations relations;
  relations.upstream.push_back(MakeJob("job-000001", "tok", v1::JOB_STATE_SUCCEEDED));
  relations.upstream.back().mutable_spec()->set_kind(v1::JOB_KIND_TOKENIZER);
  relations.downstream.push_back({MakeJob("job-000003", "probe", v1::JOB_STATE_WAITING),
                                  MakeJob("job-000004", "ft", v1::JOB_STATE_WAITING)});
  relations.downstream[0][0].mutable_spec()->set_kind(v1::JOB_KIND_LINEAR_PROBE);
  relations.downstream[0][1].mutable_spec()->set_kind(v1::JOB_KIND_FINETUNE);
  EXPECT_EQ(FormatDependencyChain(response.job(), relations),
            "job-000001 tokenizer SUCCEEDED -> [job-000002 pretrain RUNNING] -> job-000003 "
            "linear_probe WAITING + job-000004 finetune WAITING");
  v1::CheckpointInfo checkpoint;
  checkpoint.set_id("job-000002-a1-step-000000000200");
  checkpoint.set_step(200);
  checkpoint.set_bytes(2048);
  relations.checkpoints = {checkpoint};

  const std::string text = FormatJobDetails(response, kNow, &relations);
  EXPECT_THAT(text, HasSubstr("Pipeline:"));
  EXPECT_THAT(text, HasSubstr("[job-000002 pretrain RUNNING]"));
  EXPECT_THAT(text, HasSubstr("1, newest job-000002-a1-step-000000000200 (step 200, 2.00 KiB)"));
  EXPECT_THAT(text, HasSubstr("CAUSE"));
  EXPECT_THAT(text, HasSubstr("worker_lost"));
  // Without relations (or with none to show) the lines are left out.
  EXPECT_THAT(FormatJobDetails(response, kNow), Not(HasSubstr("Pipeline:")));
  relations = JobRelations();
  EXPECT_THAT(FormatJobDetails(response, kNow, &relations), HasSubstr("none yet"));
  EXPECT_THAT(FormatJobDetails(response, kNow, &relations), Not(HasSubstr("Pipeline:")));
}

TEST(FormatTest, CheckpointAndWorkerTables) {
  v1::CheckpointInfo info;
  info.set_id("job-1-a1-step-000000000300");
  info.set_step(300);
  info.set_attempt(1);
  info.set_bytes(int64_t{3} << 20);
  info.add_manifest()->set_name("model.pt");
  info.set_final(true);
  info.set_committed_time_us(MicrosAgo(absl::Seconds(30)));
  const std::vector<std::string> checkpoints = Lines(FormatCheckpointTable({info}, kNow));
  ASSERT_EQ(checkpoints.size(), 2u);
  EXPECT_THAT(checkpoints[1], HasSubstr("3.00 MiB"));
  EXPECT_THAT(checkpoints[1], HasSubstr("yes"));
  EXPECT_THAT(checkpoints[1], HasSubstr("30s ago"));

  v1::WorkerInfo worker;
  worker.set_id("worker-1");
  worker.set_host("node7");
  worker.set_state(v1::WORKER_STATE_SUSPECT);
  worker.mutable_devices()->set_cpu_slots(4);
  worker.mutable_free_devices()->set_cpu_slots(1);
  worker.mutable_ports()->set_first(29500);
  worker.mutable_ports()->set_last(29510);
  const std::vector<std::string> workers = Lines(FormatWorkerTable({worker}, kNow));
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_THAT(workers[1], HasSubstr("SUSPECT"));
  EXPECT_THAT(workers[1], HasSubstr("1/4"));
  EXPECT_THAT(workers[1], HasSubstr("29500-29510"));
}

TEST(FormatTest, JsonHasProtoFieldNamesAndRfc3339Times) {
  v1::ListJobsResponse response;
  *response.add_jobs() = MakeJob("job-000001", "tok", v1::JOB_STATE_SUCCEEDED);
  v1::Job* job = response.mutable_jobs(0);
  (*job->mutable_spec()->mutable_labels())["team"] = "vision";
  // A label that looks like a timestamp field stays a label.
  (*job->mutable_spec()->mutable_labels())["budget_us"] = "1700000000000000";
  job->set_submit_time_us(1700000000123456);  // 2023-11-14T22:13:20.123456Z
  job->set_start_time_us(0);                  // not yet
  job->set_attempt(3);
  absl::StatusOr<std::string> json = ToJson(response);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"client_request_id\""));
  EXPECT_THAT(*json, HasSubstr("\"JOB_STATE_SUCCEEDED\""));
  EXPECT_EQ(json->back(), '\n');
  // Valid JSON (protobuf's strict parser reads it as a Struct), with the fields as expected.
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &parsed).ok()) << *json;
  const auto& fields = parsed.fields().at("jobs").list_value().values(0).struct_value().fields();
  EXPECT_EQ(fields.at("id").string_value(), "job-000001");
  EXPECT_EQ(fields.at("submit_time").string_value(), "2023-11-14T22:13:20.123456+00:00");
  EXPECT_EQ(fields.count("submit_time_us"), 0u);
  EXPECT_TRUE(fields.at("start_time").has_null_value());
  EXPECT_EQ(fields.at("attempt").string_value(), "3");  // int64 as proto3 JSON writes it
  const auto& labels = fields.at("spec").struct_value().fields().at("labels").struct_value();
  EXPECT_EQ(labels.fields().at("budget_us").string_value(), "1700000000000000");
  EXPECT_EQ(labels.fields().at("team").string_value(), "vision");
  // Fields keep the order of the .proto file.
  EXPECT_LT(json->find("\"id\""), json->find("\"spec\""));
  EXPECT_LT(json->find("\"spec\""), json->find("\"state\""));

  absl::StatusOr<std::string> line = ToJsonLine(response);
  ASSERT_TRUE(line.ok());
  EXPECT_EQ(line->find('\n'), std::string::npos);
  google::protobuf::Struct from_line;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*line, &from_line).ok()) << *line;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(from_line, parsed));

  // Metric points (watch -o json): "time" from time_us, metric names untouched.
  v1::WatchJobEvent event;
  event.mutable_metric_point()->set_time_us(1000000);
  (*event.mutable_metric_point()->mutable_values())["data_wait_us"] = 2.5;
  absl::StatusOr<std::string> point = ToJsonLine(event);
  ASSERT_TRUE(point.ok());
  EXPECT_THAT(*point, HasSubstr("\"time\":\"1970-01-01T00:00:01.000000+00:00\""));
  EXPECT_THAT(*point, HasSubstr("\"data_wait_us\":2.5"));
}

TEST(FormatTest, JobStateNames) {
  EXPECT_EQ(JobStateName(v1::JOB_STATE_RESTARTING), "RESTARTING");
  EXPECT_EQ(WorkerStateName(v1::WORKER_STATE_DRAINING), "DRAINING");
  EXPECT_EQ(*ParseJobState("running"), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(*ParseJobState("FAILED"), v1::JOB_STATE_FAILED);
  EXPECT_EQ(*ParseJobState("job_state_cancelled"), v1::JOB_STATE_CANCELLED);
  absl::StatusOr<v1::JobState> bad = ParseJobState("runing");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("'runing'"));
  EXPECT_FALSE(ParseJobState("unspecified").ok());
  EXPECT_TRUE(IsTerminal(v1::JOB_STATE_CANCELLED));
  EXPECT_FALSE(IsTerminal(v1::JOB_STATE_RESTARTING));
}

}  // namespace
}  // namespace peco::cli
