// Command-line parsing for `peco`: flags described by a table, parsed per subcommand so that an
// error names the subcommand and the flag ("peco list: --limit: expected an integer >= 1").
//
// Accepted spellings: `--name value`, `--name=value`, a short form `-o json` / `-ojson` where a
// flag has one, and `--name` alone for boolean flags. `--` ends the flags; everything after it
// is positional. `-h` and `--help` set `help`. A flag given twice keeps every value (the
// command decides whether that is an error).
//
// Thread-safety: pure functions.
#ifndef PECO_CLI_ARGS_H_
#define PECO_CLI_ARGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace peco::cli {

struct FlagSpec {
  // Without the leading dashes: "coordinator", "request_id". Users may type words joined by dashes
  // or by underscores (`--request-id`, `--request_id`); help shows the dashed spelling.
  std::string name;
  char short_name = 0;     // 'o' for -o; 0 = none
  std::string value_name;  // "ADDR"; empty = a boolean flag that takes no value
  std::string help;
};

struct ParsedArgs {
  std::map<std::string, std::vector<std::string>> flags;  // flag name -> values in order
  std::vector<std::string> positional;
  bool help = false;

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
  // The last value of a flag, or `fallback` when it was not given.
  std::string Last(const std::string& name, const std::string& fallback = "") const;
  // Every value of a repeatable flag (empty when not given).
  std::vector<std::string> All(const std::string& name) const;
};

// Parses `args` (without the program name) against `specs`. InvalidArgument naming the flag for
// an unknown flag, a missing value, or a value given to a boolean flag.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);

// Returns the help lines for `specs`: "  -o, --output FORMAT   help", aligned.
std::string FlagHelp(const std::vector<FlagSpec>& specs);

// Parses a duration flag value: "30s", "2m", "1h30m", or a bare number of seconds. InvalidArgument
// naming `flag` otherwise, or when the value is not positive.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text);

// Parses an integer flag value within [min, max]. InvalidArgument naming `flag` otherwise.
absl::StatusOr<int64_t> ParseIntFlag(absl::string_view flag, absl::string_view text, int64_t min,
                                     int64_t max);

}  // namespace peco::cli

#endif  // PECO_CLI_ARGS_H_
