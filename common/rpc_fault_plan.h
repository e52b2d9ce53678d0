// RPC fault plans: which calls of which methods a process loses on purpose, for reliability tests
// against real processes (docs/RELIABILITY.md). Off unless a plan is given (peco-worker and
// peco-coordinator take --rpc_faults or $PECO_RPC_FAULTS).
//
// A plan names, per method, what is lost and for how many calls:
//   "ReportProgress:response:3,Heartbeat:request:2"
// `request`: the call never reaches the server's logic (the caller sees UNAVAILABLE).
// `response`: the server receives and acts on the call, then the answer is lost (the caller sees
// UNAVAILABLE), so the caller retries something that already happened. The first N calls of
// that method are affected, later ones pass.
//
// Thread-safety: RpcFaultPlan is thread-safe; ParseRpcFaults is a pure function.
#ifndef PECO_COMMON_RPC_FAULT_PLAN_H_
#define PECO_COMMON_RPC_FAULT_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace peco {

struct RpcFault {
  bool drop_response = false;  // false: drop the request
  int remaining = 0;           // calls still to lose
};

// What happens to one call.
enum class RpcLoss { kNone, kRequest, kResponse };

// Parses a plan; InvalidArgument naming the bad entry (and the methods allowed, `known_methods`).
absl::StatusOr<std::map<std::string, RpcFault>> ParseRpcFaults(
    absl::string_view plan, const std::vector<std::string>& known_methods);

class RpcFaultPlan {
 public:
  explicit RpcFaultPlan(std::map<std::string, RpcFault> faults);
  RpcFaultPlan(const RpcFaultPlan&) = delete;
  RpcFaultPlan& operator=(const RpcFaultPlan&) = delete;

  bool empty() const { return empty_; }

  // Decides the fate of the next call of `method`, counting it.
  RpcLoss Next(absl::string_view method);

  // Calls of `method` lost so far (requests and responses).
  int lost(absl::string_view method) const;

 private:
  const bool empty_;
  mutable absl::Mutex mu_;
  std::map<std::string, RpcFault, std::less<>> faults_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int, std::less<>> lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco

#endif  // PECO_COMMON_RPC_FAULT_PLAN_H_
