#include "cli/commands.h"

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <utility>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/args.h"
#include "cli/format.h"
#include "cli/log_printer.h"
#include "cli/preview.h"
#include "cli/run_record_export.h"
#include "cli/spec_file.h"
#include "cli/watch.h"
#include "common/checkpoint_receiver.h"
#include "common/config_reader.h"
#include "common/file_util.h"
#include "common/run_record_writer.h"
#include "common/status_macros.h"
#include "service/checkpoint_transfer.h"

namespace peco::cli {
namespace {

// One parsed invocation of a command.
class Invocation;
using Handler = int (*)(Invocation&);

struct Command {
  std::string name;
  std::string args;  // "FILE.yaml", "JOB", ...
  std::string summary;
  std::vector<FlagSpec> flags;
  size_t positional;  // exact number of positional arguments
  Handler run;
  // -o/--output names the file the command writes (`preview`) instead of the output format.
  bool output_is_file = false;
};

const std::vector<FlagSpec>& GlobalFlags() {
  static const auto* flags = new std::vector<FlagSpec>{
      {"coordinator", 0, "ADDR",
       "coordinator address (else $PECO_COORDINATOR, else "
       "<data_dir>/coordinator.addr)"},
      {"token", 0, "TOKEN", "user token (else $PECO_TOKEN, else <data_dir>/user.token)"},
      {"data_dir", 0, "DIR",
       "coordinator data directory (else $PECO_DATA_DIR, else ~/.local/share/peco)"},
      {"output", 'o', "FORMAT", "table (default), json, yaml, or name (ids only, one per line)"},
      {"timeout", 0, "DURATION", "deadline of each call (default 30s)"},
      {"tls_ca", 0, "FILE",
       "PEM CA certificates: connect over TLS and verify the coordinator (else $PECO_TLS_CA)"},
      {"tls_cert", 0, "FILE", "PEM client certificate for mutual TLS (else $PECO_TLS_CERT)"},
      {"tls_key", 0, "FILE", "PEM private key of --tls_cert (else $PECO_TLS_KEY)"},
      {"tls_server_name", 0, "NAME",
       "name expected in the coordinator's certificate when it differs from the address"},
  };
  return *flags;
}

class Invocation {
 public:
  Invocation(const CliContext& context, const Command& command, ParsedArgs args,
             OutputFormat format, absl::Duration timeout)
      : context_(context),
        command_(command),
        args_(std::move(args)),
        format_(format),
        timeout_(timeout) {}

  const ParsedArgs& args() const { return args_; }
  const std::string& positional(size_t i) const { return args_.positional.at(i); }
  // -o json or -o yaml: the response itself rather than text for people.
  bool json() const { return format_ == OutputFormat::kJson || format_ == OutputFormat::kYaml; }
  bool names() const { return format_ == OutputFormat::kName; }
  const CliContext& context() const { return context_; }
  std::ostream& out() const { return *context_.out; }
  absl::Time now() const { return context_.now(); }

  // The connection, created on first use.
  absl::StatusOr<Connection*> Connect() {
    if (connection_ == nullptr) {
      ConnectionFlags flags;
      flags.coordinator = args_.Last("coordinator");
      flags.token = args_.Last("token");
      flags.data_dir = args_.Last("data_dir");
      flags.tls_ca = args_.Last("tls_ca");
      flags.tls_cert = args_.Last("tls_cert");
      flags.tls_key = args_.Last("tls_key");
      flags.tls_server_name = args_.Last("tls_server_name");
      ASSIGN_OR_RETURN(Endpoint endpoint, ResolveEndpoint(flags, context_.env));
      ASSIGN_OR_RETURN(connection_, Connection::Create(endpoint, timeout_));
    }
    return connection_.get();
  }

  // Reports an error and returns kExitFailure.
  int Fail(const absl::Status& status) const {
    *context_.err << "peco " << command_.name << ": " << status.message() << "\n";
    return kExitFailure;
  }

  // Reports a usage error and returns kExitUsage.
  int UsageError(absl::string_view message) const {
    *context_.err << "peco " << command_.name << ": " << message << "\nRun 'peco " << command_.name
                  << " --help' for usage.\n";
    return kExitUsage;
  }

  // Writes `message` as JSON; returns kExitOk or the failure.
  // The response as JSON, or as YAML with -o yaml.
  int PrintJson(const google::protobuf::Message& message) const {
    absl::StatusOr<std::string> text =
        format_ == OutputFormat::kYaml ? ToYaml(message) : ToJson(message);
    if (!text.ok()) return Fail(text.status());
    out() << *text;
    return kExitOk;
  }
  // One event of a stream: a JSON line, or a YAML document ("---" first) with -o yaml.
  absl::StatusOr<std::string> EventText(const google::protobuf::Message& message) const {
    if (format_ != OutputFormat::kYaml) {
      absl::StatusOr<std::string> line = ToJsonLine(message);
      if (!line.ok()) return line.status();
      return absl::StrCat(*line, "\n");
    }
    absl::StatusOr<std::string> document = ToYaml(message);
    if (!document.ok()) return document.status();
    return absl::StrCat("---\n", *document);
  }

