#include "trainer/data/sampler.h"

#include <numeric>
#include <random>
#include <utility>

#include "trainer/data/random.h"

namespace peco::trainer {

std::vector<int64_t> EpochPermutation(int64_t size, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle) return order;
  std::mt19937_64 rng(MixSeed(seed ^ 0x5045524Dull, static_cast<uint64_t>(epoch)));
  for (int64_t i = size - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(UniformBelow(rng, static_cast<uint64_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

std::vector<int64_t> RankShard(const std::vector<int64_t>& permutation, int rank, int world_size) {
  const int64_t n = SamplesPerRank(static_cast<int64_t>(permutation.size()), world_size);
  std::vector<int64_t> shard(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    shard[static_cast<size_t>(k)] =
        permutation[static_cast<size_t>(ShardPosition(k, rank, world_size))];
  }
  return shard;
}

}  // namespace peco::trainer
