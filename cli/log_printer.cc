#include "cli/log_printer.h"

namespace peco::cli {

void LogPrinter::Print(int64_t attempt, int32_t rank, const std::string& data) {
  if (data.empty()) return;
  const std::pair<int64_t, int32_t> source{attempt, rank};
  if (current_ != source) {
    if (!at_line_start_) *out_ << "\n";
    if (current_.has_value()) *out_ << "\n";
    *out_ << "==> attempt " << attempt << ", rank " << rank << " <==\n";
    current_ = source;
  }
  *out_ << data;
  out_->flush();
  at_line_start_ = data.back() == '\n';
}

}  // namespace peco::cli
