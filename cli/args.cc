#include "cli/args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace peco::cli {
namespace {

// A flag's name as users type it: words joined by dashes (`--dry-run`, kubectl's and ray's
// convention). The underscore spelling (`--dry_run`) is the same flag.
std::string Dashed(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

const FlagSpec* FindLong(const std::vector<FlagSpec>& specs, absl::string_view name) {
  const std::string wanted = Dashed(name);
  for (const FlagSpec& spec : specs) {
    if (Dashed(spec.name) == wanted) return &spec;
  }
  return nullptr;
}

const FlagSpec* FindShort(const std::vector<FlagSpec>& specs, char name) {
  for (const FlagSpec& spec : specs) {
    if (spec.short_name != 0 && spec.short_name == name) return &spec;
  }
  return nullptr;
}

}  // namespace

std::string ParsedArgs::Last(const std::string& name, const std::string& fallback) const {
  auto it = flags.find(name);
  return it == flags.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::All(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::vector<std::string>() : it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs) {
  ParsedArgs parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      parsed.positional.insert(parsed.positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      parsed.positional.push_back(arg);
      continue;
    }
    const FlagSpec* spec = nullptr;
    std::string shown;  // the flag as the user spelled it, for errors
    std::string value;
    bool has_value = false;
    if (absl::StartsWith(arg, "--")) {
      const std::string body = arg.substr(2);
      const size_t eq = body.find('=');
      const std::string name = body.substr(0, eq);
      shown = absl::StrCat("--", name);
      spec = FindLong(specs, name);
      if (eq != std::string::npos) {
        value = body.substr(eq + 1);
        has_value = true;
      }
    } else {
      shown = arg.substr(0, 2);
      spec = FindShort(specs, arg[1]);
      if (arg.size() > 2) {
        value = arg.substr(arg[2] == '=' ? 3 : 2);
        has_value = true;
      }
    }
    if (spec == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag ", shown));
    if (spec->value_name.empty()) {
      if (has_value) {
        return absl::InvalidArgumentError(absl::StrCat(shown, " takes no value"));
      }
      parsed.flags[spec->name].push_back("true");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(shown, ": missing value (", spec->value_name, ")"));
      }
      value = args[++i];
    }
    parsed.flags[spec->name].push_back(value);
  }
  return parsed;
}

std::string FlagHelp(const std::vector<FlagSpec>& specs) {
  std::vector<std::string> lefts;
  size_t width = 0;
  for (const FlagSpec& spec : specs) {
    std::string left = spec.short_name != 0 ? absl::StrCat("-", std::string(1, spec.short_name),
                                                           ", --", Dashed(spec.name))
                                            : absl::StrCat("    --", Dashed(spec.name));
    if (!spec.value_name.empty()) absl::StrAppend(&left, " ", spec.value_name);
    width = std::max(width, left.size());
    lefts.push_back(std::move(left));
  }
  std::string out;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StrAppend(&out, "  ", lefts[i], std::string(width - lefts[i].size() + 3, ' '),
                    specs[i].help, "\n");
  }
  return out;
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view text) {
  absl::Duration duration;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &duration)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a duration such as 30s or 2m, got '", text, "'"));
  }
  if (duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected a duration > 0, got '", text, "'"));
  }
  return duration;
}

absl::StatusOr<int64_t> ParseIntFlag(absl::string_view flag, absl::string_view text, int64_t min,
                                     int64_t max) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": expected an integer in [", min, ", ", max, "], got '", text, "'"));
  }
  return value;
}

}  // namespace peco::cli
