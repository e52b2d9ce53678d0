// FaultyCoordinatorClient: lost requests never reach the coordinator, lost responses do, and
// only the first N calls of the named method are lost.
#include "worker/faulty_coordinator_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/worker/fake_coordinator_client.h"

namespace peco::worker {
namespace {

using ::testing::HasSubstr;

TEST(ParseRpcFaultsTest, ReadsEachEntry) {
  absl::StatusOr<std::map<std::string, RpcFault>> faults =
      ParseRpcFaults("ReportProgress:response:3, Heartbeat:request:2", WorkerRpcMethods());
  ASSERT_TRUE(faults.ok()) << faults.status();
  ASSERT_EQ(faults->size(), 2u);
  EXPECT_TRUE(faults->at("ReportProgress").drop_response);
  EXPECT_EQ(faults->at("ReportProgress").remaining, 3);
  EXPECT_FALSE(faults->at("Heartbeat").drop_response);
  EXPECT_EQ(faults->at("Heartbeat").remaining, 2);
  EXPECT_TRUE(ParseRpcFaults("", WorkerRpcMethods())->empty());
}

TEST(ParseRpcFaultsTest, BadEntriesAreNamed) {
  for (const std::string plan :
       {"Heartbeat", "Heartbeat:both:1", "Heartbeat:request:0", "Heartbeat:request:x",
        "SubmitJob:request:1", "Heartbeat:request:1,Heartbeat:response:1"}) {
    absl::StatusOr<std::map<std::string, RpcFault>> faults =
        ParseRpcFaults(plan, WorkerRpcMethods());
    ASSERT_FALSE(faults.ok()) << plan;
    EXPECT_EQ(faults.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(faults.status().message()), HasSubstr("rpc faults: '"));
  }
}

TEST(FaultyCoordinatorClientTest, LostRequestsNeverArrive) {
  FakeCoordinatorClient inner;
  FaultyCoordinatorClient client(&inner,
                                 *ParseRpcFaults("Heartbeat:request:2", WorkerRpcMethods()));
  v1::HeartbeatRequest request;
  request.set_worker_id("worker-1");
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<v1::HeartbeatResponse> answer = client.Heartbeat(request);
    EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(answer.status().message()), HasSubstr("Heartbeat request was lost"));
  }
  EXPECT_TRUE(inner.heartbeats.empty());
  EXPECT_TRUE(client.Heartbeat(request).ok());
  EXPECT_EQ(inner.heartbeats.size(), 1u);
  EXPECT_EQ(client.lost("Heartbeat"), 2);
}

TEST(FaultyCoordinatorClientTest, LostResponsesArriveButAnswerUnavailable) {
  FakeCoordinatorClient inner;
  FaultyCoordinatorClient client(&inner,
                                 *ParseRpcFaults("ReportProgress:response:1", WorkerRpcMethods()));
  std::vector<v1::ReportProgressRequest> reports(2);
  absl::StatusOr<v1::ReportProgressResponse> lost = client.ReportProgress(reports);
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(inner.report_calls, 1) << "the coordinator got the call";
  EXPECT_TRUE(client.ReportProgress(reports).ok());
  EXPECT_EQ(inner.report_calls, 2);
  // Other methods are untouched.
  EXPECT_TRUE(client.Register(v1::RegisterRequest()).ok());
  EXPECT_EQ(client.lost("Register"), 0);
}

}  // namespace
}  // namespace peco::worker
