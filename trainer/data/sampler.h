// The sample order of an epoch: a pure function of (size, seed, epoch, shuffle, rank, world).
#ifndef PECO_TRAINER_DATA_SAMPLER_H_
#define PECO_TRAINER_DATA_SAMPLER_H_

#include <cstdint>
#include <vector>

namespace peco::trainer {

// A permutation of [0, size): Fisher-Yates driven by a generator seeded from (seed, epoch), or
// the identity when !shuffle. Identical on every rank. Pure; thread-safe.
std::vector<int64_t> EpochPermutation(int64_t size, uint64_t seed, int64_t epoch, bool shuffle);

// Samples per rank per epoch: size / world_size (the remainder of the permutation is dropped so
// every rank sees the same count).
inline int64_t SamplesPerRank(int64_t size, int world_size) { return size / world_size; }

// Position in the epoch permutation of the rank's `k`-th sample: rank r takes positions
// r, r + W, r + 2W, ... for k < SamplesPerRank.
inline int64_t ShardPosition(int64_t k, int rank, int world_size) { return k * world_size + rank; }

// The rank's samples for the epoch, in order (dataset indices).
std::vector<int64_t> RankShard(const std::vector<int64_t>& permutation, int rank, int world_size);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_SAMPLER_H_
