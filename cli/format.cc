#include "cli/format.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/json_tree.h"
#include "cli/spec_file.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace peco::cli {
namespace {

constexpr v1::JobState kJobStates[] = {
    v1::JOB_STATE_QUEUED,  v1::JOB_STATE_WAITING,    v1::JOB_STATE_ASSIGNED,
    v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING, v1::JOB_STATE_SUCCEEDED,
    v1::JOB_STATE_FAILED,  v1::JOB_STATE_CANCELLED,
};

std::string StripPrefix(const std::string& name, absl::string_view prefix) {
  return absl::StartsWith(name, prefix) ? name.substr(prefix.size()) : name;
}

absl::Time FromMicros(int64_t time_us) { return absl::FromUnixMicros(time_us); }

std::string Or(const std::string& value, const std::string& fallback = "-") {
  return value.empty() ? fallback : value;
}

std::string Runtime(int64_t start_us, int64_t end_us, absl::Time now) {
  if (start_us <= 0) return "-";
  const absl::Time end = end_us > 0 ? FromMicros(end_us) : now;
  return HumanDuration(end - FromMicros(start_us));
}

std::string Dependency(const v1::Dependency& dependency) {
  switch (dependency.target_case()) {
    case v1::Dependency::kJobId:
      return absl::StrCat("job ", dependency.job_id());
    case v1::Dependency::kCheckpointId:
      return absl::StrCat("checkpoint ", dependency.checkpoint_id());
    default:
      return "-";
  }
}

std::string Restarts(const v1::Job& job) {
  if (!job.spec().has_max_restarts()) return absl::StrCat(job.restart_count());
  return absl::StrCat(job.restart_count(), "/", job.spec().max_restarts());
}

}  // namespace

TextTable::TextTable(std::vector<std::string> header) { rows_.push_back(std::move(header)); }

void TextTable::AddRow(std::vector<std::string> cells) {
  cells.resize(rows_.front().size());
  rows_.push_back(std::move(cells));
}

