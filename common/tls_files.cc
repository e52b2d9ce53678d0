#include "common/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace peco {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

absl::StatusOr<std::string> ReadNamed(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  }
  return text;
}

// The first certificate in `pem`; InvalidArgument naming the flag when there is none.
absl::StatusOr<X509Ptr> FirstCertificate(const std::string& flag, const std::string& path,
                                         const std::string& pem) {
  BioPtr bio = MemoryBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", path, " holds no PEM certificate (expected '-----BEGIN CERTIFICATE-----')"));
  }
  return cert;
}

}  // namespace

absl::Status TlsFiles::Validate() const {
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_flag, " and ", key_flag, " go together: give both or neither"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TlsMaterial> LoadTlsFiles(const TlsFiles& files) {
  if (absl::Status valid = files.Validate(); !valid.ok()) return valid;
  TlsMaterial material;
  if (!files.ca.empty()) {
    absl::StatusOr<std::string> ca = ReadNamed(files.ca_flag, files.ca);
    if (!ca.ok()) return ca.status();
    if (absl::StatusOr<X509Ptr> first = FirstCertificate(files.ca_flag, files.ca, *ca);
        !first.ok()) {
      return first.status();
    }
    material.root_certs = *std::move(ca);
  }
  if (files.cert.empty()) return material;

  absl::StatusOr<std::string> cert = ReadNamed(files.cert_flag, files.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadNamed(files.key_flag, files.key);
  if (!key.ok()) return key.status();
  absl::StatusOr<X509Ptr> leaf = FirstCertificate(files.cert_flag, files.cert, *cert);
  if (!leaf.ok()) return leaf.status();
  BioPtr key_bio = MemoryBio(*key);
  KeyPtr private_key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (private_key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(files.key_flag, ": ", files.key,
                     " holds no unencrypted PEM private key (expected '-----BEGIN ... PRIVATE "
                     "KEY-----')"));
  }
  if (X509_check_private_key(leaf->get(), private_key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(files.key_flag, ": the key in ", files.key,
                                                   " does not belong to the certificate in ",
                                                   files.cert, " (", files.cert_flag, ")"));
  }
  material.cert_chain = *std::move(cert);
  material.private_key = *std::move(key);
  return material;
}

}  // namespace peco
