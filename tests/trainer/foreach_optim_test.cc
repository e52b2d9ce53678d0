// ForeachAdamW and ClipGradNorm against LibTorch's AdamW and clip_grad_norm_: the same arithmetic,
// bit for bit on the CPU, within rounding on a GPU.
#include "trainer/engine/foreach_optim.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "trainer/engine/module_state.h"

namespace peco::trainer {
namespace {

// Two parameter groups as the BEiT trainers build them (decayed weights, undecayed biases),
// one parameter left without a gradient on odd steps so that step counts diverge.
struct Twin {
  std::vector<torch::Tensor> params;
  template <typename Options>
  std::vector<torch::optim::OptimizerParamGroup> Groups() const {
    auto decayed = std::make_unique<Options>(1e-2);
    decayed->weight_decay(0.05).betas({0.9, 0.98}).eps(1e-8);
    auto undecayed = std::make_unique<Options>(1e-2);
    undecayed->weight_decay(0.0).betas({0.9, 0.98}).eps(1e-8);
    return {torch::optim::OptimizerParamGroup({params[0], params[1]}, std::move(decayed)),
            torch::optim::OptimizerParamGroup({params[2]}, std::move(undecayed))};
  }
};

Twin MakeTwin(const torch::Device& device) {
  torch::manual_seed(3);
  Twin twin;
  for (auto shape : {std::vector<int64_t>{16, 8}, {4, 3, 5}, {16}}) {
    twin.params.push_back(torch::randn(shape).to(device).requires_grad_(true));
  }
  return twin;
}

Twin CloneTwin(const Twin& twin) {
  Twin copy;
  for (const auto& p : twin.params) copy.params.push_back(p.detach().clone().requires_grad_(true));
  return copy;
}

// Gives both twins the same gradients for `step` (none for params[1] on odd steps).
void SetGrads(Twin& a, Twin& b, int step) {
  for (size_t i = 0; i < a.params.size(); ++i) {
    if (i == 1 && step % 2 == 1) {
      a.params[i].mutable_grad() = torch::Tensor();
      b.params[i].mutable_grad() = torch::Tensor();
      continue;
    }
    torch::Tensor g = torch::randn(a.params[i].sizes()).to(a.params[i].device());
    a.params[i].mutable_grad() = g.clone();
    b.params[i].mutable_grad() = g.clone();
  }
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.detach().cpu() - b.detach().cpu()).abs().max().item<double>();
}

// Six steps of `Ours` and `Theirs` (its LibTorch base) from the same start with the same
// gradients; then the base class resumes from `Ours`'s serialised state.
template <typename Ours, typename Theirs, typename Options>
void ExpectSameSteps(const torch::Device& device, double tolerance) {
  Twin ours = MakeTwin(device);
  Twin theirs = CloneTwin(ours);
  Ours foreach_optimizer(ours.Groups<Options>(), Options(1e-2));
  Theirs optimizer(theirs.Groups<Options>(), Options(1e-2));
  auto expect_same = [&](const Twin& a, const Twin& b, int step) {
    for (size_t i = 0; i < a.params.size(); ++i) {
      if (tolerance == 0) {
        EXPECT_TRUE(torch::equal(a.params[i].cpu(), b.params[i].cpu()))
            << "param " << i << " step " << step << " differs by "
            << MaxAbsDiff(a.params[i], b.params[i]);
      } else {
        EXPECT_LE(MaxAbsDiff(a.params[i], b.params[i]), tolerance)
            << "param " << i << " step " << step;
      }
    }
  };
  for (int step = 0; step < 6; ++step) {
    SetGrads(ours, theirs, step);
    foreach_optimizer.step();
    optimizer.step();
    expect_same(ours, theirs, step);
  }
  // The state is the base class's: it serialises, and the base class continues from it.
  absl::StatusOr<std::string> bytes = SerializeOptimizer(foreach_optimizer);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  Twin resumed = CloneTwin(ours);
  Theirs reloaded(resumed.Groups<Options>(), Options(1e-2));
  absl::Status restored = DeserializeOptimizer(*bytes, reloaded);
  ASSERT_TRUE(restored.ok()) << restored;
  SetGrads(ours, resumed, 6);
  foreach_optimizer.step();
  reloaded.step();
  expect_same(ours, resumed, 6);
}

TEST(ForeachAdamWTest, StepsAreBitIdenticalToLibTorchsAdamWOnTheCpu) {
  ExpectSameSteps<ForeachAdamW, torch::optim::AdamW, torch::optim::AdamWOptions>(torch::kCPU, 0.0);
}

TEST(ForeachAdamTest, StepsAreBitIdenticalToLibTorchsAdamOnTheCpu) {
  ExpectSameSteps<ForeachAdam, torch::optim::Adam, torch::optim::AdamOptions>(torch::kCPU, 0.0);
}

// bench/gpu/run runs these on a GPU machine; elsewhere they are skipped.
TEST(ForeachAdamWTest, StepsMatchLibTorchsAdamWOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ExpectSameSteps<ForeachAdamW, torch::optim::AdamW, torch::optim::AdamWOptions>(
      torch::Device(torch::kCUDA, 0), 1e-6);
}

TEST(ForeachAdamTest, StepsMatchLibTorchsAdamOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ExpectSameSteps<ForeachAdam, torch::optim::Adam, torch::optim::AdamOptions>(
      torch::Device(torch::kCUDA, 0), 1e-6);
}

TEST(ForeachAdamWTest, AmsgradTakesTheBaseStep) {
  Twin ours = MakeTwin(torch::kCPU);
  Twin theirs = CloneTwin(ours);
  ForeachAdamW foreach_adamw(ours.params, torch::optim::AdamWOptions(1e-2).amsgrad(true));
  torch::optim::AdamW adamw(theirs.params, torch::optim::AdamWOptions(1e-2).amsgrad(true));
  for (int step = 0; step < 3; ++step) {
    SetGrads(ours, theirs, step);
    foreach_adamw.step();
    adamw.step();
  }
  for (size_t i = 0; i < ours.params.size(); ++i) {
    EXPECT_TRUE(torch::equal(ours.params[i], theirs.params[i])) << "param " << i;
  }
}

void ExpectSameClipping(const torch::Device& device, double max_norm) {
  Twin ours = MakeTwin(device);
  Twin theirs = CloneTwin(ours);
  SetGrads(ours, theirs, /*step=*/1);  // params[1] has no gradient
  const double norm = ClipGradNorm(ours.params, max_norm);
  const double want = torch::nn::utils::clip_grad_norm_(theirs.params, max_norm);
  EXPECT_NEAR(norm, want, 1e-5 * want);
  for (size_t i = 0; i < ours.params.size(); ++i) {
    if (!theirs.params[i].grad().defined()) {
      EXPECT_FALSE(ours.params[i].grad().defined());
      continue;
    }
    EXPECT_LE(MaxAbsDiff(ours.params[i].grad(), theirs.params[i].grad()), 1e-6) << "grad " << i;
  }
  double clipped = 0;
  for (const auto& p : ours.params) {
    if (p.grad().defined()) clipped += p.grad().pow(2).sum().item<double>();
  }
  EXPECT_LE(std::sqrt(clipped), std::min(norm, max_norm) * (1 + 1e-5));
}

TEST(ClipGradNormTest, ScalesToTheBoundLikeLibTorch) {
  ExpectSameClipping(torch::kCPU, 1.0);  // the random gradients' norm is ~11
}

TEST(ClipGradNormTest, LeavesGradientsUnderTheBoundAlone) { ExpectSameClipping(torch::kCPU, 1e3); }

TEST(ClipGradNormTest, NoGradientsIsZero) {
  Twin twin = MakeTwin(torch::kCPU);
  EXPECT_EQ(ClipGradNorm(twin.params, 1.0), 0.0);
}

TEST(ClipGradNormTest, MatchesLibTorchOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  ExpectSameClipping(torch::Device(torch::kCUDA, 0), 1.0);
}

}  // namespace
}  // namespace peco::trainer
