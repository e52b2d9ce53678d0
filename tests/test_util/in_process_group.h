// A data-parallel group whose ranks are threads of one process, for in-process tests of code
// that runs collectives (the training loop): each rank gets a DistributedContext backed by a
// CollectiveGroup that meets its peers in shared memory instead of Gloo sockets.
//
//   InProcessGroup group(2);
//   std::thread rank1([&] { auto context = group.Join(1); ... });
//   auto context = group.Join(0); ...
//
// Every collective waits until all ranks have called it (in the same order on every rank, as
// with c10d), then each rank gets the result; a rank that never arrives makes its peers wait
// up to `timeout` and fail with DeadlineExceeded. Thread-safe.
#ifndef PECO_TESTS_TEST_UTIL_IN_PROCESS_GROUP_H_
#define PECO_TESTS_TEST_UTIL_IN_PROCESS_GROUP_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "torch/torch.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/distributed_backend.h"

namespace peco::testing {

class InProcessGroup {
 public:
  explicit InProcessGroup(int world_size, absl::Duration timeout = absl::Seconds(60))
      : world_size_(world_size), timeout_(timeout) {}

  // The context of rank `rank` (call once per rank, from the thread that will use it).
  absl::StatusOr<std::unique_ptr<trainer::DistributedContext>> Join(int rank) {
    trainer::DistributedOptions options;
    options.rank = rank;
    options.world_size = world_size_;
    return trainer::DistributedContext::CreateWithGroup(options,
                                                        std::make_unique<Member>(this, rank));
  }

 private:
  // One collective in progress: every rank's contribution, summed or taken from the root.
  struct Round {
    std::vector<std::vector<torch::Tensor>> inputs;  // per rank
    int arrived = 0;
    int collected = 0;
    std::vector<torch::Tensor> result;
  };

  class Member : public trainer::CollectiveGroup {
   public:
    Member(InProcessGroup* group, int rank) : group_(group), rank_(rank) {}
    absl::Status AllReduceSum(std::vector<torch::Tensor>& tensors) override {
      return group_->Run(rank_, tensors, /*root=*/-1);
    }
    absl::Status Broadcast(std::vector<torch::Tensor>& tensors, int root) override {
      return group_->Run(rank_, tensors, root);
    }
    absl::Status Barrier() override {
      std::vector<torch::Tensor> none;
      return group_->Run(rank_, none, /*root=*/-1);
    }

   private:
    InProcessGroup* group_;
    int rank_;
  };

  // Contributes `tensors` to the current round; when every rank has, writes the result (the sum,
  // or rank `root`'s tensors when root >= 0) into `tensors` on every rank.
  absl::Status Run(int rank, std::vector<torch::Tensor>& tensors, int root) {
    absl::MutexLock lock(&mu_);
    // Wait for the previous round to be collected by every rank.
    auto previous_done = [this] { return round_.arrived < world_size_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&previous_done), timeout_)) {
      return absl::DeadlineExceededError("in-process group: a previous collective never ended");
    }
    if (round_.inputs.empty()) round_.inputs.resize(world_size_);
    std::vector<torch::Tensor> mine;
    for (const torch::Tensor& t : tensors) mine.push_back(t.detach().clone());
    round_.inputs[rank] = std::move(mine);
    if (++round_.arrived == world_size_) {
      round_.result.clear();
      for (size_t i = 0; i < tensors.size(); ++i) {
        if (root >= 0) {
          round_.result.push_back(round_.inputs[root][i]);
        } else {
          torch::Tensor sum = round_.inputs[0][i].clone();
          for (int r = 1; r < world_size_; ++r) sum += round_.inputs[r][i];
          round_.result.push_back(sum);
        }
      }
    }
    auto complete = [this] { return round_.arrived == world_size_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&complete), timeout_)) {
      return absl::DeadlineExceededError(
          absl::StrCat("in-process group: rank ", rank, " waited for its peers in vain"));
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      torch::NoGradGuard no_grad;
      tensors[i].copy_(round_.result[i]);
    }
    if (++round_.collected == world_size_) round_ = Round();
    return absl::OkStatus();
  }

  const int world_size_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  Round round_ ABSL_GUARDED_BY(mu_);
};

}  // namespace peco::testing

#endif  // PECO_TESTS_TEST_UTIL_IN_PROCESS_GROUP_H_