 private:
  const CliContext& context_;
  const Command& command_;
  const ParsedArgs args_;
  const OutputFormat format_;
  const absl::Duration timeout_;
  std::unique_ptr<Connection> connection_;
};

// Opens WatchJob on `job_id` with its history first; `call` (from conn.StreamContext()) must
// outlive the reader.
std::unique_ptr<grpc::ClientReaderInterface<v1::WatchJobEvent>> OpenWatch(
    Connection& conn, grpc::ClientContext* call, const std::string& job_id) {
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  request.set_include_history(true);
  return conn.stub()->WatchJob(call, request);
}

// Streams WatchJob until the job ends; reconnects after UNAVAILABLE. Returns the exit code.
int WatchUntilDone(Invocation& inv, const std::string& job_id) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  const CliContext& context = inv.context();
  WatchRenderer::Options options;
  options.tty = context.out_is_tty && !inv.json();
  options.columns = context.out_columns;
  WatchRenderer renderer(job_id, options);
  int failures = 0;
  while (!renderer.done()) {
    std::unique_ptr<grpc::ClientContext> call = (*conn)->StreamContext();
    std::unique_ptr<grpc::ClientReaderInterface<v1::WatchJobEvent>> reader =
        OpenWatch(**conn, call.get(), job_id);
    v1::WatchJobEvent event;
    // Read to the end of the stream: the coordinator ends it once the job is terminal, and a
    // terminal state in the history may be followed by a resume.
    while (reader->Read(&event)) {
      const int64_t before = renderer.events_consumed();
      const std::string text = renderer.Consume(event);
      // Only news counts as a working stream: a coordinator that replays the history and fails
      // again must not keep the watch reconnecting forever.
      if (renderer.events_consumed() > before) failures = 0;
      if (inv.json()) {
        if (renderer.events_consumed() == before) continue;  // a replayed duplicate
        absl::StatusOr<std::string> line = inv.EventText(event);
        if (!line.ok()) return inv.Fail(line.status());
        inv.out() << *line << std::flush;
      } else if (!text.empty()) {
        inv.out() << text << std::flush;
      }
    }
    const grpc::Status status = reader->Finish();
    if (renderer.done()) break;
    if (!inv.json()) inv.out() << renderer.Finish() << std::flush;
    if (status.ok()) {
      // The stream ended before a terminal state arrived (the coordinator shut down): ask.
      std::unique_ptr<grpc::ClientContext> get_call = (*conn)->UnaryContext();
      v1::GetJobRequest get;
      get.set_job_id(job_id);
      v1::GetJobResponse response;
      absl::Status get_status = (*conn)->ToStatus(
          (*conn)->stub()->GetJob(get_call.get(), get, &response), absl::StrCat("GetJob ", job_id));
      if (get_status.ok() && IsTerminal(response.job().state())) {
        v1::WatchJobEvent final_event;
        v1::JobStateChange* change = final_event.mutable_state_change();
        change->set_job_id(job_id);
        change->set_attempt(response.job().attempt());
        change->set_state(response.job().state());
        change->set_reason(response.job().failure_reason());
        change->set_time_us(response.job().end_time_us());
        const std::string text = renderer.Consume(final_event);
        if (inv.json()) {
          absl::StatusOr<std::string> line = inv.EventText(final_event);
          if (line.ok()) inv.out() << *line;
        } else {
          inv.out() << text;
        }
        break;
      }
      if (!get_status.ok() && !absl::IsUnavailable(get_status)) return inv.Fail(get_status);
    } else if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return inv.Fail((*conn)->ToStatus(status, absl::StrCat("WatchJob ", job_id)));
    }
    if (++failures > context.max_reconnects) {
      return inv.Fail(
          (*conn)->ToStatus(status, absl::StrCat("WatchJob ", job_id, " (gave up after ",
                                                 context.max_reconnects, " reconnects)")));
    }
    *context.err << "peco watch: lost the stream of " << job_id << " ("
                 << (status.ok() ? "ended early" : status.error_message()) << "); reconnecting\n";
    absl::SleepFor(context.reconnect_backoff);
  }
  if (!inv.json()) inv.out() << renderer.Finish() << std::flush;
  return renderer.progress().state == v1::JOB_STATE_SUCCEEDED ? kExitOk : kExitFailure;
}

int RunSubmit(Invocation& inv) {
  const std::string& path = inv.positional(0);
  std::vector<std::string> overrides = inv.args().All("set");
  absl::StatusOr<v1::JobSpec> spec = ReadJobSpecFile(path, overrides);
  if (!spec.ok()) {
    if (absl::IsInvalidArgument(spec.status()) || absl::IsNotFound(spec.status())) {
      return inv.UsageError(spec.status().message());
    }
    return inv.Fail(spec.status());
  }
  if (inv.args().Has("name")) {
    const std::string name = inv.args().Last("name");
    if (name.empty()) return inv.UsageError("--name: expected a non-empty name");
    spec->set_name(name);
  }
  if (inv.args().Has("after")) {
    const std::string after = inv.args().Last("after");
    if (after.empty()) return inv.UsageError("--after: expected a job id");
    spec->mutable_depends_on()->set_job_id(after);
  }
  if (inv.args().Has("priority")) {
    absl::StatusOr<int64_t> priority =
        ParseIntFlag("--priority", inv.args().Last("priority"), INT32_MIN, INT32_MAX);
    if (!priority.ok()) return inv.UsageError(priority.status().message());
    spec->set_priority(static_cast<int32_t>(*priority));
  }

  // One id per invocation (or the user's --request_id): retries of this call, here and in
  // gRPC, and the coordinator's idempotent SubmitJob, then can never create two jobs.
  v1::SubmitJobRequest request;
  const std::string request_id =
      inv.args().Has("request_id") ? inv.args().Last("request_id") : NewClientRequestId();
  if (request_id.empty()) return inv.UsageError("--request_id: expected a non-empty id");
  request.set_client_request_id(request_id);
  *request.mutable_spec() = *std::move(spec);
  if (inv.args().Has("print_request")) return inv.PrintJson(request);
  request.set_validate_only(inv.args().Has("dry_run"));

  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  // An answer lost on the way back (UNAVAILABLE, DEADLINE_EXCEEDED) may hide a job the
  // coordinator created: ask again with the same request id, which returns that job.
  constexpr int kSubmitAttempts = 5;
  absl::Duration backoff = absl::Milliseconds(250);
  v1::SubmitJobResponse response;
  absl::Status status;
  for (int attempt = 1;; ++attempt) {
    std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
    response.Clear();
    status = (*conn)->ToStatus((*conn)->stub()->SubmitJob(call.get(), request, &response),
                               absl::StrCat("SubmitJob ", path));
    const bool answer_lost = absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status);
    if (status.ok() || !answer_lost || attempt == kSubmitAttempts) break;
    *inv.context().err << "peco submit: " << status.message()
                       << "; asking again with the same request id " << request_id << "\n";
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(4));
  }
  if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status)) {
    return inv.Fail(absl::Status(
        status.code(), absl::StrCat(status.message(),
                                    "; the job may have been created: the same command with "
                                    "--request_id ",
                                    request_id, " returns it without creating a second one")));
  }
  if (!status.ok()) return inv.Fail(status);
  if (request.validate_only()) {
    if (!response.job().id().empty()) {
      // A coordinator older than validate_only ignores it and creates the job.
      return inv.Fail(absl::FailedPreconditionError(absl::StrCat(
          "the coordinator does not support --dry-run and created ", response.job().id(),
          "; cancel it with `peco cancel ", response.job().id(), "`")));
    }
    if (inv.json()) return inv.PrintJson(response);
    const v1::JobSpec& checked = response.job().spec();
    inv.out() << "valid: " << checked.name() << " (" << JobKindName(checked.kind()) << ", "
              << checked.world_size() << (checked.world_size() == 1 ? " rank" : " ranks")
              << ") passed the coordinator's checks; nothing was submitted\n";
    return kExitOk;
  }
  if (inv.json()) {
    if (int code = inv.PrintJson(response); code != kExitOk) return code;
  } else if (inv.names()) {
    inv.out() << response.job().id() << "\n" << std::flush;
  } else {
    const v1::Job& job = response.job();
    inv.out() << (response.created() ? "submitted " : "already submitted (same request): ")
              << job.id() << " (" << job.spec().name() << ", " << JobKindName(job.spec().kind())
              << ", " << JobStateName(job.state()) << ")\n";
  }
  if (!inv.args().Has("watch")) return kExitOk;
  return WatchUntilDone(inv, response.job().id());
}

