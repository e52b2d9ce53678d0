// Output of the CLI: aligned tables and human-readable values for people, protobuf JSON for
// scripts (`-o json`).
//
// Tables are plain text: a header row in capitals, columns separated by two spaces, each column
// as wide as its widest cell, no trailing spaces. Missing values are "-".
//
// Times are microseconds since the Unix epoch as in the protos (0 = unset). Functions that show
// ages take `now` so their output is reproducible in tests.
//
// Thread-safety: pure functions; a TextTable is not thread-safe.
#ifndef PECO_CLI_FORMAT_H_
#define PECO_CLI_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "peco/v1/job_service.pb.h"

namespace peco::cli {

// table: aligned columns for people; json: one document for scripts; name: only the ids the
// command lists (one per line), for shell pipelines.
enum class OutputFormat { kTable, kJson, kYaml, kName };

// Builds an aligned text table row by row.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);

  // Adds a row; missing cells are empty, extra cells are ignored.
  void AddRow(std::vector<std::string> cells);

  // Returns the table, one line per row (header first), each ending in '\n'.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// Returns a compact duration: "850ms", "42s", "3m05s", "2h07m", "3d04h". Negative durations
// are shown as "0s".
std::string HumanDuration(absl::Duration duration);

// Returns how long ago `time_us` was ("3m05s ago"), or "-" when unset.
std::string FormatAge(int64_t time_us, absl::Time now);

// Returns the local time "2024-05-01 14:03:07" for `time_us`, or "-" when unset.
std::string FormatTime(int64_t time_us);

// Returns bytes with a binary unit: "512 B", "1.5 KiB", "12.0 MiB", "3.25 GiB".
std::string FormatBytes(int64_t bytes);

// Returns "RUNNING" for JOB_STATE_RUNNING, "SUSPECT" for WORKER_STATE_SUSPECT.
std::string JobStateName(v1::JobState state);
std::string WorkerStateName(v1::WorkerState state);

// Parses a job state as users type it: "running", "RUNNING" or "JOB_STATE_RUNNING".
// InvalidArgument listing the valid names otherwise.
absl::StatusOr<v1::JobState> ParseJobState(absl::string_view text);

// True for SUCCEEDED, FAILED and CANCELLED.
bool IsTerminal(v1::JobState state);

// Returns `message` as one JSON document (field names as in the .proto files, default values
// included, timestamps as RFC 3339: cli/json_tree.h; indented), ending in '\n'. Internal when
// serialisation fails.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// Returns `message` as compact one-line JSON without a trailing newline (for NDJSON streams).
absl::StatusOr<std::string> ToJsonLine(const google::protobuf::Message& message);

// Returns `message` as one YAML document in block style: the same fields and values as ToJson
// (JSON's mapping of proto3), ending in '\n'. Internal when serialisation fails.
absl::StatusOr<std::string> ToYaml(const google::protobuf::Message& message);

// Table of jobs: ID, NAME, KIND, STATE, ATTEMPT, RESTARTS, PRIORITY, AGE (since submit),
// RUNTIME (start to end, or to now while running).
std::string FormatJobTable(const std::vector<v1::Job>& jobs, absl::Time now);

// What `peco get` shows around a job besides its own record.
struct JobRelations {
  // The jobs it depends on, the root of the pipeline first (tokenizer -> pretrain -> ...).
  std::vector<v1::Job> upstream;
  // The jobs that depend on it, level by level: [0] depend on it, [1] on those, ...
  std::vector<std::vector<v1::Job>> downstream;
  // Its committed checkpoints, oldest step first.
  std::vector<v1::CheckpointInfo> checkpoints;
};

// Details of one job: key/value lines (with `relations`, also its pipeline and checkpoints), then
// its attempts as a table (with each ended attempt's cause and reason).
std::string FormatJobDetails(const v1::GetJobResponse& response, absl::Time now,
                             const JobRelations* relations = nullptr);

// "job-000001 tokenizer SUCCEEDED -> [job-000002 pretrain RUNNING] -> job-000003 linear_probe
// WAITING": the whole pipeline, the job itself in brackets, jobs of one downstream level joined
// by " + ".
std::string FormatDependencyChain(const v1::Job& job, const JobRelations& relations);

// Table of checkpoints: ID, STEP, ATTEMPT, SIZE, FILES, FINAL, COMMITTED.
std::string FormatCheckpointTable(const std::vector<v1::CheckpointInfo>& checkpoints,
                                  absl::Time now);

// Table of workers: ID, HOST, STATE, GPUS (free/total), CPU SLOTS (free/total), PORTS,
// HEARTBEAT.
std::string FormatWorkerTable(const std::vector<v1::WorkerInfo>& workers, absl::Time now);

}  // namespace peco::cli

#endif  // PECO_CLI_FORMAT_H_
