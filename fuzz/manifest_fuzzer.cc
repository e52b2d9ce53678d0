// Fuzzes the two readers of a checkpoint's MANIFEST (`<sha256> <size> <name>` lines): the
// worker's (worker/checkpoint_manifest.h ParseManifest, which reads what a trainer wrote before
// uploading it) and the coordinator store's (coordinator/checkpoint_file_store.h
// ParseStoredManifest, which reads the MANIFEST of a committed checkpoint back from disk), and
// the file-name rule the worker applies to names from both directions
// (ValidateCheckpointFileName).
//
// Input: MANIFEST text.
//
// Asserts, besides no crash and no sanitizer report:
//  - worker: a refusal is DataLoss naming the source; an accepted manifest is non-empty, sorted by
//    name without repeats, every digest 64 lower-case hex digits, every size >= 0, every name
//    accepted by ValidateCheckpointFileName; FormatManifest's text parses back to the same
//    entries and is a fixed point;
//  - coordinator: a refusal is DataLoss naming the path; accepted entries are sorted, with
//    64-character digests, sizes >= 0, and read back the same from FormatManifest's text;
//  - both sides agree: what the worker accepts, the coordinator accepts with the same entries,
//    unless a name contains ".." (a name the coordinator's store refuses on purpose);
//  - every input line that ValidateCheckpointFileName accepts as a name is one path component
//    (joining it to a directory stays in that directory) and makes a one-line manifest that both
//    parsers read back with exactly that name.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "coordinator/checkpoint_file_store.h"
#include "fuzz/fuzz_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "peco/v1/checkpoint.pb.h"
#include "worker/checkpoint_manifest.h"

namespace peco {
namespace {

constexpr char kSource[] = "ck/MANIFEST";

using Entries = std::vector<v1::ManifestEntry>;

bool SameEntries(const Entries& a, const Entries& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!google::protobuf::util::MessageDifferencer::Equals(a[i], b[i])) return false;
  }
  return true;
}

bool LowerHexDigest(const std::string& digest) {
  if (digest.size() != 64) return false;
  for (char c : digest) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AnyNameHasDotDot(const Entries& entries) {
  for (const v1::ManifestEntry& entry : entries) {
    if (absl::StrContains(entry.name(), "..")) return true;
  }
  return false;
}

void CheckSorted(const Entries& entries, bool unique) {
  for (size_t i = 1; i < entries.size(); ++i) {
    const std::string& before = entries[i - 1].name();
    const std::string& name = entries[i].name();
    PECO_FUZZ_CHECK(unique ? before < name : before <= name, "'", before, "' then '", name, "'");
  }
}

// Returns what the worker's parser made of `text`, after checking it.
absl::StatusOr<Entries> FuzzWorkerParser(const std::string& text) {
  absl::StatusOr<Entries> parsed = worker::ParseManifest(text, kSource);
  if (!parsed.ok()) {
    PECO_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kDataLoss,
                    parsed.status().ToString());
    PECO_FUZZ_CHECK(absl::StartsWith(parsed.status().message(), kSource),
                    parsed.status().ToString());
    return parsed;
  }
  const Entries& entries = *parsed;
  PECO_FUZZ_CHECK(!entries.empty(), "an accepted manifest lists no files");
  CheckSorted(entries, /*unique=*/true);
  for (const v1::ManifestEntry& entry : entries) {
    PECO_FUZZ_CHECK(LowerHexDigest(entry.sha256()), entry.ShortDebugString());
    PECO_FUZZ_CHECK(entry.size() >= 0, entry.ShortDebugString());
    PECO_FUZZ_CHECK(worker::ValidateCheckpointFileName(entry.name()).ok(),
                    entry.ShortDebugString());
  }
  const std::string formatted = worker::FormatManifest(entries);
  absl::StatusOr<Entries> again = worker::ParseManifest(formatted, kSource);
  PECO_FUZZ_CHECK(again.ok(), again.status().ToString(), "\nformatted:\n", formatted);
  PECO_FUZZ_CHECK(SameEntries(*again, entries), "formatted:\n", formatted);
  PECO_FUZZ_CHECK(worker::FormatManifest(*again) == formatted, "formatted:\n", formatted);
  return parsed;
}

void FuzzCoordinatorParser(const std::string& text, const absl::StatusOr<Entries>& worker) {
  absl::StatusOr<Entries> stored = coordinator::ParseStoredManifest(text, kSource);
  if (!stored.ok()) {
    PECO_FUZZ_CHECK(stored.status().code() == absl::StatusCode::kDataLoss,
                    stored.status().ToString());
    PECO_FUZZ_CHECK(absl::StartsWith(stored.status().message(), kSource),
                    stored.status().ToString());
  } else {
    CheckSorted(*stored, /*unique=*/false);
    for (const v1::ManifestEntry& entry : *stored) {
      PECO_FUZZ_CHECK(entry.sha256().size() == 64, entry.ShortDebugString());
      PECO_FUZZ_CHECK(entry.size() >= 0, entry.ShortDebugString());
    }
    const std::string formatted = worker::FormatManifest(*stored);
    absl::StatusOr<Entries> again = coordinator::ParseStoredManifest(formatted, kSource);
    PECO_FUZZ_CHECK(again.ok(), again.status().ToString(), "\nformatted:\n", formatted);
    PECO_FUZZ_CHECK(SameEntries(*again, *stored), "formatted:\n", formatted);
  }
  if (worker.ok() && !AnyNameHasDotDot(*worker)) {
    PECO_FUZZ_CHECK(stored.ok(), "the worker accepts what the coordinator refuses: ",
                    stored.status().ToString());
    PECO_FUZZ_CHECK(SameEntries(*stored, *worker), "the two parsers read different entries");
  }
}

void FuzzFileNames(const std::string& text) {
  for (absl::string_view name : absl::StrSplit(text, '\n')) {
    if (!worker::ValidateCheckpointFileName(name).ok()) continue;
    const std::string line(name);
    const std::filesystem::path joined = std::filesystem::path("/ck") / line;
    PECO_FUZZ_CHECK(joined.parent_path() == "/ck" && joined.filename() == line, "name '", line,
                    "' leaves the directory: ", joined.string());
    const std::string manifest = absl::StrCat(std::string(64, '0'), " 0 ", line, "\n");
    absl::StatusOr<Entries> worker = worker::ParseManifest(manifest, kSource);
    PECO_FUZZ_CHECK(worker.ok() && worker->size() == 1 && (*worker)[0].name() == line, "name '",
                    line, "': ", worker.status().ToString());
    if (absl::StrContains(line, "..")) continue;
    absl::StatusOr<Entries> stored = coordinator::ParseStoredManifest(manifest, kSource);
    PECO_FUZZ_CHECK(stored.ok() && stored->size() == 1 && (*stored)[0].name() == line, "name '",
                    line, "': ", stored.status().ToString());
  }
}

void FuzzManifest(const std::string& text) {
  FuzzCoordinatorParser(text, FuzzWorkerParser(text));
  FuzzFileNames(text);
}

}  // namespace
}  // namespace peco

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  peco::FuzzManifest(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
