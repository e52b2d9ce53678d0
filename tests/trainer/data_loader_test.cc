#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <set>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/data/loader.h"
#include "trainer/data/random.h"
#include "trainer/data/sampler.h"
#include "trainer/data/synthetic.h"

namespace peco::trainer {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSize = 100;

std::shared_ptr<const Dataset> Synthetic(int64_t size = kSize) {
  return MakeSyntheticDataset(size, 20, 24, 3, 10, /*seed=*/5);
}

LoaderOptions Options(uint64_t seed = 1) {
  LoaderOptions o;
  o.batch_size = 8;  // 12 batches per epoch, 4 samples dropped.
  o.num_threads = 3;
  o.prefetch_batches = 3;
  o.seed = seed;
  o.transform.output_sizes = {16, 8};
  o.transform.brightness = o.transform.contrast = o.transform.saturation = 0.4;
  return o;
}

std::unique_ptr<DataLoader> MakeLoader(std::shared_ptr<const Dataset> dataset,
                                       const LoaderOptions& options, LoaderPosition start = {}) {
  auto loader = DataLoader::Create(std::move(dataset), options, start);
  EXPECT_TRUE(loader.ok()) << loader.status();
  return loader.ok() ? std::move(*loader) : nullptr;
}

std::vector<Batch> Take(DataLoader& loader, int n) {
  std::vector<Batch> batches;
  for (int i = 0; i < n; ++i) {
    auto batch = loader.Next();
    EXPECT_TRUE(batch.ok()) << batch.status();
    if (!batch.ok()) break;
    batches.push_back(std::move(*batch));
  }
  return batches;
}

bool SameBatch(const Batch& a, const Batch& b) {
  if (!(a.position == b.position) || a.views.size() != b.views.size()) return false;
  for (size_t v = 0; v < a.views.size(); ++v) {
    if (!torch::equal(a.views[v], b.views[v])) return false;
  }
  return torch::equal(a.labels, b.labels) && torch::equal(a.indices, b.indices);
}

std::vector<int64_t> Indices(const std::vector<Batch>& batches) {
  std::vector<int64_t> out;
  for (const Batch& b : batches) {
    for (int64_t i = 0; i < b.indices.size(0); ++i) out.push_back(b.indices[i].item<int64_t>());
  }
  return out;
}

TEST(SamplerTest, PermutationIsPureAndShardsCover) {
  const auto p0 = EpochPermutation(kSize, 3, 0, true);
  EXPECT_EQ(p0, EpochPermutation(kSize, 3, 0, true));
  EXPECT_NE(p0, EpochPermutation(kSize, 3, 1, true));
  EXPECT_NE(p0, EpochPermutation(kSize, 4, 0, true));
  std::vector<int64_t> sorted = p0, identity(kSize);
  std::sort(sorted.begin(), sorted.end());
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_EQ(EpochPermutation(kSize, 3, 7, false), identity);
  std::set<int64_t> all;
  for (int r = 0; r < 3; ++r) {
    const auto shard = RankShard(p0, r, 3);
    ASSERT_EQ(shard.size(), 33u);
    EXPECT_EQ(shard[0], p0[r]);
    EXPECT_EQ(shard[1], p0[r + 3]);
    all.insert(shard.begin(), shard.end());
  }
  EXPECT_EQ(all.size(), 99u);
  EXPECT_EQ(all.count(p0[99]), 0u);  // the dropped tail
}

TEST(LoaderTest, EpochIsSeededPermutationInBatches) {
  auto dataset = Synthetic();
  LoaderOptions o = Options(7);
  o.batch_size = 10;
  auto loader = MakeLoader(dataset, o);
  ASSERT_EQ(loader->batches_per_epoch(), 10);
  const auto batches = Take(*loader, 20);
  const auto indices = Indices(batches);
  EXPECT_EQ(std::vector<int64_t>(indices.begin(), indices.begin() + 100),
            EpochPermutation(kSize, 7, 0, true));
  EXPECT_EQ(std::vector<int64_t>(indices.begin() + 100, indices.end()),
            EpochPermutation(kSize, 7, 1, true));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(batches[i].position.epoch, i / 10);
    EXPECT_EQ(batches[i].position.batch, i % 10);
    for (int64_t k = 0; k < 10; ++k) {
      EXPECT_EQ(batches[i].labels[k].item<int64_t>(), batches[i].indices[k].item<int64_t>() % 10);
    }
  }
  EXPECT_EQ(loader->position(), (LoaderPosition{2, 0}));
  EXPECT_GE(loader->data_wait_seconds(), 0.0);
}

TEST(LoaderTest, NoShuffleIsIdentityOrder) {
  LoaderOptions o = Options();
  o.shuffle = false;
  auto loader = MakeLoader(Synthetic(), o);
  const auto indices = Indices(Take(*loader, 2));
  std::vector<int64_t> expected(16);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(indices, expected);
}

