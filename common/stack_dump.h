// Dumps the stacks of every thread of this process to stderr on SIGQUIT, and carries on.
//
// peco-worker sends SIGQUIT to a trainer it has found stalled before it kills it, so the job's
// log says where each thread was: in a step, blocked in a collective, inside a checkpoint write.
// The handler lists the threads in /proc/self/task, has each write its own stack (a real-time
// signal to each, answered by glibc's unwinder and absl's async-signal-safe symbolizer) one
// after the other, and returns; the process goes on as before.
//
// Install once, early in main (it calls absl::InitializeSymbolizer(argv0)); later calls do
// nothing. Not for processes that use SIGQUIT or SIGRTMIN+3 themselves.
#ifndef PECO_COMMON_STACK_DUMP_H_
#define PECO_COMMON_STACK_DUMP_H_

namespace peco {

void InstallStackDumpOnSigquit(const char* argv0);

}  // namespace peco

#endif  // PECO_COMMON_STACK_DUMP_H_
