#include "trainer/engine/stop_signal.h"

#include <atomic>
#include <csignal>

namespace peco::trainer {
namespace {

std::atomic<bool> stop_requested{false};

extern "C" void HandleStopSignal(int) { stop_requested.store(true, std::memory_order_relaxed); }

}  // namespace

void InstallStopSignalHandlers() {
  struct sigaction action = {};
  action.sa_handler = HandleStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
}

bool StopRequested() { return stop_requested.load(std::memory_order_relaxed); }

void RequestStop() { stop_requested.store(true, std::memory_order_relaxed); }

}  // namespace peco::trainer
