#include <unistd.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/data/class_subset.h"
#include "trainer/data/fashion_mnist.h"
#include "trainer/data/synthetic.h"
#include "trainer/tasks/config_sections.h"
#include "trainer/tasks/data_config.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

bool HaveFashionMnist() {
  return std::filesystem::exists(std::string(kDefaultFashionMnistDir) +
                                 "/t10k-images-idx3-ubyte.gz");
}

TEST(FashionMnistTest, TestSplitSizesLabelsAndPixels) {
  if (!HaveFashionMnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto dataset = OpenFashionMnist(kDefaultFashionMnistDir, "test");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  const Dataset& d = **dataset;
  EXPECT_EQ(d.size(), 10000);
  EXPECT_EQ(d.num_classes(), 10);
  EXPECT_EQ(d.name(), "fashion-mnist/test");
  std::vector<int> per_class(10, 0);
  double sum = 0;
  int64_t zeros = 0, count = 0;
  for (int64_t i = 0; i < d.size(); ++i) {
    auto example = d.Get(i);
    ASSERT_TRUE(example.ok()) << example.status();
    ASSERT_GE(example->label, 0);
    ASSERT_LT(example->label, 10);
    ++per_class[example->label];
    ASSERT_EQ(example->image.height, 28);
    ASSERT_EQ(example->image.width, 28);
    ASSERT_EQ(example->image.channels, 1);
    ASSERT_EQ(example->image.pixels.size(), 784u);
    for (uint8_t p : example->image.pixels) {
      sum += p;
      zeros += p == 0;
      ++count;
    }
  }
  for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[c], 1000) << "class " << c;
  // Fashion-MNIST's well-known statistics: mean ~0.286 of full scale, about half the pixels 0.
  const double mean = sum / count / 255.0;
  EXPECT_NEAR(mean, 0.286, 0.01);
  EXPECT_GT(zeros, count / 3);
  EXPECT_FALSE(d.Get(10000).ok());
  EXPECT_FALSE(d.Get(-1).ok());
}

TEST(FashionMnistTest, TrainSplit) {
  if (!HaveFashionMnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  auto dataset = OpenFashionMnist(kDefaultFashionMnistDir, "train");
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_EQ((*dataset)->size(), 60000);
  auto last = (*dataset)->Get(59999);
  ASSERT_TRUE(last.ok());
  EXPECT_LT(last->label, 10);
}

TEST(FashionMnistTest, MissingDirectoryNamesPath) {
  auto dataset = OpenFashionMnist("/nonexistent/fmnist-dir", "train");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(),
              HasSubstr("/nonexistent/fmnist-dir/train-images-idx3-ubyte.gz"));
}

TEST(FashionMnistTest, BadSplitNamesIt) {
  auto dataset = OpenFashionMnist(kDefaultFashionMnistDir, "validation");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("validation"));
}

TEST(FashionMnistTest, WrongFileNamesFileAndExpectation) {
  if (!HaveFashionMnist()) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  // A directory whose "train" images file is really the label file: bad magic number.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("fmnist_bad_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string src = kDefaultFashionMnistDir;
  std::filesystem::copy_file(src + "/t10k-labels-idx1-ubyte.gz", dir / "t10k-images-idx3-ubyte.gz",
                             std::filesystem::copy_options::overwrite_existing);
  auto dataset = OpenFashionMnist(dir.string(), "test");
  ASSERT_FALSE(dataset.ok());
  EXPECT_THAT(dataset.status().message(), HasSubstr("t10k-images-idx3-ubyte.gz"));
  EXPECT_THAT(dataset.status().message(), HasSubstr("magic number 2051"));
  std::filesystem::remove_all(dir);
}

}  // namespace
// data.labels_per_class: a class-balanced subset, a pure function of the seed, over real data.
TEST(ClassSubsetTest, HundredLabelsPerClassOfFashionMnist) {
  if (!HaveFashionMnist()) GTEST_SKIP() << "needs dataset-fashion-mnist";
  DataConfig config;
  config.path = kDefaultFashionMnistDir;
  config.labels_per_class = 100;
  absl::StatusOr<std::shared_ptr<const Dataset>> a = OpenDataset(config, /*seed=*/1);
  absl::StatusOr<std::shared_ptr<const Dataset>> again = OpenDataset(config, /*seed=*/1);
  absl::StatusOr<std::shared_ptr<const Dataset>> other = OpenDataset(config, /*seed=*/2);
  ASSERT_TRUE(a.ok() && again.ok() && other.ok()) << a.status();
  ASSERT_EQ((*a)->size(), 1000);
  EXPECT_EQ((*a)->num_classes(), 10);
  EXPECT_THAT((*a)->name(), HasSubstr("[100 per class]"));
  std::vector<int> per_class(10, 0);
  bool same = true, differs = false;
  for (int64_t i = 0; i < 1000; ++i) {
    absl::StatusOr<Example> example = (*a)->Get(i);
    ASSERT_TRUE(example.ok());
    ASSERT_EQ(*(*a)->Label(i), example->label);
    ++per_class[example->label];
    same &= (*again)->Get(i)->image.pixels == example->image.pixels;
    differs |= (*other)->Get(i)->image.pixels != example->image.pixels;
  }
  EXPECT_EQ(per_class, std::vector<int>(10, 100));
  EXPECT_TRUE(same) << "the same seed draws the same subset";
  EXPECT_TRUE(differs) << "another seed draws another subset";
}

TEST(ClassSubsetTest, MoreThanAClassHoldsIsRefusedNamingTheField) {
  std::shared_ptr<const Dataset> data = MakeSyntheticDataset(20, 8, 8, 3, 10, /*seed=*/0);
  absl::StatusOr<std::unique_ptr<Dataset>> subset = ClassBalancedSubset(data, 3, 0);
  ASSERT_FALSE(subset.ok());
  EXPECT_THAT(subset.status().message(),
              HasSubstr("data.labels_per_class: 3 images per class requested, class 0"));
  EXPECT_THAT(subset.status().message(), HasSubstr("has 2"));
  EXPECT_EQ(ClassBalancedSubset(data, 2, 0).value()->size(), 20);
  DataConfig config;
  config.labels_per_class = -1;
  EXPECT_THAT(ValidateDataSection(config, /*check_paths=*/false).message(),
              HasSubstr("data.labels_per_class"));
}

}  // namespace peco::trainer