TEST(LoaderTest, ViewsAreTransformSeededBySample) {
  auto dataset = Synthetic();
  const LoaderOptions o = Options(11);
  auto loader = MakeLoader(dataset, o, {3, 2});
  auto batch = loader->Next();
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->views[0].sizes(), (std::vector<int64_t>{8, 3, 16, 16}));
  ASSERT_EQ(batch->views[1].sizes(), (std::vector<int64_t>{8, 3, 8, 8}));
  ASSERT_EQ(batch->labels.scalar_type(), torch::kInt64);
  for (int64_t i = 0; i < 8; ++i) {
    const int64_t index = batch->indices[i].item<int64_t>();
    std::mt19937_64 rng(SampleSeed(11, 3, index));
    const auto views = ApplyTransform(dataset->Get(index)->image, o.transform, rng);
    EXPECT_TRUE(torch::equal(views[0], batch->views[0][i]));
    EXPECT_TRUE(torch::equal(views[1], batch->views[1][i]));
  }
}

TEST(LoaderTest, SameSeedSameBatchesDifferentSeedDifferent) {
  auto dataset = Synthetic();
  auto a = MakeLoader(dataset, Options(1));
  LoaderOptions serial = Options(1);
  serial.num_threads = 1;
  serial.prefetch_batches = 1;
  auto b = MakeLoader(dataset, serial);  // thread count must not matter
  auto c = MakeLoader(dataset, Options(2));
  const auto ba = Take(*a, 15), bb = Take(*b, 15), bc = Take(*c, 15);  // crosses an epoch
  ASSERT_EQ(ba.size(), 15u);
  ASSERT_EQ(bb.size(), 15u);
  for (int i = 0; i < 15; ++i) EXPECT_TRUE(SameBatch(ba[i], bb[i])) << "batch " << i;
  EXPECT_FALSE(torch::equal(ba[0].indices, bc[0].indices));
  EXPECT_FALSE(torch::equal(ba[0].views[0], bc[0].views[0]));
}

TEST(LoaderTest, ResumeReproducesBatchesBitwise) {
  auto dataset = Synthetic();
  for (int64_t start_batch : {0, 10}) {  // 10: the resumed run crosses into epoch 2
    auto fresh = MakeLoader(dataset, Options(3), {1, start_batch});
    std::vector<Batch> reference;
    LoaderPosition after_two;
    for (int i = 0; i < 5; ++i) {
      auto batch = fresh->Next();
      ASSERT_TRUE(batch.ok());
      reference.push_back(std::move(*batch));
      if (i == 1) after_two = fresh->position();
    }
    EXPECT_EQ(after_two, reference[2].position);
    auto resumed = MakeLoader(dataset, Options(3), after_two);
    EXPECT_EQ(resumed->position(), after_two);
    const auto rest = Take(*resumed, 3);
    ASSERT_EQ(rest.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(SameBatch(rest[i], reference[2 + i])) << "start " << start_batch << " i " << i;
    }
  }
}

TEST(LoaderTest, RanksAreDisjointAndCoverTheEpoch) {
  auto dataset = Synthetic();
  std::set<int64_t> all;
  size_t total = 0;
  for (int rank = 0; rank < 3; ++rank) {
    LoaderOptions o = Options(9);
    o.world_size = 3;
    o.rank = rank;
    o.drop_last = false;  // 33 per rank: batches of 8, 8, 8, 8, 1
    auto loader = MakeLoader(dataset, o, {2, 0});
    ASSERT_EQ(loader->batches_per_epoch(), 5);
    const auto batches = Take(*loader, 5);
    EXPECT_EQ(batches.back().indices.size(0), 1);
    const auto indices = Indices(batches);
    EXPECT_EQ(indices, RankShard(EpochPermutation(kSize, 9, 2, true), rank, 3));
    all.insert(indices.begin(), indices.end());
    total += indices.size();
  }
  EXPECT_EQ(total, 99u);
  EXPECT_EQ(all.size(), 99u);
}

