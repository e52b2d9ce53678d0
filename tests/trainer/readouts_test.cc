// The readouts of frozen features (trainer/tasks/readouts.h): k-NN votes against a direct
// computation, the linear readout's convergence and validation choice, bad options named, and the
// raw-pixel floors on Fashion-MNIST (mocov3_and_readouts.md section 2: about 84% for both).
#include "trainer/tasks/readouts.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "tests/test_util/in_process_group.h"
#include "tests/test_util/tiny_jobs.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/data/synthetic.h"
#include "trainer/engine/runtime.h"
#include "trainer/tasks/readout_features.h"

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

// block: auto picks the candidate that reads out best on the validation split.
TEST(ReadoutChoiceTest, TheInformativeFeatureSetIsChosenOnValidation) {
  torch::Tensor x, y;
  SeparableData(30, 3, &x, &y);
  torch::manual_seed(5);
  torch::Tensor noise = torch::randn(x.sizes());
  KnnOptions knn;
  knn.k = 5;
  absl::StatusOr<FeatureChoice> choice = ChooseFeatureSet({noise, x}, y, 3, 20, /*seed=*/1, knn);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->best, 1u);
  ASSERT_EQ(choice->validation_top1.size(), 2u);
  EXPECT_EQ(choice->validation_top1[1], 100.0);
  EXPECT_LT(choice->validation_top1[0], 70.0);
  EXPECT_THAT(ChooseFeatureSet({x}, y, 3, 90, 1, knn).status().message(),
              HasSubstr("readout.validation_size"));
}

// The evaluation view of the readouts: the whole image at `size`, values in [0, 1].
TransformOptions PlainView(int size, bool rgb) {
  TransformOptions view;
  view.output_sizes = {size};
  view.random_crop = false;
  view.center_crop_fraction = 1.0;
  view.horizontal_flip = false;
  view.to_rgb = rgb;
  view.mean = {0.0};
  view.std = {1.0};
  return view;
}

