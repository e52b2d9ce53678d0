// Blockwise masking for masked image modeling (BEiT's generator; peco_method.md section 2.2).
//
// A mask over an H x W patch grid is built from rectangles: each block draws a target area
// uniformly in [min_num_patches, room] (room = min(remaining, max_num_patches)), a log-uniform
// aspect ratio in [min_aspect, max_aspect], rounds h = sqrt(area * aspect) and
// w = sqrt(area / aspect) half to even, and accepts the rectangle only when h < H and w < W
// (strict), at a top/left drawn from the inclusive ranges [0, H - h] and [0, W - w], and when it
// would newly mask between 1 and `room` cells. A block makes up to 10 such attempts; the mask is
// done when the count reaches num_masking_patches or a block masks nothing. The count therefore
// never exceeds num_masking_patches and is often a little below it (mean 74.47 of 75 on 14x14).
//
// Draws go through the helpers of random.h, so a generator seeded identically gives the same
// mask on every platform and standard library.
#ifndef PECO_TRAINER_DATA_BLOCK_MASKING_H_
#define PECO_TRAINER_DATA_BLOCK_MASKING_H_

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace at {
class Tensor;
}  // namespace at

namespace peco::trainer {

struct BlockMaskingOptions {
  int height = 14;                     // patch grid rows
  int width = 14;                      // patch grid columns
  int num_masking_patches = 75;        // target masked count, in [1, height * width]
  int min_num_patches = 16;            // smallest block area drawn
  std::optional<int> max_num_patches;  // largest block area; unset means num_masking_patches
  double min_aspect = 0.3;             // aspect ratio (h / w) range, sampled log-uniformly
  std::optional<double> max_aspect;    // unset means 1 / min_aspect

  // Returns InvalidArgument naming the field, e.g. "masking.min_aspect: expected > 0, got 0".
  absl::Status Validate() const;
};

// Draws block masks. Immutable after creation: Generate may be called concurrently from several
// threads as long as each passes its own generator.
//
//   ASSIGN_OR_RETURN(BlockMaskingGenerator masking, BlockMaskingGenerator::Create(options));
//   std::mt19937_64 rng(SampleSeed(seed, epoch, index));
//   std::vector<uint8_t> mask = masking.Generate(rng);  // row-major, 1 = masked
class BlockMaskingGenerator {
 public:
  // Validates `options` (errors as BlockMaskingOptions::Validate) and resolves the unset fields.
  static absl::StatusOr<BlockMaskingGenerator> Create(const BlockMaskingOptions& options);

  // Returns a row-major mask of height * width cells, 1 where masked, with at most
  // num_masking_patches ones. Advances `rng` only.
  std::vector<uint8_t> Generate(std::mt19937_64& rng) const;

  // Generate() as a [height * width] kBool CPU tensor.
  at::Tensor GenerateTensor(std::mt19937_64& rng) const;

  int height() const { return height_; }
  int width() const { return width_; }
  int num_masking_patches() const { return num_masking_patches_; }

 private:
  BlockMaskingGenerator(const BlockMaskingOptions& options);

  // One block: up to kAttempts rectangles; returns the number of cells it newly masked (0 when
  // every attempt was rejected).
  int MaskOneBlock(std::vector<uint8_t>& mask, int room, std::mt19937_64& rng) const;

  int height_;
  int width_;
  int num_masking_patches_;
  int min_num_patches_;
  int max_num_patches_;
  double log_min_aspect_;
  double log_max_aspect_;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_BLOCK_MASKING_H_
