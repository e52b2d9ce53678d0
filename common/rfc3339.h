// Times as peco writes them for people and tools (metrics.jsonl, the CLI's JSON and YAML): RFC
// 3339 in UTC with microseconds, "2026-12-07T23:59:01.123456+00:00".
//
// Thread-safe: pure function.
#ifndef PECO_COMMON_RFC3339_H_
#define PECO_COMMON_RFC3339_H_

#include <string>

#include "absl/time/time.h"

namespace peco {

inline std::string Rfc3339(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6S+00:00", time, absl::UTCTimeZone());
}

}  // namespace peco

#endif  // PECO_COMMON_RFC3339_H_
