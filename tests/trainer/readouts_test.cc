// The readouts of frozen features (trainer/tasks/readouts.h): k-NN votes against a direct
// computation, the linear readout's convergence and validation choice, bad options named, and the
// raw-pixel floors on Fashion-MNIST (mocov3_and_readouts.md section 2: about 84% for both).
#include "trainer/tasks/readouts.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <numeric>
#include <vector>

#include "trainer/data/fashion_mnist.h"
#include "trainer/engine/runtime.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

// The k-NN prediction of one query, computed the plain way: cosine similarities, the k largest,
// votes exp(sim / T) per class, the class with the most.
int64_t DirectKnn(const torch::Tensor& train, const torch::Tensor& labels, const torch::Tensor& q,
                  int64_t classes, int64_t k, double t) {
  std::vector<std::pair<double, int64_t>> sims;
  const double qn = q.norm().item<double>();
  for (int64_t i = 0; i < train.size(0); ++i) {
    const double s = (train[i] * q).sum().item<double>() / (train[i].norm().item<double>() * qn);
    sims.emplace_back(s, labels[i].item<int64_t>());
  }
  std::sort(sims.begin(), sims.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<double> votes(classes, 0.0);
  for (int64_t j = 0; j < k; ++j) votes[sims[j].second] += std::exp(sims[j].first / t);
  return std::max_element(votes.begin(), votes.end()) - votes.begin();
}

TEST(KnnReadoutTest, VotesMatchADirectComputation) {
  torch::manual_seed(3);
  const int64_t classes = 4;
  torch::Tensor train = torch::randn({60, 8});
  torch::Tensor labels = torch::randint(0, classes, {60}, torch::kInt64);
  torch::Tensor test = torch::randn({25, 8});
  std::vector<int64_t> predicted;
  for (int64_t i = 0; i < test.size(0); ++i) {
    predicted.push_back(DirectKnn(train, labels, test[i], classes, 5, 0.07));
  }
  // Test labels set to the direct prediction for the first 15 and to another class after: the
  // readout must score exactly 15 of 25.
  torch::Tensor test_labels = torch::tensor(predicted, torch::kInt64);
  for (int64_t i = 15; i < 25; ++i) test_labels[i] = (predicted[i] + 1) % classes;
  KnnOptions options;
  options.k = 5;
  options.chunk = 7;  // several similarity blocks
  absl::StatusOr<ReadoutScore> score = KnnScore(train, labels, test, test_labels, classes, options);
  ASSERT_TRUE(score.ok()) << score.status();
  EXPECT_DOUBLE_EQ(score->top1, 100.0 * 15 / 25);
  EXPECT_EQ(score->images, 25);
  EXPECT_GE(score->top5, score->top1);
}

TEST(KnnReadoutTest, BadInputIsRefusedNamingTheField) {
  torch::Tensor train = torch::randn({10, 3});
  torch::Tensor labels = torch::zeros({10}, torch::kInt64);
  KnnOptions options;  // k 20 > 10 training features
  absl::StatusOr<ReadoutScore> too_many = KnnScore(train, labels, train, labels, 2, options);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_many.status().message(), HasSubstr("knn.k"));
  options.k = 3;
  options.temperature = 0;
  EXPECT_THAT(KnnScore(train, labels, train, labels, 2, options).status().message(),
              HasSubstr("knn.temperature"));
  options.temperature = 0.07;
  EXPECT_THAT(KnnScore(train, labels + 5, train, labels, 2, options).status().message(),
              HasSubstr("labels in [5, 5], expected [0, 2)"));
  EXPECT_THAT(KnnScore(train, labels, torch::randn({4, 5}), labels.slice(0, 0, 4), 2, options)
                  .status()
                  .message(),
              HasSubstr("dimensions"));
}

// Two Gaussian blobs per class, well apart: separable.
void SeparableData(int64_t per_class, int64_t classes, torch::Tensor* x, torch::Tensor* y) {
  torch::manual_seed(11);
  torch::Tensor centres = 6 * torch::randn({classes, 10});
  *y = torch::arange(classes, torch::kInt64).repeat_interleave(per_class);
  *x = centres.index_select(0, *y) + torch::randn({classes * per_class, 10});
}

