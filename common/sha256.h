// SHA-256 digests of byte strings and files, as lowercase hex (the `sha256sum` format).
//
// Thread-safe: every function is pure or works on its own file handle.
#ifndef PECO_COMMON_SHA256_H_
#define PECO_COMMON_SHA256_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace peco {

// Hex digest of `data`.
std::string Sha256Hex(absl::string_view data);

// Hex digest of the file at `path`, streamed in blocks. NotFound or Internal when the file
// cannot be read; the message names the path.
absl::StatusOr<std::string> Sha256FileHex(const std::string& path);

// Incremental hasher for data that arrives in chunks (checkpoint uploads). Not thread-safe.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(absl::string_view data);
  // Returns the hex digest; the hasher must not be used afterwards.
  std::string FinishHex();

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace peco

#endif  // PECO_COMMON_SHA256_H_