// Fails Get() for chosen indices; counts calls.
class FlakyDataset : public Dataset {
 public:
  FlakyDataset(std::shared_ptr<const Dataset> base, std::set<int64_t> bad, bool all_bad = false)
      : base_(std::move(base)), bad_(std::move(bad)), all_bad_(all_bad) {}
  int64_t size() const override { return base_->size(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  std::string name() const override { return "flaky"; }
  absl::StatusOr<Example> Get(int64_t index) const override {
    if (all_bad_ || bad_.count(index)) {
      return absl::DataLossError("file_" + std::to_string(index) + ".jpg: corrupt");
    }
    return base_->Get(index);
  }

 private:
  std::shared_ptr<const Dataset> base_;
  std::set<int64_t> bad_;
  bool all_bad_;
};

TEST(LoaderTest, CorruptSamplesAreReplacedDeterministically) {
  const auto permutation = EpochPermutation(kSize, 1, 0, true);
  // Two consecutive bad samples in the first batch, one in the second.
  const std::set<int64_t> bad = {permutation[2], permutation[3], permutation[9]};
  auto dataset = std::make_shared<FlakyDataset>(Synthetic(), bad);
  LoaderOptions o = Options(1);
  o.prefetch_batches = 1;
  o.num_threads = 1;
  auto a = MakeLoader(dataset, o);
  auto b = MakeLoader(dataset, Options(1));
  const auto ba = Take(*a, 2), bb = Take(*b, 2);
  ASSERT_EQ(ba.size(), 2u);
  ASSERT_EQ(bb.size(), 2u);
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(SameBatch(ba[i], bb[i]));
  const auto indices = Indices(ba);
  for (int64_t index : indices) EXPECT_EQ(bad.count(index), 0u);
  EXPECT_EQ(indices[2], permutation[4]);  // 2 -> 3 (bad) -> 4
  EXPECT_EQ(indices[3], permutation[4]);  // 3 -> 4
  EXPECT_EQ(indices[9], permutation[10]);
  EXPECT_GE(a->skipped_samples(), 4);  // 2, 3 twice... counted per failed attempt
}

TEST(LoaderTest, AllCorruptIsAnErrorNotAHang) {
  auto dataset = std::make_shared<FlakyDataset>(Synthetic(), std::set<int64_t>{}, true);
  LoaderOptions o = Options();
  o.max_consecutive_failures = 50;
  auto loader = MakeLoader(dataset, o);
  auto batch = loader->Next();
  ASSERT_FALSE(batch.ok());
  EXPECT_THAT(batch.status().message(), HasSubstr("consecutive"));
  EXPECT_THAT(batch.status().message(), HasSubstr(".jpg: corrupt"));
  EXPECT_GE(loader->skipped_samples(), 51);
}

// Slow Get(): destruction must not wait for whole batches.
class SlowDataset : public Dataset {
 public:
  explicit SlowDataset(std::shared_ptr<const Dataset> base) : base_(std::move(base)) {}
  int64_t size() const override { return base_->size(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  std::string name() const override { return "slow"; }
  absl::StatusOr<Example> Get(int64_t index) const override {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return base_->Get(index);
  }

 private:
  std::shared_ptr<const Dataset> base_;
};

TEST(LoaderTest, DestructionDoesNotHang) {
  {
    // Workers blocked on a full queue.
    auto loader = MakeLoader(Synthetic(), Options());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  {
    // Workers in the middle of slow batches.
    LoaderOptions o = Options();
    o.batch_size = 50;
    auto dataset = std::make_shared<SlowDataset>(Synthetic());
    auto loader = MakeLoader(dataset, o);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto begin = std::chrono::steady_clock::now();
    loader.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::milliseconds(500));
  }
}

TEST(LoaderTest, ValidateAndCreateNameFields) {
  EXPECT_TRUE(LoaderOptions().Validate().ok());
  auto check = [](void (*mutate)(LoaderOptions&), const std::string& expected) {
    LoaderOptions o;
    mutate(o);
    const absl::Status status = o.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << expected;
    EXPECT_THAT(status.message(), HasSubstr(expected));
  };
  check([](LoaderOptions& o) { o.batch_size = 0; }, "data.batch_size: expected > 0");
  check([](LoaderOptions& o) { o.num_threads = 0; }, "data.num_threads");
  check([](LoaderOptions& o) { o.prefetch_batches = 0; }, "data.prefetch_batches");
  check([](LoaderOptions& o) { o.world_size = 0; }, "data.world_size");
  check([](LoaderOptions& o) { o.rank = 2, o.world_size = 2; }, "data.rank");
  check([](LoaderOptions& o) { o.transform.scale_min = 2; }, "transform.scale_min");

  LoaderOptions o = Options();
  o.batch_size = 200;
  auto too_small = DataLoader::Create(Synthetic(), o);
  ASSERT_FALSE(too_small.ok());
  EXPECT_THAT(too_small.status().message(), HasSubstr("fewer than one batch"));
  auto bad_position = DataLoader::Create(Synthetic(), Options(), {0, 13});
  ASSERT_FALSE(bad_position.ok());
  EXPECT_THAT(bad_position.status().message(), HasSubstr("position.batch"));
  auto end_of_epoch = DataLoader::Create(Synthetic(), Options(), {0, 12});
  ASSERT_TRUE(end_of_epoch.ok());
  EXPECT_EQ((*end_of_epoch)->position(), (LoaderPosition{1, 0}));
  auto no_dataset = DataLoader::Create(nullptr, Options());
  EXPECT_FALSE(no_dataset.ok());
}

}  // namespace
}  // namespace peco::trainer
