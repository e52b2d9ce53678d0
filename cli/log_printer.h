// LogPrinter: how `peco logs` writes the pieces of several (attempt, rank) logs to one stream.
// A header line "==> attempt A, rank R <==" comes first and again whenever the source changes
// (as `tail` does for several files); a piece that follows one of another log without a
// trailing newline starts on a new line.
//
// Thread-compatible.
#ifndef PECO_CLI_LOG_PRINTER_H_
#define PECO_CLI_LOG_PRINTER_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

namespace peco::cli {

class LogPrinter {
 public:
  // `out` is borrowed and must outlive the printer.
  explicit LogPrinter(std::ostream* out) : out_(out) {}

  void Print(int64_t attempt, int32_t rank, const std::string& data);

  bool printed_any() const { return current_.has_value(); }

 private:
  std::ostream* const out_;
  std::optional<std::pair<int64_t, int32_t>> current_;
  bool at_line_start_ = true;
};

}  // namespace peco::cli

#endif  // PECO_CLI_LOG_PRINTER_H_