std::vector<int64_t> Iota(int64_t n) {
  std::vector<int64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

TEST(ReadoutFeaturesTest, PoolingTakesTheClsTokenThePatchMeanOrBoth) {
  torch::Tensor tokens = torch::randn({2, 5, 3});
  EXPECT_TRUE(torch::equal(PoolTokens(tokens, FeaturePooling::kCls), tokens.select(1, 0)));
  EXPECT_TRUE(
      torch::allclose(PoolTokens(tokens, FeaturePooling::kMean), tokens.slice(1, 1).mean(1)));
  torch::Tensor both = PoolTokens(tokens, FeaturePooling::kClsAndMean);
  EXPECT_EQ(both.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_TRUE(torch::equal(both.slice(1, 0, 3), tokens.select(1, 0)));
  EXPECT_THAT(ParseFeaturePooling("max", "readout.pooling").status().message(),
              HasSubstr("readout.pooling: expected cls, mean or cls+mean, got 'max'"));
  EXPECT_EQ(*ParseFeaturePooling("cls+mean", "readout.pooling"), FeaturePooling::kClsAndMean);
}

TEST(ReadoutFeaturesTest, PixelFeaturesAreTheFlattenedViewInIndexOrder) {
  std::shared_ptr<Dataset> data = MakeSyntheticDataset(10, 8, 8, 3, 4, /*seed=*/2);
  std::unique_ptr<FeatureBackbone> pixels = PixelBackbone();
  absl::StatusOr<FeatureSet> set = ExtractFeatures(*pixels, *data, {7, 2, 5}, PlainView(8, true),
                                                   /*batch_size=*/2, torch::kCPU);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->features.size(), 1u);
  EXPECT_EQ(set->features[0].sizes(), (std::vector<int64_t>{3, 3 * 8 * 8}));
  absl::StatusOr<Example> two = data->Get(2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(set->labels[1].item<int64_t>(), two->label);
  // HWC bytes / 255 in CHW order.
  torch::Tensor expected = torch::from_blob(two->image.pixels.data(), {8, 8, 3}, torch::kUInt8)
                               .permute({2, 0, 1})
                               .reshape({-1})
                               .to(torch::kFloat32) /
                           255.0;
  EXPECT_TRUE(torch::allclose(set->features[0][1], expected, 1e-6, 1e-6));
  EXPECT_EQ(pixels->names(), std::vector<std::string>{"pixels"});
}

BeitClassifier TinyBackbone();

TEST(ReadoutFeaturesTest, BeitFeaturesArePooledBlockOutputsAndBadBlocksAreNamed) {
  BeitClassifier model = TinyBackbone();
  EXPECT_THAT(BeitBackbone(model, {3}, FeaturePooling::kMean).status().message(),
              HasSubstr("readout.blocks: block 3 is not in [1, 2]"));
  absl::StatusOr<std::unique_ptr<FeatureBackbone>> backbone =
      BeitBackbone(model, {1, 2}, FeaturePooling::kMean);
  ASSERT_TRUE(backbone.ok()) << backbone.status();
  EXPECT_EQ((*backbone)->names(), (std::vector<std::string>{"block 1", "block 2"}));
  torch::Tensor images = torch::randn({3, 3, 8, 8});
  std::vector<torch::Tensor> features = (*backbone)->Features(images);
  std::vector<torch::Tensor> expected = model->BlockFeatures(images, {1, 2});
  ASSERT_EQ(features.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(torch::allclose(features[i], expected[i]));
}

BeitClassifier TinyBackbone() {
  BeitVitConfig config;
  config.img_size = 8;
  config.patch_size = 4;
  config.embed_dim = 16;
  config.depth = 2;
  config.num_heads = 2;
  config.num_classes = 0;
  torch::manual_seed(0);
  return BeitClassifier(config);
}

// Two ranks (threads joined by an in-process group) each compute half of the images; both end
// with every image's features in image order, equal to one rank computing them all.
TEST(ReadoutFeaturesTest, RanksShareTheWorkAndAllGetTheSameFeaturesAsOneRank) {
  std::shared_ptr<Dataset> data = MakeSyntheticDataset(13, 8, 8, 3, 4, /*seed=*/5);
  const TransformOptions view = PlainView(8, true);
  BeitClassifier model = TinyBackbone();
  auto backbone = [&] { return *BeitBackbone(model, {1, 2}, FeaturePooling::kClsAndMean); };
  std::unique_ptr<FeatureBackbone> alone = backbone();
  absl::StatusOr<FeatureSet> one =
      ExtractFeaturesOverRanks(*alone, *data, 100, view, 4, torch::kCPU, /*group=*/nullptr);
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->labels.size(0), 13);

  ::peco::testing::InProcessGroup group(2);
  absl::StatusOr<FeatureSet> sets[2];
  std::vector<int64_t> computed(2, 0);
  auto run = [&](int rank) {
    auto context = group.Join(rank);
    ASSERT_TRUE(context.ok());
    std::unique_ptr<FeatureBackbone> mine = backbone();
    sets[rank] = ExtractFeaturesOverRanks(*mine, *data, 100, view, 4, torch::kCPU, context->get(),
                                          [&](int64_t done) { computed[rank] = done; });
  };
  std::thread rank1(run, 1);
  run(0);
  rank1.join();
  // Whole batches of 4: rank 0 computes batches 0 and 2 (images 0-3, 8-11), rank 1 batches 1
  // and 3 (images 4-7, 12).
  EXPECT_EQ(computed[0], 8);
  EXPECT_EQ(computed[1], 5);
  for (int rank = 0; rank < 2; ++rank) {
    ASSERT_TRUE(sets[rank].ok()) << sets[rank].status();
    EXPECT_TRUE(torch::equal(sets[rank]->labels, one->labels));
    EXPECT_TRUE(torch::equal(sets[rank]->indices, one->indices));
    ASSERT_EQ(sets[rank]->features.size(), 2u);
    for (int f = 0; f < 2; ++f) {
      // Each image in the same batch as with one rank: the same bits.
      EXPECT_TRUE(torch::equal(sets[rank]->features[f], one->features[f]))
          << "rank " << rank << " set " << f;
    }
  }
}

TEST(ReadoutFeaturesTest, TheCacheIsReusedOnlyForItsKeyAndDamageIsReported) {
  const std::string dir = ::peco::testing::TempDir("readouts_test", "cache");
  std::shared_ptr<Dataset> data = MakeSyntheticDataset(6, 8, 8, 3, 2, /*seed=*/1);
  std::unique_ptr<FeatureBackbone> pixels = PixelBackbone();
  absl::StatusOr<FeatureSet> set =
      ExtractFeatures(*pixels, *data, Iota(6), PlainView(8, true), 4, torch::kCPU);
  ASSERT_TRUE(set.ok());
  const std::string path = dir + "/features.pt";
  EXPECT_EQ(LoadFeatureCache(path, "k").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(SaveFeatureCache(*set, "pixels view 8 images 0-5", path).ok());
  absl::StatusOr<FeatureSet> loaded = LoadFeatureCache(path, "pixels view 8 images 0-5");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(torch::equal(loaded->features[0], set->features[0]));
  EXPECT_TRUE(torch::equal(loaded->labels, set->labels));
  EXPECT_TRUE(torch::equal(loaded->indices, set->indices));
  EXPECT_EQ(LoadFeatureCache(path, "another backbone").status().code(),
            absl::StatusCode::kNotFound);
  std::ofstream(path, std::ios::trunc) << "not a cache";
  EXPECT_EQ(LoadFeatureCache(path, "pixels view 8 images 0-5").status().code(),
            absl::StatusCode::kDataLoss);
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
  // Raw pixels through the readouts' feature path: every image flattened to 784 values in [0, 1].
  std::unique_ptr<FeatureBackbone> pixels = PixelBackbone();
  const TransformOptions view = PlainView(28, /*rgb=*/false);
  absl::StatusOr<FeatureSet> train_set =
      ExtractFeatures(*pixels, **train, Iota((*train)->size()), view, 1000, torch::kCPU);
  absl::StatusOr<FeatureSet> test_set =
      ExtractFeatures(*pixels, **test, Iota((*test)->size()), view, 1000, torch::kCPU);
  ASSERT_TRUE(train_set.ok() && test_set.ok());
  const torch::Tensor train_x = train_set->features[0], train_y = train_set->labels;
  const torch::Tensor test_x = test_set->features[0], test_y = test_set->labels;
  ASSERT_EQ(train_x.sizes(), (std::vector<int64_t>{60000, 784}));

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
