// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TensorBoard's record
// framing (common/tensorboard_events.h), and its masked form.
//
// Thread-safe: pure functions.
#ifndef PECO_COMMON_CRC32C_H_
#define PECO_COMMON_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace peco {

// CRC-32C of `data` (Crc32c("123456789") == 0xE3069283).
uint32_t Crc32c(absl::string_view data);

// The masked CRC of a record's length or payload: ((crc >> 15) | (crc << 17)) + 0xA282EAD8, so
// that a checksum of data that itself holds checksums is not degenerate.
uint32_t MaskedCrc32c(absl::string_view data);

}  // namespace peco

#endif  // PECO_COMMON_CRC32C_H_
