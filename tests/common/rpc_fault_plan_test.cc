#include "common/rpc_fault_plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace peco {
namespace {

const std::vector<std::string> kMethods = {"SubmitJob", "Heartbeat"};

TEST(RpcFaultPlanTest, LosesTheFirstNCallsOfEachNamedMethodOnly) {
  absl::StatusOr<std::map<std::string, RpcFault>> faults =
      ParseRpcFaults("SubmitJob:response:2, Heartbeat:request:1", kMethods);
  ASSERT_TRUE(faults.ok()) << faults.status();
  RpcFaultPlan plan(*faults);
  EXPECT_FALSE(plan.empty());
  EXPECT_EQ(plan.Next("SubmitJob"), RpcLoss::kResponse);
  EXPECT_EQ(plan.Next("Heartbeat"), RpcLoss::kRequest);
  EXPECT_EQ(plan.Next("SubmitJob"), RpcLoss::kResponse);
  EXPECT_EQ(plan.Next("SubmitJob"), RpcLoss::kNone);
  EXPECT_EQ(plan.Next("Heartbeat"), RpcLoss::kNone);
  EXPECT_EQ(plan.Next("GetJob"), RpcLoss::kNone);
  EXPECT_EQ(plan.lost("SubmitJob"), 2);
  EXPECT_EQ(plan.lost("Heartbeat"), 1);
  EXPECT_EQ(plan.lost("GetJob"), 0);
}

TEST(RpcFaultPlanTest, EmptyPlanLosesNothing) {
  RpcFaultPlan plan(*ParseRpcFaults("", kMethods));
  EXPECT_TRUE(plan.empty());
  EXPECT_EQ(plan.Next("SubmitJob"), RpcLoss::kNone);
}

TEST(RpcFaultPlanTest, UnknownMethodIsRefusedListingTheKnownOnes) {
  absl::Status status = ParseRpcFaults("Submit:response:1", kMethods).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'Submit:response:1'"), std::string::npos) << status;
  EXPECT_NE(status.message().find("SubmitJob, Heartbeat"), std::string::npos) << status;
}

}  // namespace
}  // namespace peco
