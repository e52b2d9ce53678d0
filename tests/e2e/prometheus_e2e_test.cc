// Debian's real Prometheus server with the shipped configuration (deploy/prometheus/) scraping a
// coordinator and a worker on loopback while a job runs: the job's step and loss series that
// Prometheus stores must be what `peco get` shows.
//
// The job hangs (fault injection) after a few steps, so its progress holds still and both views
// can be compared without racing the training; the worker's stall timeout is longer than the
// test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/file_util.h"
#include "common/process_launcher.h"
#include "tests/e2e/cluster.h"

namespace peco::e2e {
namespace {

namespace fs = std::filesystem;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr int kHangAfterStep = 5;

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

class PrometheusE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kPrometheus)) GTEST_SKIP() << "needs Debian's prometheus (scripts/setup)";
  }
  void TearDown() override {
    if (HasFailure()) {
      cluster_.DumpLogs();
      std::cerr << "===== prometheus\n"
                << ReadFileToString(cluster_.root() + "/prometheus.log").value_or("") << "\n";
    }
  }

  // Starts Prometheus on the shipped configuration, pointed at this cluster's daemons and
  // scraping every second; returns its host:port.
  std::string StartPrometheus() {
    const std::string dir = cluster_.root() + "/prometheus";
    fs::create_directories(dir + "/file_sd");
    const std::string shipped = std::string(PECO_SOURCE_DIR) + "/deploy/prometheus";
    fs::copy_file(shipped + "/alerts.yml", dir + "/alerts.yml");
    // The shipped file's defaults (ports 7451 and 7461, a 15 s interval) become this cluster's.
    std::string config = ReadFileToString(shipped + "/prometheus.yml").value_or("");
    config = absl::StrReplaceAll(config, {{"scrape_interval: 15s", "scrape_interval: 1s"},
                                          {"127.0.0.1:7451", cluster_.CoordinatorMetricsAddress()},
                                          {"127.0.0.1:7461", cluster_.WorkerMetricsAddress(0)}});
    std::ofstream(dir + "/prometheus.yml") << config;
    const std::string address = absl::StrCat("127.0.0.1:", FreePort());
    LaunchSpec spec;
    spec.argv = {kPrometheus, "--config.file=" + dir + "/prometheus.yml",
                 "--storage.tsdb.path=" + dir + "/data", "--web.listen-address=" + address};
    spec.stderr_path = cluster_.root() + "/prometheus.log";
    PosixProcessLauncher launcher;
    absl::StatusOr<std::unique_ptr<Process>> process = launcher.Launch(spec);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) prometheus_ = std::make_unique<Daemon>(*std::move(process), spec.stderr_path);
    return address;
  }

  // The value of the instant query `query` (the first series), or NaN when it has none yet.
  double Query(const std::string& address, const std::string& query) {
    const std::string body = HttpGet(address, "/api/v1/query?query=" + UrlEncode(query));
    try {
      YAML::Node reply = YAML::Load(body);
      YAML::Node result = reply["data"]["result"];
      if (!result || result.size() == 0) return NAN;
      return std::stod(result[0]["value"][1].as<std::string>());
    } catch (const std::exception&) {
      return NAN;
    }
  }

  // Polls `query` until it equals `want` (relative 1e-6), for at most a minute; returns the last
  // value seen.
  double WaitForValue(const std::string& address, const std::string& query, double want) {
    double value = NAN;
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      value = Query(address, query);
      if (std::abs(value - want) <= 1e-6 * std::max(1.0, std::abs(want))) break;
      absl::SleepFor(absl::Milliseconds(250));  // polling a condition, not timing
    }
    return value;
  }

  Cluster cluster_;
  std::unique_ptr<Daemon> prometheus_;
};

