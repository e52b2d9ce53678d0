#include "coordinator/job_state_machine.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>

namespace peco::coordinator {
namespace {

constexpr v1::JobState kAll[] = {
    v1::JOB_STATE_QUEUED,  v1::JOB_STATE_WAITING,    v1::JOB_STATE_ASSIGNED,
    v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING, v1::JOB_STATE_SUCCEEDED,
    v1::JOB_STATE_FAILED,  v1::JOB_STATE_CANCELLED,
};

TEST(JobStateMachineTest, ExactlyTheDesignTransitionsAreLegal) {
  using S = v1::JobState;
  const std::set<std::pair<S, S>> legal = {
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_WAITING},
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_ASSIGNED},
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_QUEUED, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_WAITING, v1::JOB_STATE_QUEUED},
      {v1::JOB_STATE_WAITING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_WAITING, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RESTARTING},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_ASSIGNED},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_FAILED},
      {v1::JOB_STATE_RESTARTING, v1::JOB_STATE_CANCELLED},
      {v1::JOB_STATE_FAILED, v1::JOB_STATE_RESTARTING},
      {v1::JOB_STATE_CANCELLED, v1::JOB_STATE_RESTARTING},
  };
  for (S from : kAll) {
    for (S to : kAll) {
      bool expected = legal.count({from, to}) > 0;
      EXPECT_EQ(IsLegalTransition(from, to), expected)
          << JobStateName(from) << " -> " << JobStateName(to);
      EXPECT_EQ(CheckTransition(from, to).ok(), expected);
      if (!expected) {
        EXPECT_EQ(CheckTransition(from, to).code(), absl::StatusCode::kFailedPrecondition);
      }
    }
  }
}

TEST(JobStateMachineTest, SucceededIsFinal) {
  for (v1::JobState to : kAll) EXPECT_FALSE(IsLegalTransition(v1::JOB_STATE_SUCCEEDED, to));
}

TEST(JobStateMachineTest, RefusedTransitionNamesBothStates) {
  absl::Status status = CheckTransition(v1::JOB_STATE_QUEUED, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(status.message(), "illegal job state transition queued -> succeeded");
}

TEST(JobStateMachineTest, UnspecifiedOrUnknownStatesAreInvalidArguments) {
  EXPECT_EQ(CheckTransition(v1::JOB_STATE_UNSPECIFIED, v1::JOB_STATE_QUEUED).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckTransition(v1::JOB_STATE_QUEUED, static_cast<v1::JobState>(42)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(JobStateName(static_cast<v1::JobState>(42)), "unknown");
}

TEST(JobStateMachineTest, TerminalAndDeviceHoldingStates) {
  std::set<v1::JobState> terminal, holding;
  for (v1::JobState s : kAll) {
    if (IsTerminal(s)) terminal.insert(s);
    if (HoldsDevices(s)) holding.insert(s);
  }
  EXPECT_EQ(terminal, (std::set<v1::JobState>{v1::JOB_STATE_SUCCEEDED, v1::JOB_STATE_FAILED,
                                              v1::JOB_STATE_CANCELLED}));
  EXPECT_EQ(holding, (std::set<v1::JobState>{v1::JOB_STATE_ASSIGNED, v1::JOB_STATE_RUNNING}));
}

}  // namespace
}  // namespace peco::coordinator
