// Helpers shared by the fuzz targets in fuzz/ (docs/RELIABILITY.md, "Fuzzing").
//
// PECO_FUZZ_CHECK(condition, detail) is how a target asserts a property: when `condition` is
// false it prints the file, line, condition and `detail` (anything absl::StrCat accepts) to
// stderr and aborts, which libFuzzer reports as a crash and saves the input for.
//
// LeadingOverrides() lets one input carry `--set` style overrides: the lines at the top of the
// text that start with "#set " (YAML comments, so the document parses the same with or without
// them) give one `key.path=value` override each.
//
// IsValidUtf8() is the test's own UTF-8 check (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), independent of the code under test.
//
// Thread-safety: pure functions.
#ifndef PECO_FUZZ_FUZZ_UTIL_H_
#define PECO_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

#define PECO_FUZZ_CHECK(condition, ...)                                              \
  do {                                                                               \
    if (!(condition)) {                                                              \
      ::peco::fuzz::Fail(__FILE__, __LINE__, #condition, absl::StrCat(__VA_ARGS__)); \
    }                                                                                \
  } while (0)

namespace peco::fuzz {

// Prints a failed property and aborts. Control bytes of `detail` other than newlines and tabs
// are printed as \xNN, so that a NUL does not end the message.
[[noreturn]] inline void Fail(const char* file, int line, const char* condition,
                              const std::string& detail) {
  std::string visible;
  for (char c : detail) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\n' && c != '\t') || byte == 0x7f) {
      absl::StrAppend(&visible, "\\x", absl::Hex(byte, absl::kZeroPad2));
    } else {
      visible.push_back(c);
    }
  }
  std::fprintf(stderr, "%s:%d: property failed: %s\n%s\n", file, line, condition, visible.c_str());
  std::abort();
}

// Returns the overrides given by the "#set key.path=value" lines at the top of `text` (at most
// `max_count`; the first line that does not start with "#set " ends them).
inline std::vector<std::string> LeadingOverrides(absl::string_view text, size_t max_count = 4) {
  constexpr absl::string_view kPrefix = "#set ";
  std::vector<std::string> overrides;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (overrides.size() == max_count || !absl::StartsWith(line, kPrefix)) break;
    overrides.emplace_back(line.substr(kPrefix.size()));
  }
  return overrides;
}

// Returns true when `text` is well-formed UTF-8.
inline bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char lead = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    unsigned char low = 0x80;  // bounds of the second byte
    unsigned char high = 0xBF;
    if (lead < 0x80) {
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      const unsigned char c = static_cast<unsigned char>(text[i + k]);
      if (c < (k == 1 ? low : 0x80) || c > (k == 1 ? high : 0xBF)) return false;
    }
    i += length;
  }
  return true;
}

}  // namespace peco::fuzz

#endif  // PECO_FUZZ_FUZZ_UTIL_H_
