// TLS and mutual TLS end to end on loopback: a coordinator serving TLS that asks workers for a
// client certificate, workers with and without one (and one signed by another CA), and the CLI
// over TLS and in clear text. Certificates come from tests/test_util/test_certificates.h.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "common/file_util.h"
#include "tests/e2e/cluster.h"
#include "tests/test_util/test_certificates.h"

namespace peco::e2e {
namespace {

using ::testing::HasSubstr;

// Polls until `path` contains `text` (a daemon's log line), or the timeout passes.
bool WaitForLogLine(const std::string& path, const std::string& text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (absl::StrContains(ReadFileToString(path).value_or(""), text)) return true;
    absl::SleepFor(absl::Milliseconds(100));  // polling a condition, not timing
  }
  return false;
}

class TlsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = cluster_.root() + "/pki";
    std::filesystem::create_directories(pki_);
    ASSERT_TRUE(testing::MakeCertificateAuthority(pki_, "ca"));
    ASSERT_TRUE(testing::MakeSignedCertificate(pki_, "ca", "coordinator"));
    ASSERT_TRUE(testing::MakeSignedCertificate(pki_, "ca", "worker"));
    ASSERT_TRUE(testing::MakeCertificateAuthority(pki_, "rogue-ca"));
    ASSERT_TRUE(testing::MakeSignedCertificate(pki_, "rogue-ca", "rogue-worker"));
  }
  void TearDown() override {
    if (HasFailure()) cluster_.DumpLogs();
  }
  std::string Pem(const std::string& name) const { return pki_ + "/" + name + ".pem"; }
  std::string Key(const std::string& name) const { return pki_ + "/" + name + ".key"; }

  Cluster cluster_;
  std::string pki_;
};

TEST_F(TlsE2eTest, OnlyWorkersWithACertificateFromTheClientCaJoinAndTheCliNeedsTls) {
  cluster_.UseTls(Pem("ca"));
  cluster_.StartCoordinator({"--tls_cert", Pem("coordinator"), "--tls_key", Key("coordinator"),
                             "--tls_client_ca", Pem("ca")});
  ASSERT_TRUE(cluster_.coordinator()->running());

  const int trusted = cluster_.StartWorker(
      1, {"--tls_ca", Pem("ca"), "--tls_cert", Pem("worker"), "--tls_key", Key("worker")});
  const int anonymous = cluster_.StartWorker(1, {"--tls_ca", Pem("ca")});
  const int rogue = cluster_.StartWorker(
      1,
      {"--tls_ca", Pem("ca"), "--tls_cert", Pem("rogue-worker"), "--tls_key", Key("rogue-worker")});
  const int plaintext = cluster_.StartWorker(1);
  ASSERT_TRUE(cluster_.WaitForWorkers(1));

  // The worker without a certificate reaches the service and is refused by name; the others
  // never complete a handshake (a certificate from another CA, or no TLS at all).
  EXPECT_TRUE(WaitForLogLine(cluster_.worker(anonymous)->log_path(),
                             "requires a client certificate", absl::Seconds(30)));
  EXPECT_TRUE(WaitForLogLine(cluster_.worker(rogue)->log_path(),
                             "registering with the coordinator failed", absl::Seconds(30)));
  EXPECT_TRUE(WaitForLogLine(cluster_.worker(plaintext)->log_path(),
                             "registering with the coordinator failed", absl::Seconds(30)));

  // The CLI in clear text cannot talk to a TLS coordinator and says what to give.
  CommandResult refused = cluster_.Peco({"--timeout", "3s", "workers"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.error, HasSubstr("--tls_ca"));

  // Over TLS (no client certificate needed for users) a job runs on the trusted worker.
  CommandResult submit =
      cluster_.Peco({"--tls_ca", Pem("ca"), "submit", cluster_.WriteSpec("tls", 4, 2)});
  ASSERT_EQ(submit.exit_code, 0) << submit.output << submit.error;
  const std::string job_id = JobIdIn(submit.output);
  absl::StatusOr<v1::GetJobResponse> done = cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->attempts(0).placements(0).worker_id(), cluster_.WorkerId(trusted));
  // With mutual TLS the certificate names the worker: it is registered as its common name.
  EXPECT_EQ(cluster_.WorkerId(trusted), "worker");

  // Only the trusted worker ever registered.
  CommandResult workers = cluster_.Peco({"--tls_ca", Pem("ca"), "-o", "name", "workers"});
  ASSERT_EQ(workers.exit_code, 0) << workers.error;
  EXPECT_EQ(workers.output, cluster_.WorkerId(trusted) + "\n");
}

TEST_F(TlsE2eTest, BadTlsFilesStopTheDaemonsAtStartNamingTheFlag) {
  // The key of another certificate: the coordinator exits 2 and names --tls_key.
  cluster_.StartCoordinator({"--tls_cert", Pem("coordinator"), "--tls_key", Key("worker")});
  ASSERT_NE(cluster_.coordinator(), nullptr);
  const ExitStatus exited = cluster_.coordinator()->Wait();
  EXPECT_EQ(exited.exit_code, 2);
  EXPECT_THAT(ReadFileToString(cluster_.coordinator()->log_path()).value_or(""),
              HasSubstr("--tls_key: the key in"));

  // A worker given a client certificate but no CA to verify the coordinator with.
  const int worker =
      cluster_.StartWorker(1, {"--tls_cert", Pem("worker"), "--tls_key", Key("worker")});
  const ExitStatus worker_exit = cluster_.worker(worker)->Wait();
  EXPECT_EQ(worker_exit.exit_code, 2);
  EXPECT_THAT(ReadFileToString(cluster_.worker(worker)->log_path()).value_or(""),
              HasSubstr("--tls_cert: needs --tls_ca"));
}

}  // namespace
}  // namespace peco::e2e