std::string TextTable::Render() const {
  std::vector<size_t> widths(rows_.front().size(), 0);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], std::max<size_t>(row[i].size(), 1));  // "" shows as "-"
    }
  }
  std::string out;
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      const std::string& cell = row[i].empty() ? std::string("-") : row[i];
      absl::StrAppend(&line, cell);
      if (i + 1 < row.size()) line.append(widths[i] - std::min(widths[i], cell.size()) + 2, ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

std::string HumanDuration(absl::Duration duration) {
  if (duration < absl::ZeroDuration()) duration = absl::ZeroDuration();
  if (duration < absl::Seconds(1)) {
    return absl::StrCat(absl::ToInt64Milliseconds(duration), "ms");
  }
  const int64_t seconds = absl::ToInt64Seconds(duration);
  if (seconds < 60) return absl::StrCat(seconds, "s");
  if (seconds < 3600) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  if (seconds < 86400) return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  return absl::StrFormat("%dd%02dh", seconds / 86400, seconds % 86400 / 3600);
}

std::string FormatAge(int64_t time_us, absl::Time now) {
  if (time_us <= 0) return "-";
  return absl::StrCat(HumanDuration(now - FromMicros(time_us)), " ago");
}

std::string FormatTime(int64_t time_us) {
  if (time_us <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", FromMicros(time_us), absl::LocalTimeZone());
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = -1;
  while (value >= 1024 && unit < 3) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat(value < 10 ? "%.2f %s" : "%.1f %s", value, kUnits[unit]);
}

std::string JobStateName(v1::JobState state) {
  return StripPrefix(v1::JobState_Name(state), "JOB_STATE_");
}

std::string WorkerStateName(v1::WorkerState state) {
  return StripPrefix(v1::WorkerState_Name(state), "WORKER_STATE_");
}

absl::StatusOr<v1::JobState> ParseJobState(absl::string_view text) {
  const std::string upper = StripPrefix(absl::AsciiStrToUpper(text), "JOB_STATE_");
  std::vector<std::string> names;
  for (v1::JobState state : kJobStates) {
    if (JobStateName(state) == upper) return state;
    names.push_back(absl::AsciiStrToLower(JobStateName(state)));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown job state '", text, "' (one of ", absl::StrJoin(names, ", "), ")"));
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  ASSIGN_OR_RETURN(YAML::Node tree, MessageTree(message));
  return TreeToJson(tree, /*indent=*/true) + "\n";
}

namespace {

// Marks every mapping and sequence below `node` for block style (a node read from JSON keeps the
// flow style it was written in).
void UseBlockStyle(YAML::Node node) {
  if (node.IsMap() || node.IsSequence()) {
    if (node.size() > 0) node.SetStyle(YAML::EmitterStyle::Block);
    for (auto it = node.begin(); it != node.end(); ++it) {
      UseBlockStyle(node.IsMap() ? it->second : *it);
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ToYaml(const google::protobuf::Message& message) {
  ASSIGN_OR_RETURN(YAML::Node node, MessageTree(message));
  try {
    UseBlockStyle(node);
    YAML::Emitter out;
    out << node;
    if (!out.good()) return absl::InternalError(absl::StrCat("YAML output: ", out.GetLastError()));
    return absl::StrCat(out.c_str(), "\n");
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("YAML output: ", e.what()));
  }
}

absl::StatusOr<std::string> ToJsonLine(const google::protobuf::Message& message) {
  ASSIGN_OR_RETURN(YAML::Node tree, MessageTree(message));
  return TreeToJson(tree, /*indent=*/false);
}

namespace {

// "120/300", "120" without a known total, "-" before the first step.
std::string Step(const v1::JobProgress& progress) {
  if (progress.time_us() == 0) return "-";
  if (progress.max_steps() > 0) return absl::StrCat(progress.step(), "/", progress.max_steps());
  return absl::StrCat(progress.step());
}

// "step 120/300, loss 0.1234, 25.3 img/s".
std::string Progress(const v1::JobProgress& progress) {
  if (progress.time_us() == 0) return "-";
  std::string text = absl::StrFormat("step %s, loss %.4f, %.1f img/s", Step(progress),
                                     progress.loss(), progress.images_per_second());
  if (auto it = progress.eval().find("eval_top1"); it != progress.eval().end()) {
    absl::StrAppendFormat(&text, ", eval top-1 %.2f%%", it->second);
  }
  // A readout job's k-NN beside its linear readout.
  if (auto it = progress.eval().find("eval_knn_top1"); it != progress.eval().end()) {
    absl::StrAppendFormat(&text, ", k-NN top-1 %.2f%%", it->second);
  }
  return text;
}

}  // namespace

std::string FormatJobTable(const std::vector<v1::Job>& jobs, absl::Time now) {
  TextTable table(
      {"ID", "NAME", "KIND", "STATE", "STEP", "ATTEMPT", "RESTARTS", "PRIORITY", "AGE", "RUNTIME"});
  for (const v1::Job& job : jobs) {
    table.AddRow({job.id(), job.spec().name(), JobKindName(job.spec().kind()),
                  JobStateName(job.state()), Step(job.progress()), absl::StrCat(job.attempt()),
                  Restarts(job), absl::StrCat(job.spec().priority()),
                  FormatAge(job.submit_time_us(), now),
                  Runtime(job.start_time_us(), job.end_time_us(), now)});
  }
  return table.Render();
}

std::string FormatDependencyChain(const v1::Job& job, const JobRelations& relations) {
  auto describe = [](const v1::Job& j) {
    return absl::StrCat(j.id(), " ", JobKindName(j.spec().kind()), " ", JobStateName(j.state()));
  };
  std::vector<std::string> parts;
  for (const v1::Job& up : relations.upstream) parts.push_back(describe(up));
  parts.push_back(absl::StrCat("[", describe(job), "]"));
  for (const std::vector<v1::Job>& level : relations.downstream) {
    std::vector<std::string> jobs;
    for (const v1::Job& down : level) jobs.push_back(describe(down));
    if (!jobs.empty()) parts.push_back(absl::StrJoin(jobs, " + "));
  }
  return absl::StrJoin(parts, " -> ");
}

std::string FormatJobDetails(const v1::GetJobResponse& response, absl::Time now,
                             const JobRelations* relations) {
  const v1::Job& job = response.job();
  const v1::JobSpec& spec = job.spec();
  std::vector<std::pair<std::string, std::string>> fields = {
      {"ID", job.id()},
      {"Name", spec.name()},
      {"Kind", JobKindName(spec.kind())},
      {"Owner", job.owner()},
      {"State", JobStateName(job.state())},
      {"Attempt", absl::StrCat(job.attempt())},
      {"Restarts", Restarts(job)},
      {"Priority", absl::StrCat(spec.priority())},
      {"World size", absl::StrCat(spec.world_size())},
      {"Devices/rank", absl::StrCat(spec.devices_per_rank().gpus(), " GPUs, ",
                                    spec.devices_per_rank().cpu_slots(), " CPU slots")},
      {"Depends on", Dependency(spec.depends_on())},
      {"Submitted", job.submit_time_us() > 0
                        ? absl::StrCat(FormatTime(job.submit_time_us()), " (",
                                       FormatAge(job.submit_time_us(), now), ")")
                        : "-"},
      {"Started", FormatTime(job.start_time_us())},
      {"Ended", FormatTime(job.end_time_us())},
      {"Runtime", Runtime(job.start_time_us(), job.end_time_us(), now)},
      {"Progress", Progress(job.progress())},
  };
  if (!spec.labels().empty()) {
    std::vector<std::pair<std::string, std::string>> labels(spec.labels().begin(),
                                                            spec.labels().end());
    std::sort(labels.begin(), labels.end());
    fields.emplace_back("Labels", absl::StrJoin(labels, ", ", absl::PairFormatter("=")));
  }
  if (!job.failure_reason().empty()) fields.emplace_back("Failure", job.failure_reason());
  // What the job reads from its dependency (the same for every attempt).
  if (response.attempts_size() > 0) {
    for (const v1::InputCheckpoint& input : response.attempts(0).inputs()) {
      fields.emplace_back("Input",
                          absl::StrCat(input.config_field(), " <- ", input.checkpoint_id()));
    }
  }
  if (!job.client_request_id().empty()) fields.emplace_back("Request id", job.client_request_id());
  if (relations != nullptr) {
    if (!relations->upstream.empty() || !relations->downstream.empty()) {
      fields.emplace_back("Pipeline", FormatDependencyChain(job, *relations));
    }
    const std::vector<v1::CheckpointInfo>& checkpoints = relations->checkpoints;
    if (checkpoints.empty()) {
      fields.emplace_back("Checkpoints", "none yet");
    } else {
      const v1::CheckpointInfo& newest = checkpoints.back();
      fields.emplace_back(
          "Checkpoints",
          absl::StrCat(checkpoints.size(), ", newest ", newest.id(), " (step ", newest.step(),
                       newest.final() ? ", final" : "", ", ", FormatBytes(newest.bytes()), ")"));
    }
  }

  size_t width = 0;
  for (const auto& [key, value] : fields) width = std::max(width, key.size());
  std::string out;
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&out, key, ":", std::string(width - key.size() + 2, ' '), Or(value), "\n");
  }
  if (response.attempts_size() > 0) {
    TextTable attempts(
        {"ATTEMPT", "STATE", "RESUMED FROM", "WORKERS", "STARTED", "RUNTIME", "CAUSE", "FAILURE"});
    for (const v1::Attempt& attempt : response.attempts()) {
      std::vector<std::string> workers;
      for (const v1::RankPlacement& placement : attempt.placements()) {
        workers.push_back(placement.worker_id());
      }
      attempts.AddRow({absl::StrCat(attempt.number()), JobStateName(attempt.state()),
                       attempt.resume_checkpoint_id().empty()
                           ? "-"
                           : absl::StrCat(attempt.resume_checkpoint_id(), " (step ",
                                          attempt.resume_step(), ")"),
                       absl::StrJoin(workers, ","), FormatTime(attempt.start_time_us()),
                       Runtime(attempt.start_time_us(), attempt.end_time_us(), now),
                       attempt.cause().empty() ? "-" : attempt.cause(), attempt.failure_reason()});
    }
    absl::StrAppend(&out, "\n", attempts.Render());
  }
  if (response.audit_size() > 0) {
    // Who changed the job, or tried to and was refused (the coordinator's audit log).
    TextTable audit({"TIME", "USER", "ACTION", "OUTCOME", "DETAIL"});
    for (const v1::AuditEntry& entry : response.audit()) {
      audit.AddRow({FormatTime(entry.time_us()), entry.actor(), entry.action(), entry.outcome(),
                    entry.detail().empty() ? "-" : entry.detail()});
    }
    absl::StrAppend(&out, "\n", audit.Render());
  }
  return out;
}

std::string FormatCheckpointTable(const std::vector<v1::CheckpointInfo>& checkpoints,
                                  absl::Time now) {
  TextTable table({"ID", "STEP", "ATTEMPT", "SIZE", "FILES", "FINAL", "COMMITTED"});
  for (const v1::CheckpointInfo& info : checkpoints) {
    table.AddRow({info.id(), absl::StrCat(info.step()), absl::StrCat(info.attempt()),
                  FormatBytes(info.bytes()), absl::StrCat(info.manifest_size()),
                  info.final() ? "yes" : "no", FormatAge(info.committed_time_us(), now)});
  }
  return table.Render();
}

std::string FormatWorkerTable(const std::vector<v1::WorkerInfo>& workers, absl::Time now) {
  TextTable table({"ID", "HOST", "STATE", "GPUS", "CPU SLOTS", "PORTS", "HEARTBEAT"});
  for (const v1::WorkerInfo& worker : workers) {
    table.AddRow(
        {worker.id(), worker.host(), WorkerStateName(worker.state()),
         absl::StrCat(worker.free_devices().gpus(), "/", worker.devices().gpus()),
         absl::StrCat(worker.free_devices().cpu_slots(), "/", worker.devices().cpu_slots()),
         worker.has_ports() ? absl::StrCat(worker.ports().first(), "-", worker.ports().last())
                            : "-",
         FormatAge(worker.last_heartbeat_us(), now)});
  }
  return table.Render();
}

}  // namespace peco::cli