int RunList(Invocation& inv) {
  v1::ListJobsRequest request;
  for (const std::string& value : inv.args().All("state")) {
    for (absl::string_view item : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      absl::StatusOr<v1::JobState> state = ParseJobState(item);
      if (!state.ok()) return inv.UsageError(absl::StrCat("--state: ", state.status().message()));
      request.add_states(*state);
    }
  }
  for (const std::string& label : inv.args().All("label")) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      return inv.UsageError(absl::StrCat("--label: expected KEY=VALUE, got '", label, "'"));
    }
    const std::string key = label.substr(0, eq);
    if (request.labels().count(key) > 0) {
      return inv.UsageError(absl::StrCat("--label: ", key, " given more than once"));
    }
    (*request.mutable_labels())[key] = label.substr(eq + 1);
  }
  if (inv.args().Has("depends_on")) {
    request.set_depends_on_job_id(inv.args().Last("depends_on"));
    if (request.depends_on_job_id().empty())
      return inv.UsageError("--depends-on: expected a job id");
  }
  int64_t limit = 0;  // 0 = all
  if (inv.args().Has("limit")) {
    absl::StatusOr<int64_t> parsed = ParseIntFlag("--limit", inv.args().Last("limit"), 1, 1000000);
    if (!parsed.ok()) return inv.UsageError(parsed.status().message());
    limit = *parsed;
  }
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());

  v1::ListJobsResponse all;
  std::string token;
  int pages = 0;
  bool more = false;  // jobs past --limit exist
  do {
    if (limit > 0) {
      request.set_page_size(static_cast<int32_t>(std::min<int64_t>(limit - all.jobs_size(), 500)));
    }
    request.set_page_token(token);
    std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
    v1::ListJobsResponse page;
    absl::Status status = (*conn)->ToStatus((*conn)->stub()->ListJobs(call.get(), request, &page),
                                            absl::StrCat("ListJobs page ", pages + 1));
    if (!status.ok()) return inv.Fail(status);
    ++pages;
    bool truncated = false;  // a page went past --limit
    for (v1::Job& job : *page.mutable_jobs()) {
      if (limit > 0 && all.jobs_size() >= limit) {
        truncated = true;
        break;
      }
      *all.add_jobs() = std::move(job);
    }
    if (!page.next_page_token().empty() && page.next_page_token() == token) {
      return inv.Fail(absl::InternalError(
          absl::StrCat("ListJobs returned page token '", token, "' twice; stopping")));
    }
    token = page.next_page_token();
    more = truncated || !token.empty();
    // The token continues after the whole page: it is only exact when nothing was dropped.
    if (truncated) token.clear();
  } while (!token.empty() && (limit == 0 || all.jobs_size() < limit));
  // With --limit, scripts get the token to continue from (when the server honoured page_size).
  all.set_next_page_token(token);

  if (more) *inv.context().err << "(more jobs: raise --limit to see them)\n";
  if (inv.json()) return inv.PrintJson(all);
  if (inv.names()) {
    for (const v1::Job& job : all.jobs()) inv.out() << job.id() << "\n";
    return kExitOk;
  }
  std::vector<v1::Job> jobs(all.jobs().begin(), all.jobs().end());
  if (jobs.empty()) {
    inv.out() << "no jobs\n";
  } else {
    inv.out() << FormatJobTable(jobs, inv.now());
  }
  return kExitOk;
}

// Every job `request`'s filters select, page by page.
absl::StatusOr<std::vector<v1::Job>> AllJobs(Connection& conn, v1::ListJobsRequest request) {
  std::vector<v1::Job> jobs;
  request.set_page_size(500);
  do {
    std::unique_ptr<grpc::ClientContext> call = conn.UnaryContext();
    v1::ListJobsResponse page;
    RETURN_IF_ERROR(conn.ToStatus(conn.stub()->ListJobs(call.get(), request, &page), "ListJobs"));
    for (v1::Job& job : *page.mutable_jobs()) jobs.push_back(std::move(job));
    request.set_page_token(page.next_page_token());
  } while (!request.page_token().empty());
  return jobs;
}

