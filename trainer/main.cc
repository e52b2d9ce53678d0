// peco-train: runs one rank of one job, or exports a checkpoint.
//
//   peco-train tokenizer --config FILE.yaml [--resume DIR] [--output_dir DIR] [--set a.b=v]...
//   peco-train pretrain --config FILE.yaml [--resume DIR] [--output_dir DIR] [--set a.b=v]...
//   peco-train finetune --config FILE.yaml [--resume DIR] [--output_dir DIR] [--set a.b=v]...
//   peco-train linear_probe --config FILE.yaml [--resume DIR] [--output_dir DIR] [--set a.b=v]...
//   peco-train export --checkpoint DIR --out FILE.pt
//   (every job kind also takes --allowed_roots DIR[,DIR...], below)
//   peco-train validate --config FILE.yaml [--check_paths true|false] [--set a.b=v]...
//   peco-train validate --serve
//
// `validate` parses and checks a job config of any kind (its `kind:`) without training: exit 0
// after an `input` event per file or directory the job would read and a `valid` event; exit 2
// with an `error` event naming the field otherwise. `validate --serve` answers the same check
// for a stream of requests, one JSON line each on stdin and stdout (common/validation_protocol.h),
// so the coordinator pays LibTorch's start-up once per process, not once per submitted spec;
// both modes run CheckJobConfig() (trainer/tasks/config_check.h). `export` writes a checkpoint of
// any kind in its official PyTorch layout (tokenizer: taming VQModel names; pretrain and finetune:
// BEiT's `{'model': state_dict}`; linear_probe checkpoints are refused: no official layout holds a
// head on an intermediate block).
//
// `--allowed_roots DIR,...` (a worker passes its own, plus its work directory) confines a job to
// those directories on this machine: every path its config reads (CheckJobConfig's inputs, any
// kind and field) is resolved (symlinks, "..") and must lie under a resolved root, or the job
// exits 2 naming the field; the job then opens the resolved paths (common/path_roots.h).
//
// Progress goes to stdout as newline-delimited JSON events and to stderr as readable lines.
// Exit codes (common/trainer_protocol.h): 0 done (or stopped cleanly by SIGTERM with a final
// checkpoint), 2 bad usage or configuration (not worth retrying), 3 non-finite loss (not
// retried), 1 any other failure. The job kinds are the table of trainer/tasks/job_kinds.h.
#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config_reader.h"
#include "common/file_util.h"
#include "common/json_writer.h"
#include "common/line_io.h"
#include "common/path_roots.h"
#include "common/stack_dump.h"
#include "common/trainer_protocol.h"
#include "common/validation_protocol.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/progress.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/stop_signal.h"
#include "trainer/tasks/config_check.h"
#include "trainer/tasks/job_kinds.h"

namespace peco::trainer {
namespace {

// The command lines, one per job kind of the table, then export and validate.
std::string Usage() {
  std::string usage = "usage:\n";
  for (const JobKind& kind : JobKinds()) {
    absl::StrAppend(&usage, "  peco-train ", kind.name,
                    " --config FILE.yaml [--resume DIR] [--output_dir DIR] [--set key=value]...\n");
  }
  absl::StrAppend(
      &usage, "  peco-train export --checkpoint DIR --out FILE.pt\n",
      "  peco-train validate --config FILE.yaml [--check_paths true|false] [--set key=value]...\n",
      "  peco-train validate --serve   (requests and responses as JSON lines on stdin/stdout)\n");
  return usage;
}

int Fail(ProgressSink& progress, const absl::Status& status) {
  progress.Emit(ErrorEvent(status));
  progress.Log(absl::StrCat("error: ", status.message()));
  return trainer_protocol::ExitCodeFor(status);
}

// Parses `--name value` pairs; returns false on a malformed or unknown flag. Repeated `--set`
// flags are collected in `sets`.
bool ParseFlags(int argc, char** argv, const std::vector<std::string>& known,
                std::map<std::string, std::string>* flags, std::string* error,
                std::vector<std::string>* sets = nullptr) {
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) {
      *error = absl::StrCat("unexpected argument '", arg, "'");
      return false;
    }
    std::string name = arg.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = absl::StrCat("--", name, " needs a value");
      return false;
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      *error = absl::StrCat("unknown flag --", name);
      return false;
    }
    if (name == "set" && sets != nullptr) {
      sets->push_back(value);
    } else {
      (*flags)[name] = value;
    }
  }
  return true;
}

