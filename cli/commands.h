// The `peco` commands: argument handling, one JobService call (or stream) per command, and
// output. main.cc only gathers the process environment and calls RunCli.
//
//   peco [global flags] COMMAND [args] [flags]
//
//   submit FILE.yaml [--set k=v]... [--name N] [--priority P] [--watch]
//                    [--dry-run | --print-request]
//   list [--state S]... [--label K=V]... [--depends-on JOB] [--limit N]
//   get JOB
//   watch JOB
//   tensorboard JOB DIR                          (the metric history as a run record in DIR)
//   logs JOB [-f] [--attempt N] [--rank R]...
//   cancel JOB [--reason R]
//   resume JOB [--checkpoint ID] [--set k=v]...
//   fork JOB [--checkpoint ID] [--set k=v]... [--name N] [--watch]
//   checkpoints JOB
//   download CKPT DIR
//   preview JOB [--checkpoint ID] -o FILE.png   (here -o names the file written)
//   workers
//
// Global flags (accepted before or after the command): --coordinator ADDR, --token TOKEN,
// --data_dir DIR (discovery, see connection.h), -o/--output table|json, --timeout DURATION
// (deadline of each unary call, default 30s).
//
// Exit codes: kExitOk; kExitFailure when a call fails or a watched job ends FAILED or
// CANCELLED; kExitUsage for bad flags or arguments and for a spec file that does not parse.
// Errors go to the error stream as "peco COMMAND: message", naming the flag, field or job.
//
// Output: tables and messages for people; with `-o json` one JSON document per command (the
// response message, field names as in the .proto files except timestamps: `<x>_us` is printed
// as `<x>` in RFC 3339, cli/json_tree.h), except `watch` (and `submit --watch` after its
// response), which writes one JSON line per WatchJobEvent.
//
// Thread-safety: RunCli may run concurrently with itself when the contexts do not share
// streams.
#ifndef PECO_CLI_COMMANDS_H_
#define PECO_CLI_COMMANDS_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/connection.h"

namespace peco::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// What a CLI invocation runs against. The streams are borrowed and must outlive RunCli.
struct CliContext {
  Environment env;
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  // Whether `out` is a terminal (live progress line in `watch`).
  bool out_is_tty = false;
  // Width of that terminal in columns (0 = unknown); the live line is cut to fit.
  int out_columns = 0;
  // Time source for ages in tables.
  std::function<absl::Time()> now = [] { return absl::Now(); };
  // Wait before `watch` reconnects after losing the coordinator (tests use zero).
  absl::Duration reconnect_backoff = absl::Seconds(2);
  // How many consecutive failed reconnects `watch` tolerates.
  int max_reconnects = 30;
};

// Runs the command line `args` (without the program name) and returns the exit code.
int RunCli(const std::vector<std::string>& args, const CliContext& context);

// Returns a new random id in UUID version 4 form ("1b4e28ba-2fa1-4d2e-883f-0016d3cca427"), used
// once per `submit` invocation as SubmitJobRequest.client_request_id.
std::string NewClientRequestId();

}  // namespace peco::cli

#endif  // PECO_CLI_COMMANDS_H_
