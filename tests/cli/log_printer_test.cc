// LogPrinter: a header per source change, pieces of one log joined, a missing newline supplied.
#include "cli/log_printer.h"

#include <gtest/gtest.h>

#include <sstream>

namespace peco::cli {
namespace {

TEST(LogPrinterTest, HeadersMarkEachChangeOfAttemptOrRank) {
  std::ostringstream out;
  LogPrinter printer(&out);
  EXPECT_FALSE(printer.printed_any());
  printer.Print(1, 0, "");  // nothing to show: no header either
  EXPECT_FALSE(printer.printed_any());
  printer.Print(1, 0, "a\n");
  printer.Print(1, 0, "b\n");
  printer.Print(1, 1, "partial");
  printer.Print(2, 0, "c\n");
  EXPECT_TRUE(printer.printed_any());
  EXPECT_EQ(out.str(),
            "==> attempt 1, rank 0 <==\na\nb\n"
            "\n==> attempt 1, rank 1 <==\npartial\n"
            "\n==> attempt 2, rank 0 <==\nc\n");
}

}  // namespace
}  // namespace peco::cli
