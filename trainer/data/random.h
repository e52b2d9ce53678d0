// Seed mixing and platform-independent random draws used by the data pipeline.
//
// The standard distributions (std::uniform_real_distribution etc.) are implementation-defined,
// so the pipeline draws through these helpers to keep batches identical across standard
// libraries. All functions are pure or only advance the given generator; thread-compatible.
#ifndef PECO_TRAINER_DATA_RANDOM_H_
#define PECO_TRAINER_DATA_RANDOM_H_

#include <cstdint>
#include <random>

namespace peco::trainer {

// The splitmix64 finaliser: a bijective, well-mixing 64-bit hash.
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Combines values into one seed; order-sensitive.
inline uint64_t MixSeed(uint64_t a, uint64_t b) { return SplitMix64(SplitMix64(a) ^ b); }
inline uint64_t MixSeed(uint64_t a, uint64_t b, uint64_t c) { return MixSeed(MixSeed(a, b), c); }

// Seeds the RNG of one sample's augmentation: a function of (seed, epoch, dataset index) only.
inline uint64_t SampleSeed(uint64_t seed, int64_t epoch, int64_t index) {
  return MixSeed(seed ^ 0x5A4D504C45ull, static_cast<uint64_t>(epoch),
                 static_cast<uint64_t>(index));
}

// Uniform double in [0, 1) from the top 53 bits.
inline double Uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Uniform double in [lo, hi).
inline double UniformReal(std::mt19937_64& rng, double lo, double hi) {
  return lo + (hi - lo) * Uniform01(rng);
}

// Uniform integer in [0, n) for n >= 1 (multiply-shift; bias < n / 2^64).
inline uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
}

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_RANDOM_H_
