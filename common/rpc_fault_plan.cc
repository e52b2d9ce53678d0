#include "common/rpc_fault_plan.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace peco {

absl::StatusOr<std::map<std::string, RpcFault>> ParseRpcFaults(
    absl::string_view plan, const std::vector<std::string>& known_methods) {
  std::map<std::string, RpcFault> faults;
  for (absl::string_view raw : absl::StrSplit(plan, ',', absl::SkipWhitespace())) {
    const absl::string_view entry = absl::StripAsciiWhitespace(raw);
    std::vector<std::string> parts = absl::StrSplit(entry, ':');
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("rpc faults: '", entry, "': ", why,
                                                     " (expected METHOD:request|response:COUNT)"));
    };
    if (parts.size() != 3) return bad("three fields separated by ':'");
    bool known = false;
    for (const std::string& method : known_methods) known = known || parts[0] == method;
    if (!known) {
      return bad(absl::StrCat("the method is not one of ", absl::StrJoin(known_methods, ", ")));
    }
    if (parts[1] != "request" && parts[1] != "response") {
      return bad("loses a request or a response");
    }
    RpcFault fault;
    fault.drop_response = parts[1] == "response";
    if (!absl::SimpleAtoi(parts[2], &fault.remaining) || fault.remaining < 1) {
      return bad("the count is an integer >= 1");
    }
    if (!faults.emplace(parts[0], fault).second) return bad("the method is named twice");
  }
  return faults;
}

RpcFaultPlan::RpcFaultPlan(std::map<std::string, RpcFault> faults)
    : empty_(faults.empty()), faults_(faults.begin(), faults.end()) {}

RpcLoss RpcFaultPlan::Next(absl::string_view method) {
  if (empty_) return RpcLoss::kNone;
  absl::MutexLock lock(&mu_);
  auto it = faults_.find(method);
  if (it == faults_.end() || it->second.remaining == 0) return RpcLoss::kNone;
  --it->second.remaining;
  auto [count, inserted] = lost_.try_emplace(std::string(method), 0);
  ++count->second;
  return it->second.drop_response ? RpcLoss::kResponse : RpcLoss::kRequest;
}

int RpcFaultPlan::lost(absl::string_view method) const {
  absl::MutexLock lock(&mu_);
  auto it = lost_.find(method);
  return it == lost_.end() ? 0 : it->second;
}

}  // namespace peco
