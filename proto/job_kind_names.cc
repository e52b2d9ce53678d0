#include "proto/job_kind_names.h"

#include <cctype>

namespace peco::v1 {

std::string JobKindName(JobKind kind) {
  if (kind == JOB_KIND_UNSPECIFIED || !JobKind_IsValid(kind)) return "";
  // JOB_KIND_LINEAR_PROBE -> linear_probe
  std::string name = JobKind_Name(kind).substr(sizeof("JOB_KIND_") - 1);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::optional<JobKind> JobKindFromName(const std::string& name) {
  for (int value = JobKind_MIN; value <= JobKind_MAX; ++value) {
    if (!JobKind_IsValid(value) || value == JOB_KIND_UNSPECIFIED) continue;
    if (JobKindName(static_cast<JobKind>(value)) == name) return static_cast<JobKind>(value);
  }
  return std::nullopt;
}

std::string KnownJobKindNames() {
  std::string names;
  for (int value = JobKind_MIN; value <= JobKind_MAX; ++value) {
    if (!JobKind_IsValid(value) || value == JOB_KIND_UNSPECIFIED) continue;
    if (!names.empty()) names += ", ";
    names += JobKindName(static_cast<JobKind>(value));
  }
  return names;
}

}  // namespace peco::v1
