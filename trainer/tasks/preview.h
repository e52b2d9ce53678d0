// Preview pictures written into each tokenizer and pretrain checkpoint (`preview.png`): a fixed
// set of dataset images beside what the model makes of them, laid out as a PNG grid that
// `peco preview JOB` fetches. docs/TRAINER.md "Previews".
//
// Free functions over tensors; thread-compatible. Every function works on CPU tensors and copies
// device tensors to the CPU itself.
#ifndef PECO_TRAINER_TASKS_PREVIEW_H_
#define PECO_TRAINER_TASKS_PREVIEW_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/torch.h"
#include "trainer/data/dataset.h"
#include "trainer/data/transforms.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

// The checkpoint file that holds the preview grid.
inline constexpr char kPreviewFile[] = "preview.png";

// Pixels between tiles and around the grid.
inline constexpr int kPreviewGap = 2;
// Tiles smaller than this are enlarged by the whole factor that brings them closest to it
// without exceeding it (nearest neighbour: pixels stay sharp).
inline constexpr int kPreviewMinTile = 64;

// `count` images spread evenly over `dataset` (indices i * size / count) through the
// deterministic form of `transform`: centre crop, no flip, no colour jitter, so every checkpoint
// of a run shows the same pictures. Returns one [count, C, S, S] float tensor per output size of
// `transform`. An unreadable sample is replaced by the next readable index; InvalidArgument when
// count < 1, NotFound when the dataset has fewer than `count` readable images.
absl::StatusOr<std::vector<torch::Tensor>> LoadPreviewViews(const Dataset& dataset,
                                                            const TransformOptions& transform,
                                                            int count);

// LoadPreviewViews for min(count, dataset size) images, or no views when count is 0 or the
// images cannot be read; that failure is logged to `progress` (a run without previews trains on).
std::vector<torch::Tensor> PreviewViewsOrNone(int count, const Dataset& dataset,
                                              const TransformOptions& transform,
                                              ProgressSink& progress);

// Puts `preview` into `files` as kPreviewFile, or, when it failed, logs why to `progress` (the
// checkpoint at `step` is written without it).
void AddPreviewFile(absl::StatusOr<std::string> preview, int64_t step, ProgressSink& progress,
                    std::map<std::string, std::string>* files);

// Images in [-1, 1] ([N, C, H, W], C = 1 or 3) as 8-bit RGB pixels [N, 3, H, W] (uint8, CPU);
// values outside [-1, 1] are clamped, grey is replicated.
torch::Tensor SignedUnitToPixels(const torch::Tensor& images);

// `pixels` ([N, 3, H, W] uint8) with the patches set in `mask` ([N, grid * grid] bool, row-major
// over a grid x grid patch layout) blended half-way towards mid grey, so the masked positions
// stand out while the content stays visible. Precondition: H and W divisible by grid.
torch::Tensor ShadeMaskedPatches(const torch::Tensor& pixels, const torch::Tensor& mask,
                                 int64_t grid);

// Lays `rows` out as a grid (row r, column i holds rows[r][i]) on a dark background with
// kPreviewGap pixels between and around tiles, and encodes it as an RGB PNG. Every row is
// [N, 3, H, W] uint8 with the same N. The tile size is the first row's H x W times
// max(1, kPreviewMinTile / H); other rows are enlarged by the same factor when that gives the
// tile size, else resized to it (bilinear). InvalidArgument when rows is empty or the shapes
// disagree.
absl::StatusOr<std::string> EncodePreviewGrid(const std::vector<torch::Tensor>& rows);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_PREVIEW_H_