// The pipeline around `job` (its dependencies up to the root, its dependents level by level)
// and its checkpoints.
absl::StatusOr<JobRelations> GatherRelations(Connection& conn, const v1::Job& job) {
  constexpr int kMaxDepth = 64;  // ends a dependency cycle the coordinator would never allow
  JobRelations relations;
  std::string parent = job.spec().depends_on().job_id();
  while (!parent.empty() && relations.upstream.size() < kMaxDepth) {
    v1::GetJobRequest request;
    request.set_job_id(parent);
    v1::GetJobResponse response;
    std::unique_ptr<grpc::ClientContext> call = conn.UnaryContext();
    RETURN_IF_ERROR(conn.ToStatus(conn.stub()->GetJob(call.get(), request, &response),
                                  absl::StrCat("GetJob ", parent, " (a dependency)")));
    parent = response.job().spec().depends_on().job_id();
    relations.upstream.insert(relations.upstream.begin(), response.job());
  }
  // Dependents level by level, each level one filtered ListJobs per job (the store's index).
  std::set<std::string> level = {job.id()};
  for (int depth = 0; depth < kMaxDepth && !level.empty(); ++depth) {
    std::vector<v1::Job> next;
    std::set<std::string> ids;
    for (const std::string& id : level) {
      v1::ListJobsRequest dependents;
      dependents.set_depends_on_job_id(id);
      ASSIGN_OR_RETURN(std::vector<v1::Job> jobs, AllJobs(conn, dependents));
      for (v1::Job& candidate : jobs) {
        if (ids.insert(candidate.id()).second) next.push_back(std::move(candidate));
      }
    }
    if (next.empty()) break;
    relations.downstream.push_back(std::move(next));
    level = std::move(ids);
  }
  v1::ListCheckpointsRequest request;
  request.set_job_id(job.id());
  v1::ListCheckpointsResponse response;
  std::unique_ptr<grpc::ClientContext> call = conn.UnaryContext();
  RETURN_IF_ERROR(conn.ToStatus(conn.stub()->ListCheckpoints(call.get(), request, &response),
                                absl::StrCat("ListCheckpoints ", job.id())));
  relations.checkpoints.assign(response.checkpoints().begin(), response.checkpoints().end());
  return relations;
}

// One GetJob call; errors name the call and the job.
absl::StatusOr<v1::GetJobResponse> GetJob(Connection& conn, const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  v1::GetJobResponse response;
  std::unique_ptr<grpc::ClientContext> call = conn.UnaryContext();
  RETURN_IF_ERROR(conn.ToStatus(conn.stub()->GetJob(call.get(), request, &response),
                                absl::StrCat("GetJob ", job_id)));
  return response;
}

int RunGet(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  absl::StatusOr<v1::GetJobResponse> got = GetJob(**conn, inv.positional(0));
  if (!got.ok()) return inv.Fail(got.status());
  const v1::GetJobResponse& response = *got;
  if (inv.json()) return inv.PrintJson(response);
  absl::StatusOr<JobRelations> relations = GatherRelations(**conn, response.job());
  if (!relations.ok()) return inv.Fail(relations.status());
  inv.out() << FormatJobDetails(response, inv.now(), &*relations);
  return kExitOk;
}

int RunWatch(Invocation& inv) { return WatchUntilDone(inv, inv.positional(0)); }

// `peco tensorboard JOB DIR`: the job's history (and, for a job still running, its events until
// it ends) as a run record in DIR (cli/run_record_export.h).
int RunTensorboard(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  const std::string& job_id = inv.positional(0);
  const std::string& dir = inv.positional(1);
  absl::StatusOr<v1::GetJobResponse> job = GetJob(**conn, job_id);
  if (!job.ok()) return inv.Fail(job.status());
  // The history is written whole each time: into a directory of its own, never twice.
  if (std::error_code ec; std::filesystem::exists(std::filesystem::path(dir) / kMetricsFile, ec)) {
    return inv.UsageError(absl::StrCat("DIR: ", dir, " already holds a run record (", kMetricsFile,
                                       "); choose a new directory"));
  }
  absl::StatusOr<std::unique_ptr<RunRecordWriter>> writer = RunRecordWriter::Open(dir, inv.now());
  if (!writer.ok()) return inv.Fail(writer.status());
  RunRecordExporter exporter(writer->get());
  absl::Status status = exporter.AddJob(job->job());
  if (!status.ok()) return inv.Fail(status);
  std::unique_ptr<grpc::ClientContext> call = (*conn)->StreamContext();
  std::unique_ptr<grpc::ClientReaderInterface<v1::WatchJobEvent>> reader =
      OpenWatch(**conn, call.get(), job_id);
  v1::WatchJobEvent event;
  while (reader->Read(&event)) {
    status = exporter.Consume(event);
    if (!status.ok()) {
      call->TryCancel();
      reader->Finish();
      return inv.Fail(status);
    }
  }
  status = (*conn)->ToStatus(reader->Finish(), absl::StrCat("WatchJob ", job_id));
  if (!status.ok()) return inv.Fail(status);
  inv.out() << "wrote " << exporter.points() << " metric points of " << job_id << " to "
            << (*writer)->event_path() << " and " << (*writer)->metrics_path() << "\n";
  return kExitOk;
}

