#include "trainer/data/block_masking.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "trainer/data/random.h"

namespace peco::trainer {
namespace {

constexpr int kAttempts = 10;

absl::Status FieldError(const char* field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("masking.", field, ": ", what));
}

// Python's random.randint(lo, hi): both ends inclusive.
int RandInt(std::mt19937_64& rng, int lo, int hi) {
  return lo + static_cast<int>(UniformBelow(rng, static_cast<uint64_t>(hi - lo + 1)));
}

// Python 3's round(): halves go to the even neighbour. std::nearbyint does that in the default
// FE_TONEAREST mode, which the trainer never changes.
int RoundHalfEven(double x) { return static_cast<int>(std::nearbyint(x)); }

}  // namespace

absl::Status BlockMaskingOptions::Validate() const {
  if (height < 1) return FieldError("height", absl::StrCat("expected >= 1, got ", height));
  if (width < 1) return FieldError("width", absl::StrCat("expected >= 1, got ", width));
  const int cells = height * width;
  if (num_masking_patches < 1 || num_masking_patches > cells) {
    return FieldError(
        "num_masking_patches",
        absl::StrCat("expected in [1, height * width = ", cells, "], got ", num_masking_patches));
  }
  if (min_num_patches < 1) {
    return FieldError("min_num_patches", absl::StrCat("expected >= 1, got ", min_num_patches));
  }
  if (max_num_patches.has_value() && *max_num_patches < 1) {
    return FieldError("max_num_patches", absl::StrCat("expected >= 1, got ", *max_num_patches));
  }
  if (!std::isfinite(min_aspect) || min_aspect <= 0) {
    return FieldError("min_aspect", absl::StrCat("expected > 0, got ", min_aspect));
  }
  if (max_aspect.has_value() && (!std::isfinite(*max_aspect) || *max_aspect < min_aspect)) {
    return FieldError("max_aspect",
                      absl::StrCat("expected >= min_aspect (", min_aspect, "), got ", *max_aspect));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockMaskingGenerator> BlockMaskingGenerator::Create(
    const BlockMaskingOptions& options) {
  if (absl::Status s = options.Validate(); !s.ok()) return s;
  return BlockMaskingGenerator(options);
}

BlockMaskingGenerator::BlockMaskingGenerator(const BlockMaskingOptions& options)
    : height_(options.height),
      width_(options.width),
      num_masking_patches_(options.num_masking_patches),
      min_num_patches_(options.min_num_patches),
      max_num_patches_(options.max_num_patches.value_or(options.num_masking_patches)),
      log_min_aspect_(std::log(options.min_aspect)),
      log_max_aspect_(std::log(options.max_aspect.value_or(1.0 / options.min_aspect))) {}

int BlockMaskingGenerator::MaskOneBlock(std::vector<uint8_t>& mask, int room,
                                        std::mt19937_64& rng) const {
  int delta = 0;
  for (int attempt = 0; attempt < kAttempts && delta == 0; ++attempt) {
    // uniform(a, b) = a + (b - a) * U also when room < min_num_patches (then area is in
    // [room, min_num_patches]), as in the reference.
    const double area = UniformReal(rng, min_num_patches_, room);
    const double aspect = std::exp(UniformReal(rng, log_min_aspect_, log_max_aspect_));
    const int h = RoundHalfEven(std::sqrt(area * aspect));
    const int w = RoundHalfEven(std::sqrt(area / aspect));
    if (h >= height_ || w >= width_) continue;
    const int top = RandInt(rng, 0, height_ - h);
    const int left = RandInt(rng, 0, width_ - w);
    int already = 0;
    for (int i = top; i < top + h; ++i) {
      for (int j = left; j < left + w; ++j) already += mask[i * width_ + j];
    }
    const int fresh = h * w - already;
    if (fresh <= 0 || fresh > room) continue;
    for (int i = top; i < top + h; ++i) {
      for (int j = left; j < left + w; ++j) {
        uint8_t& cell = mask[i * width_ + j];
        if (cell == 0) {
          cell = 1;
          ++delta;
        }
      }
    }
  }
  return delta;
}

std::vector<uint8_t> BlockMaskingGenerator::Generate(std::mt19937_64& rng) const {
  std::vector<uint8_t> mask(static_cast<size_t>(height_) * width_, 0);
  int count = 0;
  while (count < num_masking_patches_) {
    const int room = std::min(num_masking_patches_ - count, max_num_patches_);
    const int delta = MaskOneBlock(mask, room, rng);
    if (delta == 0) break;
    count += delta;
  }
  return mask;
}

at::Tensor BlockMaskingGenerator::GenerateTensor(std::mt19937_64& rng) const {
  const std::vector<uint8_t> mask = Generate(rng);
  torch::Tensor out = torch::empty({static_cast<int64_t>(mask.size())}, torch::kBool);
  bool* data = out.data_ptr<bool>();
  for (size_t i = 0; i < mask.size(); ++i) data[i] = mask[i] != 0;
  return out;
}

}  // namespace peco::trainer