// Reads --config with the --set overrides applied (kept in checkpoints as the effective config).
absl::StatusOr<std::string> ReadConfigText(const std::string& path,
                                           const std::vector<std::string>& sets) {
  absl::StatusOr<std::string> text = peco::ReadFileToString(path);
  if (!text.ok()) return text.status();
  return peco::ApplyConfigOverrides(*text, sets);
}

// `text` with every input path of the job resolved and checked against `roots` (a comma-separated
// list): the config the job then runs opens only the resolved paths. InvalidArgument (NotFound
// for a missing path) naming the field otherwise.
absl::StatusOr<std::string> ConfineToRoots(const JobKind& kind, const std::string& text,
                                           const std::string& source, const std::string& roots) {
  const std::vector<std::string> allowed = absl::StrSplit(roots, ',', absl::SkipWhitespace());
  if (allowed.empty()) return absl::InvalidArgumentError("--allowed_roots: no directory given");
  absl::StatusOr<ConfigCheck> check = kind.check(text, source, /*check_paths=*/false, nullptr);
  if (!check.ok()) return check.status();
  std::vector<std::string> resolved_paths;
  for (const auto& [field, path] : check->inputs) {
    absl::StatusOr<std::string> resolved = peco::ResolvePathUnderRoots(field, path, allowed);
    if (!resolved.ok()) {
      return absl::Status(resolved.status().code(),
                          absl::StrCat("--allowed_roots: ", resolved.status().message()));
    }
    if (*resolved != path) resolved_paths.push_back(absl::StrCat(field, "=", *resolved));
  }
  return peco::ApplyConfigOverrides(text, resolved_paths);
}

// `peco-train <kind>`: parses flags and the config, then runs one rank of the job.
int RunJob(const JobKind& kind, int argc, char** argv, ProgressSink& progress) {
  std::map<std::string, std::string> flags;
  std::string error;
  std::vector<std::string> sets;
  if (!ParseFlags(argc, argv, {"config", "resume", "output_dir", "set", "allowed_roots"}, &flags,
                  &error, &sets) ||
      flags.count("config") == 0) {
    std::cerr << (error.empty() ? "--config is required" : error) << "\n" << Usage();
    return trainer_protocol::kExitInvalidConfig;
  }
  absl::StatusOr<std::string> text = ReadConfigText(flags["config"], sets);
  if (!text.ok()) return Fail(progress, text.status());
  if (flags.count("allowed_roots") != 0) {
    text = ConfineToRoots(kind, *text, flags["config"], flags["allowed_roots"]);
    if (!text.ok()) return Fail(progress, text.status());
  }
  InstallStopSignalHandlers();
  absl::Status status =
      kind.run(*text, flags["config"], {flags["output_dir"], flags["resume"]}, &progress);
  if (!status.ok()) return Fail(progress, status);
  return trainer_protocol::kExitOk;
}

int RunExport(int argc, char** argv, ProgressSink& progress) {
  std::map<std::string, std::string> flags;
  std::string error;
  if (!ParseFlags(argc, argv, {"checkpoint", "out"}, &flags, &error) ||
      flags.count("checkpoint") == 0 || flags.count("out") == 0) {
    std::cerr << (error.empty() ? "--checkpoint and --out are required" : error) << "\n" << Usage();
    return trainer_protocol::kExitInvalidConfig;
  }
  absl::StatusOr<RestoredCheckpoint> checkpoint = ResolveCheckpoint(flags["checkpoint"], &progress);
  if (!checkpoint.ok()) return Fail(progress, checkpoint.status());
  absl::StatusOr<std::string> kind = CheckpointKind(checkpoint->files, checkpoint->dir);
  if (!kind.ok()) return Fail(progress, kind.status());
  const JobKind* job_kind = FindJobKind(*kind);
  if (job_kind == nullptr) {
    return Fail(progress, absl::InvalidArgumentError(
                              absl::StrCat("--checkpoint: ", checkpoint->dir, " holds a '", *kind,
                                           "' checkpoint, which export does not handle")));
  }
  absl::StatusOr<ExportSummary> exported =
      job_kind->export_checkpoint(checkpoint->dir, flags["out"]);
  if (!exported.ok()) return Fail(progress, exported.status());
  const std::string& dir = exported->checkpoint_dir;
  const int64_t step = exported->step;
  const std::string& names = exported->key_names;
  JsonWriter event;
  event.Add("event", "exported")
      .Add("kind", *kind)
      .Add("checkpoint", dir)
      .Add("step", step)
      .Add("path", flags["out"]);
  progress.Emit(event);
  progress.Log(
      absl::StrCat("exported ", dir, " (step ", step, ") to ", flags["out"], " with ", names));
  return trainer_protocol::kExitOk;
}