int RunLogs(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::StreamLogsRequest request;
  request.set_job_id(inv.positional(0));
  request.set_follow(inv.args().Has("follow"));
  if (inv.args().Has("attempt")) {
    absl::StatusOr<int64_t> attempt =
        ParseIntFlag("--attempt", inv.args().Last("attempt"), 1, int64_t{1} << 40);
    if (!attempt.ok()) return inv.UsageError(attempt.status().message());
    request.set_attempt(*attempt);
  }
  for (const std::string& text : inv.args().All("rank")) {
    absl::StatusOr<int64_t> rank = ParseIntFlag("--rank", text, 0, 1 << 20);
    if (!rank.ok()) return inv.UsageError(rank.status().message());
    request.add_ranks(static_cast<int32_t>(*rank));
  }
  std::unique_ptr<grpc::ClientContext> call = (*conn)->StreamContext();
  std::unique_ptr<grpc::ClientReaderInterface<v1::StreamLogsResponse>> reader =
      (*conn)->stub()->StreamLogs(call.get(), request);
  LogPrinter printer(&inv.out());
  v1::StreamLogsResponse piece;
  while (reader->Read(&piece)) printer.Print(piece.attempt(), piece.rank(), piece.data());
  absl::Status status =
      (*conn)->ToStatus(reader->Finish(), absl::StrCat("StreamLogs ", request.job_id()));
  if (!status.ok()) return inv.Fail(status);
  if (!printer.printed_any()) {
    *inv.context().err << "peco logs: no log lines from " << request.job_id()
                       << (request.follow() ? "" : " yet (-f waits for them)") << "\n";
  }
  return kExitOk;
}

int RunCancel(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::CancelJobRequest request;
  request.set_job_id(inv.positional(0));
  request.set_reason(inv.args().Last("reason", "cancelled with peco cancel"));
  v1::CancelJobResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status =
      (*conn)->ToStatus((*conn)->stub()->CancelJob(call.get(), request, &response),
                        absl::StrCat("CancelJob ", request.job_id()));
  if (!status.ok()) return inv.Fail(status);
  if (inv.json()) return inv.PrintJson(response);
  const v1::Job& job = response.job();
  if (IsTerminal(job.state())) {
    inv.out() << job.id() << " " << JobStateName(job.state()) << "\n";
  } else {
    inv.out() << job.id() << " cancelling (" << JobStateName(job.state())
              << "): trainers write a final checkpoint and stop\n";
  }
  return kExitOk;
}

int RunResume(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::ResumeJobRequest request;
  request.set_job_id(inv.positional(0));
  request.set_checkpoint_id(inv.args().Last("checkpoint"));
  for (const std::string& entry : inv.args().All("set")) request.add_config_overrides(entry);
  v1::ResumeJobResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status =
      (*conn)->ToStatus((*conn)->stub()->ResumeJob(call.get(), request, &response),
                        absl::StrCat("ResumeJob ", request.job_id()));
  if (!status.ok()) return inv.Fail(status);
  if (inv.json()) return inv.PrintJson(response);
  inv.out() << response.job().id() << " resuming from "
            << (request.checkpoint_id().empty() ? "its latest checkpoint" : request.checkpoint_id())
            << " (" << JobStateName(response.job().state()) << ")\n";
  return kExitOk;
}

// `peco fork JOB`: a new job of JOB's spec (its trainer config with --set applied) that starts
// from JOB's checkpoint (JobSpec.init_from).
int RunFork(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  const std::string& job_id = inv.positional(0);
  absl::StatusOr<v1::GetJobResponse> source = GetJob(**conn, job_id);
  if (!source.ok()) return inv.Fail(source.status());
  v1::SubmitJobRequest request;
  request.set_client_request_id(NewClientRequestId());
  v1::JobSpec* spec = request.mutable_spec();
  *spec = source->job().spec();
  absl::StatusOr<std::string> config =
      ApplyConfigOverrides(spec->config_yaml(), inv.args().All("set"));
  if (!config.ok()) return inv.UsageError(absl::StrCat("--set: ", config.status().message()));
  spec->set_config_yaml(*config);
  spec->set_name(inv.args().Has("name") ? inv.args().Last("name")
                                        : absl::StrCat(source->job().spec().name(), "-fork"));
  if (spec->name().empty()) return inv.UsageError("--name: expected a non-empty name");
  if (inv.args().Has("checkpoint")) {
    spec->mutable_init_from()->set_checkpoint_id(inv.args().Last("checkpoint"));
  } else {
    spec->mutable_init_from()->set_job_id(job_id);
  }
  v1::SubmitJobResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status =
      (*conn)->ToStatus((*conn)->stub()->SubmitJob(call.get(), request, &response),
                        absl::StrCat("SubmitJob (fork of ", job_id, ")"));
  if (!status.ok()) return inv.Fail(status);
  if (response.job().spec().init_from().checkpoint_id().empty()) {
    // A coordinator older than init_from ignores it: the job would train from scratch.
    return inv.Fail(absl::FailedPreconditionError(
        absl::StrCat("the coordinator does not support forks and created ", response.job().id(),
                     " as a fresh job; cancel it with `peco cancel ", response.job().id(), "`")));
  }
  if (inv.json()) {
    if (int code = inv.PrintJson(response); code != kExitOk) return code;
  } else if (inv.names()) {
    inv.out() << response.job().id() << "\n" << std::flush;
  } else {
    inv.out() << "forked " << job_id << " at " << response.job().spec().init_from().checkpoint_id()
              << " as " << response.job().id() << " (" << response.job().spec().name() << ", "
              << JobStateName(response.job().state()) << ")\n";
  }
  if (!inv.args().Has("watch")) return kExitOk;
  return WatchUntilDone(inv, response.job().id());
}

int RunCheckpoints(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::ListCheckpointsRequest request;
  request.set_job_id(inv.positional(0));
  v1::ListCheckpointsResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status =
      (*conn)->ToStatus((*conn)->stub()->ListCheckpoints(call.get(), request, &response),
                        absl::StrCat("ListCheckpoints ", request.job_id()));
  if (!status.ok()) return inv.Fail(status);
  if (inv.json()) return inv.PrintJson(response);
  if (inv.names()) {
    // Ordered by step: the last line is the newest checkpoint.
    for (const v1::CheckpointInfo& info : response.checkpoints()) inv.out() << info.id() << "\n";
    return kExitOk;
  }
  if (response.checkpoints().empty()) {
    inv.out() << "no checkpoints for " << request.job_id() << "\n";
    return kExitOk;
  }
  inv.out() << FormatCheckpointTable({response.checkpoints().begin(), response.checkpoints().end()},
                                     inv.now());
  return kExitOk;
}

