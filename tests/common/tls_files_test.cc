#include "common/tls_files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/test_util/files.h"
#include "tests/test_util/test_certificates.h"

namespace peco {
namespace {

class TlsFilesTest : public ::testing::Test {
 protected:
  // One directory of certificates for the whole suite.
  static void SetUpTestSuite() {
    temp_ = new testing::ScopedTempDir("peco-tls");
    ASSERT_TRUE(testing::MakeCertificateAuthority(temp_->path(), "ca"));
    ASSERT_TRUE(testing::MakeSignedCertificate(temp_->path(), "ca", "server"));
    ASSERT_TRUE(testing::MakeSignedCertificate(temp_->path(), "ca", "other"));
  }
  static void TearDownTestSuite() {
    delete temp_;
    temp_ = nullptr;
  }
  static std::string Path(const std::string& name) { return temp_->Join(name); }

  static testing::ScopedTempDir* temp_;
};

testing::ScopedTempDir* TlsFilesTest::temp_ = nullptr;

TEST_F(TlsFilesTest, LoadsAMatchingCertificateKeyAndCa) {
  TlsFiles files;
  files.cert = Path("server.pem");
  files.key = Path("server.key");
  files.ca = Path("ca.pem");
  absl::StatusOr<TlsMaterial> material = LoadTlsFiles(files);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_NE(material->cert_chain.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(material->private_key.find("PRIVATE KEY"), std::string::npos);
  EXPECT_NE(material->root_certs.find("BEGIN CERTIFICATE"), std::string::npos);
}

TEST_F(TlsFilesTest, CaAloneIsEnoughForAClient) {
  TlsFiles files;
  files.ca = Path("ca.pem");
  absl::StatusOr<TlsMaterial> material = LoadTlsFiles(files);
  ASSERT_TRUE(material.ok()) << material.status();
  EXPECT_TRUE(material->cert_chain.empty());
  EXPECT_TRUE(material->private_key.empty());
}

TEST_F(TlsFilesTest, CertificateWithoutKeyIsRefusedNamingBothFlags) {
  TlsFiles files;
  files.cert = Path("server.pem");
  absl::Status status = LoadTlsFiles(files).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--tls_cert and --tls_key"), std::string::npos) << status;
}

TEST_F(TlsFilesTest, KeyOfAnotherCertificateIsRefused) {
  TlsFiles files;
  files.cert = Path("server.pem");
  files.key = Path("other.key");
  absl::Status status = LoadTlsFiles(files).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("does not belong to the certificate"), std::string::npos)
      << status;
}

TEST_F(TlsFilesTest, SwappedCertificateAndKeyAreRefused) {
  TlsFiles files;
  files.cert = Path("server.key");
  files.key = Path("server.pem");
  absl::Status status = LoadTlsFiles(files).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(
      status.message().find("--tls_cert: " + Path("server.key") + " holds no PEM certificate"),
      std::string::npos)
      << status;
}

TEST_F(TlsFilesTest, MissingCaFileIsNotFoundNamingTheFlag) {
  TlsFiles files;
  files.ca = Path("nowhere.pem");
  files.ca_flag = "--tls_client_ca";
  absl::Status status = LoadTlsFiles(files).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("--tls_client_ca"), std::string::npos) << status;
  EXPECT_NE(status.message().find("nowhere.pem"), std::string::npos) << status;
}

TEST_F(TlsFilesTest, KeyFileWithoutKeyIsRefused) {
  std::ofstream(Path("garbage.key")) << "not a key\n";
  TlsFiles files;
  files.cert = Path("server.pem");
  files.key = Path("garbage.key");
  absl::Status status = LoadTlsFiles(files).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("--tls_key"), std::string::npos) << status;
}

}  // namespace
}  // namespace peco
