// The checkpoint contract, once: a checkpoint is a directory of files plus a MANIFEST that lists
// each file's SHA-256 and size. The trainer writes it, the worker uploads and fetches it, the
// coordinator stores and serves it, the CLI downloads it; all four parse, format, verify and
// name-check it here (docs/ARCHITECTURE.md, "The checkpoint contract").
//
// MANIFEST format: one line per file, `<sha256> <size> <name>\n`, the digest 64 lower-case hex
// digits, the size a decimal integer >= 0, lines sorted by name, no name twice, at least one
// line, MANIFEST itself not listed. Empty lines are tolerated when reading.
//
// File names (ValidateCheckpointFileName), the one rule every side applies to names in both
// directions: 1..255 bytes; one path component (no '/', not "." or ".."); no whitespace, control
// or DEL characters; not "MANIFEST"; not starting with '.' (names starting with '.' are reserved
// for staging directories and temporaries beside and inside checkpoint directories).
//
// Thread-safety: every function is pure or touches only the paths it is given.
#ifndef PECO_COMMON_CHECKPOINT_MANIFEST_H_
#define PECO_COMMON_CHECKPOINT_MANIFEST_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco {

// Name of the manifest file inside a checkpoint directory.
inline constexpr char kManifestFileName[] = "MANIFEST";

// One file of a checkpoint.
struct ManifestEntry {
  std::string name;
  int64_t size = 0;
  std::string sha256;  // 64 lower-case hex digits

  friend bool operator==(const ManifestEntry& a, const ManifestEntry& b) {
    return a.name == b.name && a.size == b.size && a.sha256 == b.sha256;
  }
  friend bool operator!=(const ManifestEntry& a, const ManifestEntry& b) { return !(a == b); }
};

// A checkpoint's files, sorted by name, each name once.
using Manifest = std::vector<ManifestEntry>;

// OK when `name` may name a checkpoint file (the rule in the file comment); InvalidArgument
// quoting the name and saying what is wrong otherwise.
absl::Status ValidateCheckpointFileName(absl::string_view name);

// Checks a manifest that came from elsewhere (a request, a peer): at least one entry, every name
// valid, none twice, sizes >= 0, digests 64 hex digits. Returns it sorted by name with lower-case
// digests. InvalidArgument naming `source` and the first bad entry.
absl::StatusOr<Manifest> ValidateManifest(Manifest entries, absl::string_view source);

// Parses MANIFEST text. `source` (a path, usually) names it in errors. DataLoss quoting the line
// number of the first malformed line, a bad or repeated name, or an empty manifest. Returns the
// entries sorted by name.
absl::StatusOr<Manifest> ParseManifest(absl::string_view text, absl::string_view source);

// MANIFEST text for `entries` (sorted by name here; the entries are not validated).
std::string FormatManifest(Manifest entries);

// Reads and parses `<dir>/MANIFEST`. NotFound when it is missing; the errors of ParseManifest.
absl::StatusOr<Manifest> ReadManifest(const std::string& dir);

// The manifest of in-memory files (name -> bytes), computing each SHA-256. InvalidArgument for a
// bad file name or no files.
absl::StatusOr<Manifest> ManifestOfFiles(const std::map<std::string, std::string>& files);

// Total bytes of the files a manifest lists.
int64_t ManifestBytes(const Manifest& manifest);

// Verifies one listed file of the checkpoint in `dir` against its entry: DataLoss naming the path
// when it is missing, of another size or another digest. When `contents` is not null it receives
// the file's bytes.
absl::Status VerifyCheckpointFile(const std::string& dir, const ManifestEntry& entry,
                                  std::string* contents = nullptr);

// DataLoss naming the first regular file in `dir` (other than MANIFEST) that `manifest` does not
// list: a MANIFEST truncated at a line boundary would otherwise silently drop files.
absl::Status CheckNoUnlistedFiles(const std::string& dir, const Manifest& manifest);

// Reads `<dir>/MANIFEST` and verifies the whole checkpoint: every listed file (as
// VerifyCheckpointFile) and no unlisted file beside them (an unlisted file means a MANIFEST that
// lost lines). Returns the manifest. DataLoss naming the first damaged file; the errors of
// ReadManifest.
absl::StatusOr<Manifest> VerifyCheckpointDir(const std::string& dir);

}  // namespace peco

#endif  // PECO_COMMON_CHECKPOINT_MANIFEST_H_
