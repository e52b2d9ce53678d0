#include "trainer/tasks/preview.h"

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "trainer/data/image.h"
#include "trainer/data/image_codec.h"

namespace peco::trainer {
namespace {

constexpr uint8_t kBackground = 24;  // dark grey between tiles

}  // namespace

absl::StatusOr<std::vector<torch::Tensor>> LoadPreviewViews(const Dataset& dataset,
                                                            const TransformOptions& transform,
                                                            int count) {
  if (count < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.preview_images: expected a value >= 1, got ", count));
  }
  const TransformOptions deterministic = EvaluationView(transform);
  std::mt19937_64 unused_rng(0);  // the deterministic transform draws nothing
  const int64_t size = dataset.size();
  std::vector<std::vector<torch::Tensor>> per_view(deterministic.output_sizes.size());
  int64_t index = 0;
  for (int i = 0; i < count; ++i) {
    index = std::max(index, i * size / count);
    absl::StatusOr<Example> example = absl::NotFoundError("");
    while (index < size && !(example = dataset.Get(index)).ok()) ++index;
    if (index >= size) {
      return absl::NotFoundError(
          absl::StrCat("preview: ", dataset.name(), " has fewer than ", count, " readable images"));
    }
    ++index;
    std::vector<torch::Tensor> views = ApplyTransform(example->image, deterministic, unused_rng);
    for (size_t v = 0; v < views.size(); ++v) per_view[v].push_back(views[v]);
  }
  std::vector<torch::Tensor> out;
  for (auto& views : per_view) out.push_back(torch::stack(views));
  return out;
}

std::vector<torch::Tensor> PreviewViewsOrNone(int count, const Dataset& dataset,
                                              const TransformOptions& transform,
                                              ProgressSink& progress) {
  const int n = static_cast<int>(std::min<int64_t>(count, dataset.size()));
  if (n < 1) return {};
  absl::StatusOr<std::vector<torch::Tensor>> views = LoadPreviewViews(dataset, transform, n);
  if (!views.ok()) {
    progress.Log(absl::StrCat("preview: ", views.status().message(),
                              "; checkpoints of this run carry no preview.png"));
    return {};
  }
  return *std::move(views);
}

void AddPreviewFile(absl::StatusOr<std::string> preview, int64_t step, ProgressSink& progress,
                    std::map<std::string, std::string>* files) {
  if (preview.ok()) {
    (*files)[kPreviewFile] = *std::move(preview);
    return;
  }
  progress.Log(absl::StrCat("preview: ", preview.status().message(), "; checkpoint at step ", step,
                            " carries none"));
}

torch::Tensor SignedUnitToPixels(const torch::Tensor& images) {
  torch::NoGradGuard no_grad;
  torch::Tensor x = images.detach().to(torch::kCPU, torch::kFloat32);
  if (x.size(1) == 1) x = x.expand({-1, 3, -1, -1});
  return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch::kUInt8);
}

torch::Tensor ShadeMaskedPatches(const torch::Tensor& pixels, const torch::Tensor& mask,
                                 int64_t grid) {
  torch::NoGradGuard no_grad;
  const int64_t n = pixels.size(0), h = pixels.size(2), w = pixels.size(3);
  torch::Tensor cells = mask.to(torch::kCPU, torch::kFloat32).view({n, 1, grid, grid});
  torch::Tensor covered = cells.repeat_interleave(h / grid, 2).repeat_interleave(w / grid, 3);
  torch::Tensor x = pixels.to(torch::kFloat32);
  torch::Tensor shaded = x + covered * (128.0 - x) * 0.5;
  return shaded.round().clamp(0, 255).to(torch::kUInt8);
}

absl::StatusOr<std::string> EncodePreviewGrid(const std::vector<torch::Tensor>& rows) {
  if (rows.empty()) return absl::InvalidArgumentError("preview grid: no rows");
  for (const torch::Tensor& row : rows) {
    if (row.dim() != 4 || row.size(1) != 3 || row.scalar_type() != torch::kUInt8 ||
        row.size(0) != rows[0].size(0) || row.size(0) < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "preview grid: expected rows of [N, 3, H, W] uint8 with N = ", rows[0].size(0), ", got ",
          row.sizes().vec().size(), "-d ", c10::toString(row.scalar_type()), " with ",
          row.dim() > 0 ? row.size(0) : 0, " images"));
    }
  }
  torch::NoGradGuard no_grad;
  // Small tiles (Fashion-MNIST's 28 or 32 pixels) are enlarged by a whole factor.
  const int64_t scale = std::max<int64_t>(1, kPreviewMinTile / rows[0].size(2));
  const int64_t n = rows[0].size(0), th = rows[0].size(2) * scale, tw = rows[0].size(3) * scale;
  const int64_t height = kPreviewGap + static_cast<int64_t>(rows.size()) * (th + kPreviewGap);
  const int64_t width = kPreviewGap + n * (tw + kPreviewGap);
  torch::Tensor canvas = torch::full({3, height, width}, kBackground, torch::kUInt8);
  for (size_t r = 0; r < rows.size(); ++r) {
    torch::Tensor tiles = rows[r].to(torch::kCPU);
    if (tiles.size(2) * scale == th && tiles.size(3) * scale == tw) {
      tiles = tiles.repeat_interleave(scale, 2).repeat_interleave(scale, 3);
    } else {
      tiles = torch::nn::functional::interpolate(tiles.to(torch::kFloat32),
                                                 torch::nn::functional::InterpolateFuncOptions()
                                                     .size(std::vector<int64_t>{th, tw})
                                                     .mode(torch::kBilinear)
                                                     .align_corners(false))
                  .round()
                  .clamp(0, 255)
                  .to(torch::kUInt8);
    }
    const int64_t top = kPreviewGap + static_cast<int64_t>(r) * (th + kPreviewGap);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t left = kPreviewGap + i * (tw + kPreviewGap);
      canvas.slice(1, top, top + th).slice(2, left, left + tw).copy_(tiles[i]);
    }
  }
  torch::Tensor hwc = canvas.permute({1, 2, 0}).contiguous();
  Image image = Image::Zeros(static_cast<int>(height), static_cast<int>(width), 3);
  std::memcpy(image.pixels.data(), hwc.data_ptr<uint8_t>(), image.pixels.size());
  return EncodePng(image);
}

}  // namespace peco::trainer