TEST(LinearReadoutTest, ConvergesToTheRegularisedOptimumAndSeparatesSeparableData) {
  torch::Tensor x, y;
  SeparableData(50, 3, &x, &y);
  LinearReadoutOptions options;
  options.l2 = {1e-2};
  absl::StatusOr<LinearReadout> readout = FitLinearReadout(x, y, 3, options);
  ASSERT_TRUE(readout.ok()) << readout.status();
  EXPECT_DOUBLE_EQ(ScoreLogits(readout->Logits(x), y).top1, 100.0);
  // At the optimum the gradient of the objective vanishes.
  torch::Tensor w = readout->weight.clone().requires_grad_(true);
  torch::Tensor b = readout->bias.clone().requires_grad_(true);
  torch::Tensor xs = (x - readout->mean) / readout->std;
  torch::Tensor loss = torch::nn::functional::cross_entropy(torch::addmm(b, xs, w.t()), y) +
                       0.5 * 1e-2 * w.pow(2).sum();
  loss.backward();
  EXPECT_LT(w.grad().abs().max().item<double>(), 1e-4);
  EXPECT_LT(b.grad().abs().max().item<double>(), 1e-4);
  EXPECT_NEAR(readout->train_loss, loss.item<double>(), 1e-6);
  // A stronger penalty cannot give a lower optimum of the weaker objective's data term.
  options.l2 = {1.0};
  absl::StatusOr<LinearReadout> strong = FitLinearReadout(x, y, 3, options);
  ASSERT_TRUE(strong.ok());
  EXPECT_GT(strong->train_loss, readout->train_loss);
}

TEST(LinearReadoutTest, TheL2StrengthIsChosenOnTheValidationSplit) {
  torch::Tensor x, y;
  SeparableData(40, 4, &x, &y);
  LinearReadoutOptions options;
  // The second leaves the weights ~1e-9: the (unpenalised) bias decides, near chance.
  options.l2 = {1e-3, 1e9};
  absl::StatusOr<LinearReadout> readout = FitLinearReadout(x, y, 4, options);
  ASSERT_TRUE(readout.ok()) << readout.status();
  ASSERT_EQ(readout->validation_top1.size(), 2u);
  EXPECT_GT(readout->validation_top1[0], readout->validation_top1[1]);
  EXPECT_EQ(readout->l2, 1e-3);
  options.validation_fraction = 1.0;
  EXPECT_THAT(FitLinearReadout(x, y, 4, options).status().message(),
              HasSubstr("linear.validation_fraction"));
  options.l2 = {};
  EXPECT_THAT(FitLinearReadout(x, y, 4, options).status().message(), HasSubstr("linear.l2"));
}

// Raw pixels as the features: every image flattened to 784 values in [0, 1].
void PixelFeatures(const Dataset& dataset, torch::Tensor* x, torch::Tensor* y) {
  *x = torch::empty({dataset.size(), 28 * 28});
  *y = torch::empty({dataset.size()}, torch::kInt64);
  for (int64_t i = 0; i < dataset.size(); ++i) {
    absl::StatusOr<Example> example = dataset.Get(i);
    ASSERT_TRUE(example.ok()) << example.status();
    torch::Tensor pixels =
        torch::from_blob(example->image.pixels.data(),
                         {static_cast<int64_t>(example->image.pixels.size())}, torch::kUInt8);
    (*x)[i].copy_(pixels.to(torch::kFloat32) / 255.0);
    (*y)[i] = example->label;
  }
}

// The floors every backbone's report carries: raw pixels reach about 84% top-1 on the test split
// with either readout. The bounds sit a few points below, so a broken readout fails.
TEST(ReadoutFloorTest, RawPixelsOfFashionMnistReachTheKnownFloors) {
  ConfigureThreads(0);  // as a job does: LibTorch starts with one thread here
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::is_directory(dir)) {
    GTEST_SKIP() << "needs Debian's dataset-fashion-mnist (scripts/setup)";
  }
  absl::StatusOr<std::unique_ptr<Dataset>> train = OpenFashionMnist(dir, "train");
  absl::StatusOr<std::unique_ptr<Dataset>> test = OpenFashionMnist(dir, "test");
  ASSERT_TRUE(train.ok() && test.ok());
  torch::Tensor train_x, train_y, test_x, test_y;
  PixelFeatures(**train, &train_x, &train_y);
  PixelFeatures(**test, &test_x, &test_y);

  absl::StatusOr<ReadoutScore> knn = KnnScore(train_x, train_y, test_x, test_y, 10, KnnOptions());
  ASSERT_TRUE(knn.ok()) << knn.status();
  EXPECT_GE(knn->top1, 82.0);
  EXPECT_EQ(knn->images, 10000);

  LinearReadoutOptions options;
  options.l2 = {1e-4};
  options.max_iterations = 150;
  absl::StatusOr<LinearReadout> linear = FitLinearReadout(train_x, train_y, 10, options);
  ASSERT_TRUE(linear.ok()) << linear.status();
  const ReadoutScore score = ScoreLogits(linear->Logits(test_x), test_y);
  EXPECT_GE(score.top1, 80.0);
  EXPECT_GE(score.top5, score.top1);
  RecordProperty("knn_top1", std::to_string(knn->top1));
  RecordProperty("linear_top1", std::to_string(score.top1));
  std::cout << "raw pixels, Fashion-MNIST test: k-NN top-1 " << knn->top1 << "%, linear top-1 "
            << score.top1 << "% (" << linear->iterations << " objective evaluations)\n";
}

}  // namespace
}  // namespace peco::trainer