// `peco-train validate --serve`: answers requests (common/validation_protocol.h), one JSON line
// per line of stdin, until end of file. Logs go to stderr; stdout carries only responses.
int ServeValidate() {
  ProgressSink log(/*machine_fd=*/2, /*human_fd=*/2);
  LineReader reader(/*fd=*/0, /*max_line_bytes=*/size_t{64} << 20);
  while (true) {
    absl::StatusOr<std::string> line = reader.ReadLine(absl::InfiniteFuture());
    if (absl::IsOutOfRange(line.status()))
      return trainer_protocol::kExitOk;  // the coordinator closed the channel
    if (!line.ok()) {
      log.Log(absl::StrCat("validate --serve: ", line.status().message()));
      return trainer_protocol::kExitFailure;
    }
    absl::StatusOr<ValidationRequest> request = ParseValidationRequest(*line);
    if (!request.ok()) {
      // No id to answer under: the client would take any answer for another request.
      log.Log(absl::StrCat("validate --serve: ", request.status().message()));
      return trainer_protocol::kExitInvalidConfig;
    }
    const std::string response =
        EncodeValidationResponse(AnswerValidationRequest(*request, &log)) + "\n";
    if (absl::Status written = WriteAllBefore(1, response, absl::InfiniteFuture()); !written.ok()) {
      log.Log(absl::StrCat("validate --serve: ", written.message()));
      return trainer_protocol::kExitFailure;
    }
  }
}

int RunValidate(int argc, char** argv, ProgressSink& progress) {
  if (argc == 3 && std::strcmp(argv[2], "--serve") == 0) return ServeValidate();
  std::map<std::string, std::string> flags;
  std::string error;
  std::vector<std::string> sets;
  if (!ParseFlags(argc, argv, {"config", "check_paths", "set"}, &flags, &error, &sets) ||
      flags.count("config") == 0) {
    std::cerr << (error.empty() ? "--config is required" : error) << "\n" << Usage();
    return trainer_protocol::kExitInvalidConfig;
  }
  bool check_paths = true;
  if (flags.count("check_paths") > 0) {
    const std::string& value = flags["check_paths"];
    if (value != "true" && value != "false") {
      std::cerr << "--check_paths: expected true or false, got '" << value << "'\n";
      return trainer_protocol::kExitInvalidConfig;
    }
    check_paths = value == "true";
  }
  absl::StatusOr<std::string> text = ReadConfigText(flags["config"], sets);
  if (!text.ok()) return Fail(progress, text.status());
  absl::StatusOr<ConfigCheck> check =
      CheckJobConfig(*text, flags["config"], check_paths, &progress);
  if (!check.ok()) return Fail(progress, check.status());
  for (const auto& [field, path] : check->inputs) {
    JsonWriter event;
    event.Add("event", "input").Add("field", field).Add("path", path);
    progress.Emit(event);
  }
  JsonWriter event;
  event.Add("event", "valid").Add("kind", check->kind).Add("max_steps", check->max_steps);
  progress.Emit(event);
  return trainer_protocol::kExitOk;
}

}  // namespace
}  // namespace peco::trainer

int main(int argc, char** argv) {
  using namespace peco::trainer;
  ConfigureOpenMpWait(argv);
  peco::InstallStackDumpOnSigquit(argv[0]);  // the worker asks a stalled trainer for its stacks
  ProgressSink progress;
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    std::cerr << Usage();
    return argc < 2 ? peco::trainer_protocol::kExitInvalidConfig : peco::trainer_protocol::kExitOk;
  }
  const std::string command = argv[1];
  if (const JobKind* kind = FindJobKind(command)) return RunJob(*kind, argc, argv, progress);
  if (command == "export") return RunExport(argc, argv, progress);
  if (command == "validate") return RunValidate(argc, argv, progress);
  std::cerr << "unknown command '" << command << "'\n" << Usage();
  return peco::trainer_protocol::kExitInvalidConfig;
}
