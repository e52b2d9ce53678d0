// peco: the user CLI of the peco training service. See cli/commands.h for the commands.
#include <sys/ioctl.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  peco::cli::CliContext context;
  context.env = peco::cli::Environment::FromProcess();
  context.out = &std::cout;
  context.err = &std::cerr;
  context.out_is_tty = ::isatty(STDOUT_FILENO) == 1;
  struct winsize size = {};
  if (context.out_is_tty && ::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0) {
    context.out_columns = size.ws_col;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  return peco::cli::RunCli(args, context);
}