// Receives the stream into `dir`; returns the checkpoint's info once committed.
absl::StatusOr<v1::CheckpointInfo> Download(Connection& conn, const std::string& checkpoint_id,
                                            const std::string& dir) {
  const std::string what = absl::StrCat("DownloadCheckpoint ", checkpoint_id);
  std::unique_ptr<grpc::ClientContext> call = conn.StreamContext();
  v1::DownloadCheckpointRequest request;
  request.set_checkpoint_id(checkpoint_id);
  std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>> reader =
      conn.stub()->DownloadCheckpoint(call.get(), request);
  // Ends the call early on a local error (the server stops sending).
  auto abandon = [&](absl::Status status) {
    call->TryCancel();
    reader->Finish();
    return status;
  };
  v1::DownloadCheckpointResponse message;
  if (!reader->Read(&message)) {
    RETURN_IF_ERROR(conn.ToStatus(reader->Finish(), what));
    return absl::DataLossError(absl::StrCat(what, ": the stream ended before the checkpoint info"));
  }
  if (!message.has_info()) {
    return abandon(absl::DataLossError(absl::StrCat(what,
                                                    ": the stream did not start with the "
                                                    "checkpoint info")));
  }
  const v1::CheckpointInfo info = message.info();
  absl::StatusOr<std::unique_ptr<CheckpointReceiver>> download = service::StartDownload(info, dir);
  if (!download.ok()) return abandon(download.status());
  while (reader->Read(&message)) {
    if (!message.has_chunk()) {
      return abandon(absl::DataLossError(absl::StrCat(what, ": a second checkpoint info")));
    }
    absl::Status status = service::AppendChunk(**download, message.chunk());
    if (!status.ok())
      return abandon(absl::Status(status.code(), absl::StrCat(what, ": ", status.message())));
  }
  RETURN_IF_ERROR(conn.ToStatus(reader->Finish(), what));
  absl::Status status = service::FinishDownload(**download, dir);
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(what, ": ", status.message(),
                                                    " (nothing was written to ", dir, ")"));
  }
  return info;
}

int RunDownload(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  const std::string& checkpoint_id = inv.positional(0);
  const std::string& dir = inv.positional(1);
  absl::StatusOr<v1::CheckpointInfo> info = Download(**conn, checkpoint_id, dir);
  if (!info.ok()) return inv.Fail(info.status());
  if (inv.json()) return inv.PrintJson(*info);
  int64_t bytes = 0;
  for (const v1::ManifestEntry& entry : info->manifest()) bytes += entry.size();
  inv.out() << "downloaded " << checkpoint_id << " (step " << info->step() << ", "
            << info->manifest_size() << " files, " << FormatBytes(bytes)
            << ", SHA-256 verified) to " << dir << "\n";
  return kExitOk;
}

// Receives one checkpoint's preview.png into memory and checks it against the manifest.
absl::StatusOr<std::string> FetchPreview(Connection& conn, const v1::CheckpointInfo& checkpoint) {
  const std::string what = absl::StrCat("DownloadCheckpoint ", checkpoint.id());
  std::unique_ptr<grpc::ClientContext> call = conn.StreamContext();
  v1::DownloadCheckpointRequest request;
  request.set_checkpoint_id(checkpoint.id());
  request.add_files(kPreviewFileName);
  std::unique_ptr<grpc::ClientReaderInterface<v1::DownloadCheckpointResponse>> reader =
      conn.stub()->DownloadCheckpoint(call.get(), request);
  v1::DownloadCheckpointResponse message;
  v1::CheckpointInfo info;
  std::string bytes;
  while (reader->Read(&message)) {
    if (message.has_info()) {
      info = message.info();
    } else if (message.chunk().file_name() == kPreviewFileName &&
               message.chunk().offset() == static_cast<int64_t>(bytes.size())) {
      bytes += message.chunk().data();
    } else {
      call->TryCancel();
      reader->Finish();
      return absl::DataLossError(absl::StrCat(what, ": unexpected chunk of '",
                                              message.chunk().file_name(), "' at offset ",
                                              message.chunk().offset()));
    }
  }
  RETURN_IF_ERROR(conn.ToStatus(reader->Finish(), what));
  RETURN_IF_ERROR(VerifyPreview(info, bytes));
  return bytes;
}

int RunPreview(Invocation& inv) {
  const std::string& job_id = inv.positional(0);
  const std::string file = inv.args().Last("output");
  if (file.empty()) return inv.UsageError("-o FILE.png: where to write the picture (required)");
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::ListCheckpointsRequest request;
  request.set_job_id(job_id);
  v1::ListCheckpointsResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status =
      (*conn)->ToStatus((*conn)->stub()->ListCheckpoints(call.get(), request, &response),
                        absl::StrCat("ListCheckpoints ", job_id));
  if (!status.ok()) return inv.Fail(status);
  absl::StatusOr<v1::CheckpointInfo> checkpoint = ChoosePreviewCheckpoint(
      job_id, {response.checkpoints().begin(), response.checkpoints().end()},
      inv.args().Last("checkpoint"));
  if (!checkpoint.ok()) return inv.Fail(checkpoint.status());
  absl::StatusOr<std::string> png = FetchPreview(**conn, *checkpoint);
  if (!png.ok()) return inv.Fail(png.status());
  status = WriteFileAtomic(file, *png);
  if (!status.ok())
    return inv.Fail(absl::Status(status.code(), absl::StrCat("-o ", file, ": ", status.message())));
  inv.out() << "wrote " << file << ": preview of " << job_id << " at step " << checkpoint->step()
            << " (checkpoint " << checkpoint->id() << ", " << FormatBytes(png->size()) << ")\n";
  return kExitOk;
}

