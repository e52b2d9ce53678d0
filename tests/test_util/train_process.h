// Runs peco-train as a process and collects its NDJSON events, for process-level trainer tests.
//
// Header-only; not thread-safe (one run at a time per caller).
#ifndef PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_
#define PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <csignal>
#include <memory>
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

// Runs `args` as the `world_size` ranks of one data-parallel job on this host (torchrun's
// environment, MASTER_PORT `port`, one intra-op thread each), rank r's stderr in
// `log_prefix`r.log; when `stop_at_step` > 0 sends SIGTERM to rank `stop_rank` alone once its
// step events reach that step. Returns every rank's run, in rank order.
inline std::vector<TrainRun> RunRanksProcesses(const std::string& binary,
                                               const std::vector<std::string>& args,
                                               const std::string& log_prefix, int port,
                                               int world_size = 2, int stop_rank = 0,
                                               int stop_at_step = 0) {
  std::vector<std::unique_ptr<Subprocess>> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "WORLD_SIZE=" + std::to_string(world_size),
                                     "RANK=" + std::to_string(rank),
                                     "LOCAL_RANK=" + std::to_string(rank),
                                     "MASTER_ADDR=127.0.0.1",
                                     "MASTER_PORT=" + std::to_string(port),
                                     "PECO_JOB_ID=ranks-test",
                                     binary};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--set", "threads=1"});
    ranks.push_back(std::make_unique<Subprocess>(argv, log_prefix + std::to_string(rank) + ".log"));
    EXPECT_TRUE(ranks.back()->started());
  }
  std::vector<TrainRun> runs(world_size);
  // The rank to stop first (its events decide when), then the others in order; each event line
  // is small, so the pipes of ranks read later do not fill up in a short run.
  std::vector<int> order = {stop_rank};
  for (int rank = 0; rank < world_size; ++rank) {
    if (rank != stop_rank) order.push_back(rank);
  }
  for (int rank : order) {
    std::string line;
    bool signalled = false;
    while (ranks[rank]->ReadLine(&line)) {
      YAML::Node event = YAML::Load(line);
      runs[rank].events.push_back(event);
      if (rank == stop_rank && stop_at_step > 0 && !signalled &&
          event["event"].as<std::string>() == "step" && event["step"].as<int>() >= stop_at_step) {
        ranks[rank]->Signal(SIGTERM);
        signalled = true;
      }
    }
    runs[rank].exit_code = ranks[rank]->Wait();
  }
  return runs;
}

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_TRAIN_PROCESS_H_