TEST_F(PrometheusE2eTest, ScrapedStepAndLossMatchWhatTheCliShows) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(1, {"--stall_timeout=10m", "--shutdown_grace=1s"});
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  const std::string prometheus = StartPrometheus();
  ASSERT_NE(prometheus_, nullptr);

  CommandResult submit = cluster_.Peco(
      {"submit",
       cluster_.WriteSpec("e2e-prometheus", 40, 20,
                          absl::StrCat("faults: {hang_at_step: ", kHangAfterStep, "}\n"))});
  ASSERT_EQ(submit.exit_code, 0) << submit.error;
  const std::string job_id = JobIdIn(submit.output);
  absl::StatusOr<v1::GetJobResponse> held = cluster_.WaitForJob(
      job_id,
      [](const v1::GetJobResponse& job) { return job.job().progress().step() == kHangAfterStep; },
      absl::Seconds(120));
  ASSERT_TRUE(held.ok()) << held.status();

  // What a user sees.
  CommandResult get = cluster_.Peco({"-o", "json", "get", job_id});
  ASSERT_EQ(get.exit_code, 0) << get.error;
  YAML::Node shown = YAML::Load(get.output)["job"]["progress"];
  const double step = shown["step"].as<double>();
  const double loss = shown["loss"].as<double>();
  EXPECT_EQ(step, kHangAfterStep);

  // What Prometheus stored, from the coordinator and from the worker.
  const std::string selector = absl::StrCat("{job_id=\"", job_id, "\"}");
  EXPECT_EQ(WaitForValue(prometheus, "peco_job_step" + selector, step), step);
  EXPECT_NEAR(WaitForValue(prometheus, "peco_job_loss" + selector, loss), loss,
              1e-6 * std::abs(loss));
  const std::string rank0 = absl::StrCat("{job_id=\"", job_id, "\",rank=\"0\"}");
  EXPECT_EQ(WaitForValue(prometheus, "peco_worker_rank_step" + rank0, step), step);
  EXPECT_NEAR(WaitForValue(prometheus, "peco_worker_rank_loss" + rank0, loss), loss,
              1e-6 * std::abs(loss));
  // Both targets are up under the shipped scrape job names.
  EXPECT_EQ(WaitForValue(prometheus, "up{job=\"peco-coordinator\"}", 1), 1);
  EXPECT_EQ(WaitForValue(prometheus, "up{job=\"peco-worker\"}", 1), 1);
  EXPECT_EQ(WaitForValue(prometheus, "peco_jobs{state=\"running\"}", 1), 1);

  // Every RPC is counted by method and code, and each daemon says what build it is.
  ASSERT_EQ(cluster_.Peco({"get", "job-404404"}).exit_code, 1);
  const std::string coordinator_text = cluster_.CoordinatorMetrics();
  EXPECT_THAT(coordinator_text,
              ::testing::HasSubstr("peco_rpc_server_handled_total{code=\"OK\",method=\"SubmitJob\","
                                   "service=\"JobService\"} 1"));
  EXPECT_THAT(coordinator_text,
              ::testing::HasSubstr("peco_rpc_server_handled_total{code=\"NOT_FOUND\",method="
                                   "\"GetJob\",service=\"JobService\"} 1"));
  EXPECT_THAT(coordinator_text,
              ::testing::ContainsRegex("peco_rpc_server_handled_total\\{code=\"OK\",method="
                                       "\"Heartbeat\",service=\"WorkerService\"\\} [1-9]"));
  EXPECT_THAT(coordinator_text, ::testing::HasSubstr("peco_rpc_server_handling_seconds_bucket"));
  for (const std::string& text : {coordinator_text, cluster_.WorkerMetrics(0)}) {
    EXPECT_THAT(text, ::testing::ContainsRegex("peco_build_info\\{commit=\"[0-9a-z-]+\","
                                               "version=\"[0-9.]+\"\\} 1"));
  }

  // Both exporters follow Prometheus' naming and HELP conventions, as promtool checks them.
  for (const auto& [name, body] : {std::pair{"coordinator", cluster_.CoordinatorMetrics()},
                                   std::pair{"worker", cluster_.WorkerMetrics(0)}}) {
    const std::string file = absl::StrCat(cluster_.root(), "/", name, ".metrics");
    std::ofstream(file) << body;
    const std::string command =
        absl::StrCat("promtool check metrics < '", file, "' > '", file, ".lint' 2>&1");
    EXPECT_EQ(std::system(command.c_str()), 0)
        << name << ": " << ReadFileToString(file + ".lint").value_or("");
    EXPECT_THAT(body, ::testing::HasSubstr("# HELP peco_"));
  }
}

}  // namespace
}  // namespace peco::e2e
