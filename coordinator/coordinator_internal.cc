#include "coordinator/coordinator_internal.h"

#include <openssl/rand.h>

#include <algorithm>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace peco::coordinator::internal {
namespace {

constexpr int kListPageSize = 500;

}  // namespace

// Every job in the given states, all pages.
absl::StatusOr<std::vector<v1::Job>> AllJobs(JobStore* store, std::vector<v1::JobState> states) {
  std::vector<v1::Job> jobs;
  JobQuery query;
  query.states = std::move(states);
  query.page_size = kListPageSize;
  while (true) {
    ASSIGN_OR_RETURN(JobPage page, store->ListJobs(query));
    for (v1::Job& job : page.jobs) jobs.push_back(std::move(job));
    if (page.next_page_token.empty()) return jobs;
    query.page_token = page.next_page_token;
  }
}

bool PlacedOn(const v1::Attempt& attempt, const std::string& worker_id) {
  for (const v1::RankPlacement& placement : attempt.placements()) {
    if (placement.worker_id() == worker_id) return true;
  }
  return false;
}

const v1::RankPlacement* PlacementOf(const v1::Attempt& attempt, const std::string& worker_id) {
  for (const v1::RankPlacement& placement : attempt.placements()) {
    if (placement.worker_id() == worker_id) return &placement;
  }
  return nullptr;
}

bool HoldsRankZero(const v1::Attempt& attempt, const std::string& worker_id) {
  const v1::RankPlacement* placement = PlacementOf(attempt, worker_id);
  if (placement == nullptr) return false;
  return std::find(placement->ranks().begin(), placement->ranks().end(), 0) !=
         placement->ranks().end();
}

std::string NewWorkerId() {
  unsigned char bytes[6];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::StrCat("worker-", absl::ToUnixMicros(absl::Now()));
  }
  return absl::StrCat("worker-", absl::BytesToHexString(absl::string_view(
                                     reinterpret_cast<const char*>(bytes), sizeof(bytes))));
}

std::string CheckpointIdFor(const v1::CheckpointHeader& header) {
  return absl::StrFormat("%s-a%d-step-%012d", header.job_id(), header.attempt(), header.step());
}

void Log(const std::string& line) {
  // One write per line: std::cerr is unbuffered, and jobs log several lines each.
  const std::string text = absl::StrCat("peco-coordinator: ", line, "\n");
  std::cerr.write(text.data(), static_cast<std::streamsize>(text.size()));
}

}  // namespace peco::coordinator::internal
