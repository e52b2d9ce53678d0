// Certificates for TLS tests, made by Debian's `openssl` program (scripts/setup installs it):
// a certificate authority and leaf certificates it signs, valid for 127.0.0.1 and localhost as
// servers and as clients. Keys are unencrypted P-256.
//
// Header-only; each function writes into `dir` and returns false (after printing the failing
// command) when openssl fails. Not thread-safe across calls that share a directory.
#ifndef PECO_TESTS_TEST_UTIL_TEST_CERTIFICATES_H_
#define PECO_TESTS_TEST_UTIL_TEST_CERTIFICATES_H_

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

namespace peco::testing {

inline bool RunOpenssl(const std::string& arguments) {
  const std::string command = "openssl " + arguments + " >/dev/null 2>&1";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "failed: " << command << "\n";
    return false;
  }
  return true;
}

// Writes `dir`/`name`.pem and `dir`/`name`.key: a self-signed CA certificate and its key.
inline bool MakeCertificateAuthority(const std::string& dir, const std::string& name) {
  return RunOpenssl(
      "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=" +
      name + " -keyout '" + dir + "/" + name + ".key' -out '" + dir + "/" + name + ".pem'");
}

// Writes `dir`/`name`.pem and `dir`/`name`.key: a certificate for CN=`name`, signed by the CA
// `dir`/`ca`.pem, usable by a server at 127.0.0.1/localhost and as a client.
inline bool MakeSignedCertificate(const std::string& dir, const std::string& ca,
                                  const std::string& name) {
  const std::string base = dir + "/" + name;
  const std::string extensions = base + ".ext";
  std::ofstream(extensions) << "basicConstraints=CA:FALSE\n"
                               "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                               "extendedKeyUsage=serverAuth,clientAuth\n";
  return RunOpenssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" +
                    name + " -keyout '" + base + ".key' -out '" + base + ".csr'") &&
         RunOpenssl("x509 -req -days 2 -in '" + base + ".csr' -CA '" + dir + "/" + ca +
                    ".pem' -CAkey '" + dir + "/" + ca + ".key' -CAcreateserial -extfile '" +
                    extensions + "' -out '" + base + ".pem'");
}

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_TEST_CERTIFICATES_H_
