// Graceful stop on SIGTERM/SIGINT: the handler only sets a flag; the training loop polls it
// after each step, writes a final checkpoint and exits cleanly.
//
// Thread-safe (an atomic flag).
#ifndef PECO_TRAINER_ENGINE_STOP_SIGNAL_H_
#define PECO_TRAINER_ENGINE_STOP_SIGNAL_H_

namespace peco::trainer {

// Installs the handlers (idempotent).
void InstallStopSignalHandlers();
// True once SIGTERM or SIGINT arrived (or RequestStop was called).
bool StopRequested();
// Sets the flag from code (tests, a step budget).
void RequestStop();

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_STOP_SIGNAL_H_
