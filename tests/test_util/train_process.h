// Runs peco-train as a process and collects its NDJSON events, for process-level trainer tests.
//
// Header-only; not thread-safe (one run at a time per caller).
#ifndef PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_
#define PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <string>
#include <vector>

#include "tests/test_util/subprocess.h"

namespace peco::testing {

// What one peco-train run printed and how it ended.
struct TrainRun {
  int exit_code = -1;
  std::vector<YAML::Node> events;

  // The events of one type, in order.
  std::vector<YAML::Node> Of(const std::string& type) const {
    std::vector<YAML::Node> out;
    for (const auto& e : events) {
      if (e["event"].as<std::string>() == type) out.push_back(e);
    }
    return out;
  }
  // The message of the first `error` event ("" when none).
  std::string ErrorMessage() const {
    std::vector<YAML::Node> errors = Of("error");
    return errors.empty() ? "" : errors[0]["message"].as<std::string>();
  }
};

// Runs `prefix` + `binary` + `args` with stderr in `log`; when `stop_at_step` > 0 sends SIGTERM
// once a step event reaches it.
inline TrainRun RunTrainProcess(const std::string& binary, const std::vector<std::string>& args,
                                const std::string& log, int stop_at_step = 0,
                                const std::vector<std::string>& prefix = {}) {
  std::vector<std::string> argv = prefix;
  argv.push_back(binary);
  argv.insert(argv.end(), args.begin(), args.end());
  Subprocess process(argv, log);
  TrainRun result;
  EXPECT_TRUE(process.started());
  std::string line;
  bool signalled = false;
  while (process.ReadLine(&line)) {
    YAML::Node event = YAML::Load(line);
    result.events.push_back(event);
    if (stop_at_step > 0 && !signalled && event["event"].as<std::string>() == "step" &&
        event["step"].as<int>() >= stop_at_step) {
      process.Signal(SIGTERM);
      signalled = true;
    }
  }
  result.exit_code = process.Wait();
  return result;
}

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_