int RunWorkers(Invocation& inv) {
  absl::StatusOr<Connection*> conn = inv.Connect();
  if (!conn.ok()) return inv.Fail(conn.status());
  v1::ListWorkersResponse response;
  std::unique_ptr<grpc::ClientContext> call = (*conn)->UnaryContext();
  absl::Status status = (*conn)->ToStatus(
      (*conn)->stub()->ListWorkers(call.get(), v1::ListWorkersRequest(), &response), "ListWorkers");
  if (!status.ok()) return inv.Fail(status);
  if (inv.json()) return inv.PrintJson(response);
  if (inv.names()) {
    for (const v1::WorkerInfo& worker : response.workers()) {
      if (worker.state() == v1::WORKER_STATE_ALIVE) inv.out() << worker.id() << "\n";
    }
    return kExitOk;
  }
  if (response.workers().empty()) {
    inv.out() << "no workers\n";
    return kExitOk;
  }
  inv.out() << FormatWorkerTable({response.workers().begin(), response.workers().end()}, inv.now());
  return kExitOk;
}

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"submit",
       "FILE.yaml",
       "submit a job from a spec file (docs/SERVICE.md)",
       {{"set", 0, "KEY=VALUE",
         "override a spec field before reading it (repeatable), "
         "e.g. --set train.max_steps=50 --set job.world_size=2"},
        {"name", 0, "NAME", "job name (default: job.name, else the file name)"},
        {"priority", 0, "P", "priority, higher runs first (default: job.priority, else 0)"},
        {"after", 0, "JOB",
         "run after JOB succeeds (job.depends_on.job_id); a pretrain job reads a tokenizer "
         "JOB's final checkpoint, an evaluation job a pretrain JOB's"},
        {"watch", 0, "", "watch the job after submitting; exit status as for watch"},
        {"request_id", 0, "ID",
         "idempotency key (default: a new random id); submitting again with the same ID "
         "returns the job it created instead of a second one"},
        {"dry_run", 0, "",
         "have the coordinator check the job as it would a submission (spec, trainer config, "
         "dependency, quota, cluster fit) and store nothing"},
        {"print_request", 0, "", "print the request as JSON instead of sending it"}},
       1,
       RunSubmit},
      {"list",
       "",
       "list jobs (every page)",
       {{"state", 0, "STATE",
         "only jobs in this state (repeatable or comma-separated): queued, "
         "waiting, assigned, running, restarting, succeeded, failed, "
         "cancelled"},
        {"label", 0, "KEY=VALUE", "only jobs with this label (repeatable: every one)"},
        {"depends_on", 0, "JOB",
         "only jobs that depend on JOB (on the job or one of its checkpoints)"},
        {"limit", 0, "N", "show at most N jobs (default: all)"}},
       0,
       RunList},
      {"get",
       "JOB",
       "show a job: its pipeline (dependencies and dependents), checkpoints, and attempts with "
       "why each ended",
       {},
       1,
       RunGet},
      {"watch",
       "JOB",
       "follow a job's progress until it ends; exit 0 if it SUCCEEDED, 1 if it FAILED or was "
       "CANCELLED",
       {},
       1,
       RunWatch},
      {"logs",
       "JOB",
       "print the trainers' logs of a job (every attempt and rank, as the workers forwarded "
       "them); a header names the attempt and rank whenever the source changes",
       {{"follow", 'f', "", "keep printing new lines until the job ends"},
        {"attempt", 0, "N", "only attempt N"},
        {"rank", 0, "R", "only rank R (repeatable)"}},
       1,
       RunLogs},
      {"cancel",
       "JOB",
       "cancel a job (trainers write a final checkpoint, then stop)",
       {{"reason", 0, "TEXT", "why, recorded with the job"}},
       1,
       RunCancel},
      {"resume",
       "JOB",
       "start a new attempt of a job from a committed checkpoint",
       {{"checkpoint", 0, "ID", "checkpoint to resume from (default: the latest)"},
        {"set", 0, "KEY=VALUE",
         "change the trainer config as the job continues (repeatable; train.*, optim.* and "
         "eval.* only), e.g. --set train.max_steps=2000 --set optim.lr=1e-4"}},
       1,
       RunResume},
      {"fork",
       "JOB",
       "submit a new job that continues JOB from its newest checkpoint (or --checkpoint), with "
       "JOB's spec and the --set changes",
       {{"checkpoint", 0, "ID", "start from this checkpoint of JOB (default: its newest)"},
        {"set", 0, "KEY=VALUE", "override a trainer config field of the copy (repeatable)"},
        {"name", 0, "NAME", "the new job's name (default: JOB's name with -fork)"},
        {"watch", 0, "", "watch the new job; exit status as for watch"}},
       1,
       RunFork},
      {"tensorboard",
       "JOB DIR",
       "write a job's metric history into DIR as TensorBoard event files and metrics.jsonl "
       "(follows a running job to its end)",
       {},
       2,
       RunTensorboard},
      {"checkpoints", "JOB", "list a job's committed checkpoints", {}, 1, RunCheckpoints},
      {"download",
       "CKPT DIR",
       "download a checkpoint into the new directory DIR, verifying every file's SHA-256",
       {},
       2,
       RunDownload},
      {"preview",
       "JOB",
       "save the picture of a job's newest checkpoint (tokenizer: inputs over reconstructions; "
       "pretrain: masked inputs, target tokens and predicted tokens decoded) into the PNG file "
       "given by -o FILE.png",
       {{"checkpoint", 0, "ID", "that checkpoint's picture (default: the newest that has one)"}},
       1,
       RunPreview,
       /*output_is_file=*/true},
      {"workers", "", "list the workers and their free devices", {}, 0, RunWorkers},
  };
  return *commands;
}

