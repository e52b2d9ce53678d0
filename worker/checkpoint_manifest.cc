#include "worker/checkpoint_manifest.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace peco::worker {
namespace fs = std::filesystem;

absl::Status ValidateCheckpointFileName(absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint file name '", absl::CEscape(name), "': ", why));
  };
  if (name.empty()) return bad("is empty");
  if (name == "." || name == "..") return bad("is not a file name");
  if (name == kCheckpointManifestName) return bad("is reserved for the manifest");
  if (name.size() > 255) return bad("is longer than 255 bytes");
  for (char c : name) {
    if (c == '/') return bad("contains '/'");
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) ||
        absl::ascii_iscntrl(static_cast<unsigned char>(c))) {
      return bad("contains whitespace or a control character");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::ManifestEntry>> ParseManifest(absl::string_view text,
                                                             absl::string_view source) {
  std::vector<v1::ManifestEntry> entries;
  std::set<std::string> names;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    int64_t size = -1;
    const bool hex =
        parts.size() == 3 && parts[0].size() == 64 &&
        std::all_of(parts[0].begin(), parts[0].end(), [](char c) {
          return absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'a' && c <= 'f');
        });
    if (!hex || !absl::SimpleAtoi(parts[1], &size) || size < 0) {
      return absl::DataLossError(
          absl::StrCat(source, ": line ", line_number, " is not '<sha256> <size> <name>'"));
    }
    if (absl::Status name_ok = ValidateCheckpointFileName(parts[2]); !name_ok.ok()) {
      return absl::DataLossError(
          absl::StrCat(source, ": line ", line_number, ": ", name_ok.message()));
    }
    if (!names.insert(std::string(parts[2])).second) {
      return absl::DataLossError(
          absl::StrCat(source, ": line ", line_number, ": '", parts[2], "' is listed twice"));
    }
    v1::ManifestEntry entry;
    entry.set_sha256(std::string(parts[0]));
    entry.set_size(size);
    entry.set_name(std::string(parts[2]));
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) return absl::DataLossError(absl::StrCat(source, ": lists no files"));
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return entries;
}

absl::StatusOr<std::vector<v1::ManifestEntry>> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kCheckpointManifestName).string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseManifest(text, path);
}

std::string FormatManifest(std::vector<v1::ManifestEntry> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  std::string text;
  for (const v1::ManifestEntry& entry : entries) {
    absl::StrAppend(&text, entry.sha256(), " ", entry.size(), " ", entry.name(), "\n");
  }
  return text;
}

absl::Status LinkCheckpoint(const std::string& src, const std::string& dest) {
  ASSIGN_OR_RETURN(std::vector<v1::ManifestEntry> entries, ReadManifest(src));
  std::error_code error;
  if (fs::exists(dest, error)) {
    return absl::AlreadyExistsError(absl::StrCat("checkpoint copy ", dest, " already exists"));
  }
  fs::create_directories(dest, error);
  if (error) {
    return absl::InternalError(absl::StrCat("cannot create ", dest, ": ", error.message()));
  }
  std::vector<std::string> names;
  for (const v1::ManifestEntry& entry : entries) names.push_back(entry.name());
  names.push_back(kCheckpointManifestName);
  for (const std::string& name : names) {
    const fs::path from = fs::path(src) / name;
    const fs::path to = fs::path(dest) / name;
    fs::create_hard_link(from, to, error);
    // A link across file systems (EXDEV) or on one without links falls back to a copy.
    if (error && error != std::errc::no_such_file_or_directory) {
      error.clear();
      fs::copy_file(from, to, error);
    }
    if (error) {
      const bool gone = error == std::errc::no_such_file_or_directory;
      std::error_code ignored;
      fs::remove_all(dest, ignored);
      const std::string message =
          absl::StrCat("cannot link ", from.string(), " to ", to.string(), ": ", error.message());
      return gone ? absl::NotFoundError(message) : absl::InternalError(message);
    }
  }
  return absl::OkStatus();
}

}  // namespace peco::worker
