// Fuzzes the checkpoint contract's reader of a MANIFEST (`<sha256> <size> <name>` lines,
// common/checkpoint_manifest.h ParseManifest: the trainer, the worker, the coordinator's store
// and the CLI all read MANIFEST files with it) and its file-name rule (ValidateCheckpointFileName),
// which every side applies to names from both directions.
//
// Input: MANIFEST text.
//
// Asserts, besides no crash and no sanitizer report:
//  - a refusal is DataLoss naming the source;
//  - an accepted manifest is non-empty, sorted by name without repeats, every digest 64
//    lower-case hex digits, every size >= 0, every name accepted by ValidateCheckpointFileName;
//    ValidateManifest (what a manifest from the wire goes through) accepts it unchanged;
//    FormatManifest's text parses back to the same entries and is a fixed point;
//  - every input line that ValidateCheckpointFileName accepts as a name is one path component
//    (joining it to a directory stays in that directory, and it does not start with '.', the
//    prefix of staging directories) and makes a one-line manifest that reads back with exactly
//    that name.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/checkpoint_manifest.h"
#include "fuzz/fuzz_util.h"

namespace peco {
namespace {

constexpr char kSource[] = "ck/MANIFEST";

bool LowerHexDigest(const std::string& digest) {
  if (digest.size() != 64) return false;
  for (char c : digest) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Describe(const ManifestEntry& entry) {
  return absl::StrCat(entry.sha256, " ", entry.size, " '", entry.name, "'");
}

void FuzzParser(const std::string& text) {
  absl::StatusOr<Manifest> parsed = ParseManifest(text, kSource);
  if (!parsed.ok()) {
    PECO_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kDataLoss,
                    parsed.status().ToString());
    PECO_FUZZ_CHECK(absl::StartsWith(parsed.status().message(), kSource),
                    parsed.status().ToString());
    return;
  }
  const Manifest& entries = *parsed;
  PECO_FUZZ_CHECK(!entries.empty(), "an accepted manifest lists no files");
  for (size_t i = 1; i < entries.size(); ++i) {
    PECO_FUZZ_CHECK(entries[i - 1].name < entries[i].name, "'", entries[i - 1].name, "' then '",
                    entries[i].name, "'");
  }
  for (const ManifestEntry& entry : entries) {
    PECO_FUZZ_CHECK(LowerHexDigest(entry.sha256), Describe(entry));
    PECO_FUZZ_CHECK(entry.size >= 0, Describe(entry));
    PECO_FUZZ_CHECK(ValidateCheckpointFileName(entry.name).ok(), Describe(entry));
  }
  absl::StatusOr<Manifest> validated = ValidateManifest(entries, kSource);
  PECO_FUZZ_CHECK(validated.ok() && *validated == entries, validated.status().ToString());
  const std::string formatted = FormatManifest(entries);
  absl::StatusOr<Manifest> again = ParseManifest(formatted, kSource);
  PECO_FUZZ_CHECK(again.ok(), again.status().ToString(), "\nformatted:\n", formatted);
  PECO_FUZZ_CHECK(*again == entries, "formatted:\n", formatted);
  PECO_FUZZ_CHECK(FormatManifest(*again) == formatted, "formatted:\n", formatted);
}

void FuzzFileNames(const std::string& text) {
  for (absl::string_view name : absl::StrSplit(text, '\n')) {
    if (!ValidateCheckpointFileName(name).ok()) continue;
    const std::string line(name);
    const std::filesystem::path joined = std::filesystem::path("/ck") / line;
    PECO_FUZZ_CHECK(joined.parent_path() == "/ck" && joined.filename() == line, "name '", line,
                    "' leaves the directory: ", joined.string());
    PECO_FUZZ_CHECK(line[0] != '.', "name '", line, "' starts with '.'");
    const std::string manifest = absl::StrCat(std::string(64, '0'), " 0 ", line, "\n");
    absl::StatusOr<Manifest> parsed = ParseManifest(manifest, kSource);
    PECO_FUZZ_CHECK(parsed.ok() && parsed->size() == 1 && (*parsed)[0].name == line, "name '", line,
                    "': ", parsed.status().ToString());
  }
}

}  // namespace
}  // namespace peco

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  peco::FuzzParser(text);
  peco::FuzzFileNames(text);
  return 0;
}