std::string MainUsage() {
  std::string out =
      "peco: submit and follow training jobs on a peco coordinator.\n\n"
      "Usage: peco [global flags] COMMAND [arguments] [flags]\n\nCommands:\n";
  size_t width = 0;
  for (const Command& command : Commands()) {
    width = std::max(width, command.name.size() + 1 + command.args.size());
  }
  for (const Command& command : Commands()) {
    const std::string left = absl::StrCat(command.name, " ", command.args);
    absl::StrAppend(&out, "  ", left, std::string(width - left.size() + 3, ' '), command.summary,
                    "\n");
  }
  absl::StrAppend(&out, "\nGlobal flags:\n", FlagHelp(GlobalFlags()),
                  "\nExit status: 0 ok, 1 a call or the watched job failed, 2 usage error.\n"
                  "Run 'peco COMMAND --help' for a command's flags.\n");
  return out;
}

std::string CommandUsage(const Command& command) {
  std::string out = absl::StrCat(
      "Usage: peco ", command.name, command.args.empty() ? "" : absl::StrCat(" ", command.args),
      command.flags.empty() ? "" : " [flags]", "\n\n", command.summary, "\n");
  if (!command.flags.empty()) absl::StrAppend(&out, "\nFlags:\n", FlagHelp(command.flags));
  absl::StrAppend(&out, "\nGlobal flags:\n", FlagHelp(GlobalFlags()));
  return out;
}

// Index of the command word in `args`, skipping global flags and their values; -1 when absent.
int FindCommand(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.empty() || arg[0] != '-') return static_cast<int>(i);
    if (arg == "--") return i + 1 < args.size() ? static_cast<int>(i) + 1 : -1;
    // A global flag without '=' (or an attached short value) takes the next argument.
    const bool attached = arg.find('=') != std::string::npos || (arg[1] != '-' && arg.size() > 2);
    if (arg == "-h" || arg == "--help" || attached) continue;
    for (const FlagSpec& spec : GlobalFlags()) {
      const bool matches =
          arg == absl::StrCat("--", spec.name) ||
          (spec.short_name != 0 && arg == absl::StrCat("-", std::string(1, spec.short_name)));
      if (matches && !spec.value_name.empty()) ++i;
    }
  }
  return -1;
}

}  // namespace

std::string NewClientRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  uint64_t high;
  uint64_t low;
  {
    absl::MutexLock lock(&mu);
    high = absl::Uniform<uint64_t>(*gen);
    low = absl::Uniform<uint64_t>(*gen);
  }
  high = (high & ~uint64_t{0xf000}) | uint64_t{0x4000};          // version 4
  low = (low & ~(uint64_t{0xc} << 60)) | (uint64_t{0x8} << 60);  // RFC 4122 variant
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", high >> 32, (high >> 16) & 0xffff,
                         high & 0xffff, low >> 48, low & 0xffffffffffffULL);
}

int RunCli(const std::vector<std::string>& args, const CliContext& context) {
  std::ostream& err = *context.err;
  const int index = FindCommand(args);
  if (index < 0) {
    for (const std::string& arg : args) {
      if (arg == "-h" || arg == "--help") {
        *context.out << MainUsage();
        return kExitOk;
      }
    }
    err << MainUsage();
    return kExitUsage;
  }
  const std::string& name = args[index];
  if (name == "help") {
    *context.out << MainUsage();
    return kExitOk;
  }
  const Command* command = nullptr;
  for (const Command& candidate : Commands()) {
    if (candidate.name == name) command = &candidate;
  }
  if (command == nullptr) {
    err << "peco: unknown command '" << name << "'\nRun 'peco --help' for the commands.\n";
    return kExitUsage;
  }

  std::vector<std::string> rest(args.begin(), args.begin() + index);
  rest.insert(rest.end(), args.begin() + index + 1, args.end());
  std::vector<FlagSpec> specs = GlobalFlags();
  specs.insert(specs.end(), command->flags.begin(), command->flags.end());
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(rest, specs);
  auto usage_error = [&](absl::string_view message) {
    err << "peco " << name << ": " << message << "\nRun 'peco " << name << " --help' for usage.\n";
    return kExitUsage;
  };
  if (!parsed.ok()) return usage_error(parsed.status().message());
  if (parsed->help) {
    *context.out << CommandUsage(*command);
    return kExitOk;
  }
  if (parsed->positional.size() < command->positional) {
    std::vector<std::string> names = absl::StrSplit(command->args, ' ');
    return usage_error(absl::StrCat("missing argument ", names[parsed->positional.size()]));
  }
  if (parsed->positional.size() > command->positional) {
    return usage_error(
        absl::StrCat("unexpected argument '", parsed->positional[command->positional], "'"));
  }
  for (const std::string& flag :
       {"coordinator", "token", "data_dir", "output", "timeout", "name", "priority", "limit",
        "reason", "checkpoint", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "request_id",
        "attempt", "depends_on"}) {
    if (parsed->All(flag).size() > 1) {
      return usage_error(absl::StrCat("--", flag, " given more than once"));
    }
  }
  OutputFormat format = OutputFormat::kTable;
  const std::string output = parsed->Last("output", "table");
  if (command->output_is_file) {
    // -o names the file the command writes; it prints a line for people.
  } else if (output == "json") {
    format = OutputFormat::kJson;
  } else if (output == "yaml") {
    format = OutputFormat::kYaml;
  } else if (output == "name") {
    format = OutputFormat::kName;
  } else if (output != "table") {
    return usage_error(
        absl::StrCat("-o/--output: expected table, json, yaml or name, got '", output, "'"));
  }
  absl::Duration timeout = absl::Seconds(30);
  if (parsed->Has("timeout")) {
    absl::StatusOr<absl::Duration> parsed_timeout =
        ParseDurationFlag("--timeout", parsed->Last("timeout"));
    if (!parsed_timeout.ok()) return usage_error(parsed_timeout.status().message());
    timeout = *parsed_timeout;
  }
  Invocation invocation(context, *command, *std::move(parsed), format, timeout);
  return command->run(invocation);
}

}  // namespace peco::cli
