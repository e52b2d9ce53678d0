#include "common/checkpoint_manifest.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace peco {
namespace {

namespace fs = std::filesystem;

bool IsHexDigest(absl::string_view digest) {
  return digest.size() == 64 && std::all_of(digest.begin(), digest.end(), [](char c) {
           return absl::ascii_isxdigit(static_cast<unsigned char>(c));
         });
}

bool IsLowerHexDigest(absl::string_view digest) {
  return IsHexDigest(digest) && std::none_of(digest.begin(), digest.end(), [](char c) {
           return absl::ascii_isupper(static_cast<unsigned char>(c));
         });
}

void SortByName(Manifest& entries) {
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.name < b.name; });
}

// The first name listed twice in sorted `entries`, or null.
const ManifestEntry* FirstRepeat(const Manifest& sorted) {
  for (size_t i = 1; i < sorted.size(); ++i) {
    if (sorted[i].name == sorted[i - 1].name) return &sorted[i];
  }
  return nullptr;
}

}  // namespace

absl::Status ValidateCheckpointFileName(absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint file name '", absl::CEscape(name), "' ", why));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 255) return bad("is longer than 255 bytes");
  if (name == kManifestFileName) return bad("is reserved for the manifest");
  if (name.front() == '.') return bad("starts with '.' (reserved for staging and temporaries)");
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '/') return bad("contains '/'");
    if (u <= 0x20 || u == 0x7f) return bad("contains whitespace or a control character");
  }
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ValidateManifest(Manifest entries, absl::string_view source) {
  if (entries.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": lists no files"));
  for (ManifestEntry& entry : entries) {
    if (absl::Status name_ok = ValidateCheckpointFileName(entry.name); !name_ok.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": ", name_ok.message()));
    }
    if (entry.size < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", entry.name, " has a negative size ", entry.size));
    }
    if (!IsHexDigest(entry.sha256)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": ", entry.name, ": sha256 is not 64 hex digits"));
    }
    absl::AsciiStrToLower(&entry.sha256);
  }
  SortByName(entries);
  if (const ManifestEntry* repeat = FirstRepeat(entries)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", repeat->name, " is listed twice"));
  }
  return entries;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view text, absl::string_view source) {
  Manifest entries;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line.empty()) continue;
    std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    ManifestEntry entry;
    if (parts.size() != 3 || !IsLowerHexDigest(parts[0]) ||
        !absl::SimpleAtoi(parts[1], &entry.size) || entry.size < 0) {
      return absl::DataLossError(
          absl::StrCat(source, ": line ", line_number, " is not '<sha256> <size> <name>'"));
    }
    if (absl::Status name_ok = ValidateCheckpointFileName(parts[2]); !name_ok.ok()) {
      return absl::DataLossError(
          absl::StrCat(source, ": line ", line_number, ": ", name_ok.message()));
    }
    entry.sha256 = std::string(parts[0]);
    entry.name = std::string(parts[2]);
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) return absl::DataLossError(absl::StrCat(source, ": lists no files"));
  SortByName(entries);
  if (const ManifestEntry* repeat = FirstRepeat(entries)) {
    return absl::DataLossError(absl::StrCat(source, ": '", repeat->name, "' is listed twice"));
  }
  return entries;
}

std::string FormatManifest(Manifest entries) {
  SortByName(entries);
  std::string text;
  for (const ManifestEntry& entry : entries) {
    absl::StrAppend(&text, entry.sha256, " ", entry.size, " ", entry.name, "\n");
  }
  return text;
}

absl::StatusOr<Manifest> ReadManifest(const std::string& dir) {
  const std::string path = (fs::path(dir) / kManifestFileName).string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseManifest(text, path);
}

absl::StatusOr<Manifest> ManifestOfFiles(const std::map<std::string, std::string>& files) {
  if (files.empty()) return absl::InvalidArgumentError("a checkpoint needs at least one file");
  Manifest entries;
  for (const auto& [name, data] : files) {
    RETURN_IF_ERROR(ValidateCheckpointFileName(name));
    entries.push_back({name, static_cast<int64_t>(data.size()), Sha256Hex(data)});
  }
  return entries;  // a std::map iterates in name order
}

int64_t ManifestBytes(const Manifest& manifest) {
  int64_t total = 0;
  for (const ManifestEntry& entry : manifest) total += entry.size;
  return total;
}

absl::Status VerifyCheckpointFile(const std::string& dir, const ManifestEntry& entry,
                                  std::string* contents) {
  const std::string path = (fs::path(dir) / entry.name).string();
  auto missing = [&] {
    // A listed file that is gone (or a damaged name in MANIFEST) is damage like any other.
    return absl::DataLossError(
        absl::StrCat("checkpoint file ", path, " is listed in MANIFEST but missing"));
  };
  auto wrong_size = [&](int64_t size) {
    return absl::DataLossError(absl::StrCat("checkpoint file ", path, " has ", size,
                                            " bytes, MANIFEST says ", entry.size));
  };
  std::string digest;
  if (contents != nullptr) {
    absl::StatusOr<std::string> read = ReadFileToString(path);
    if (absl::IsNotFound(read.status())) return missing();
    if (!read.ok()) return read.status();
    if (static_cast<int64_t>(read->size()) != entry.size) return wrong_size(read->size());
    digest = Sha256Hex(*read);
    *contents = *std::move(read);
  } else {
    std::error_code error;
    const uintmax_t size = fs::file_size(path, error);
    if (error == std::errc::no_such_file_or_directory) return missing();
    if (error) {
      return absl::InternalError(absl::StrCat("cannot stat ", path, ": ", error.message()));
    }
    if (static_cast<int64_t>(size) != entry.size) return wrong_size(static_cast<int64_t>(size));
    absl::StatusOr<std::string> hashed = Sha256FileHex(path);
    if (absl::IsNotFound(hashed.status())) return missing();
    if (!hashed.ok()) return hashed.status();
    digest = *std::move(hashed);
  }
  if (digest != entry.sha256) {
    return absl::DataLossError(
        absl::StrCat("checkpoint file ", path, " does not match its SHA-256 in MANIFEST"));
  }
  return absl::OkStatus();
}

absl::Status CheckNoUnlistedFiles(const std::string& dir, const Manifest& entries) {
  std::error_code error;
  for (const auto& item : fs::directory_iterator(dir, error)) {
    const std::string name = item.path().filename().string();
    if (name == kManifestFileName) continue;
    const bool listed = std::binary_search(
        entries.begin(), entries.end(), ManifestEntry{name, 0, ""},
        [](const ManifestEntry& a, const ManifestEntry& b) { return a.name < b.name; });
    if (!listed) {
      return absl::DataLossError(absl::StrCat(
          "checkpoint file ", item.path().string(), " is not listed in ",
          (fs::path(dir) / kManifestFileName).string(), " (MANIFEST damaged or truncated)"));
    }
  }
  if (error) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", error.message()));
  return absl::OkStatus();
}

absl::StatusOr<Manifest> VerifyCheckpointDir(const std::string& dir) {
  ASSIGN_OR_RETURN(Manifest entries, ReadManifest(dir));
  RETURN_IF_ERROR(CheckNoUnlistedFiles(dir, entries));
  for (const ManifestEntry& entry : entries) RETURN_IF_ERROR(VerifyCheckpointFile(dir, entry));
  return entries;
}

}  // namespace peco
