#include "trainer/tasks/tokenizer_eval.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/data/random.h"
#include "trainer/data/transforms.h"
#include "trainer/models/vector_quantizer.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

absl::Status FieldError(const std::string& field, const std::string& expected, double got) {
  return absl::InvalidArgumentError(
      absl::StrCat("eval.", field, ": expected ", expected, ", got ", got));
}

// The evaluation view: the whole image (centre crop), resized, in [-1, 1], RGB.
TransformOptions PlainView(int image_size) {
  TransformOptions view;
  view.output_sizes = {image_size};
  view.random_crop = false;
  view.center_crop_fraction = 1.0;
  view.horizontal_flip = false;
  view.to_rgb = true;
  view.mean = {0.5, 0.5, 0.5};
  view.std = {0.5, 0.5, 0.5};
  return view;
}

}  // namespace

torch::Tensor PlainCells(const torch::Tensor& images, int64_t tokens_per_side, double range) {
  namespace F = torch::nn::functional;
  const int64_t cell = images.size(2) / tokens_per_side;
  const auto pool = F::MaxPool2dFuncOptions(cell).stride(cell);
  torch::Tensor x = images.to(torch::kFloat32);
  torch::Tensor spread = F::max_pool2d(x, pool) + F::max_pool2d(-x, pool);  // max - min
  return std::get<0>(spread.max(/*dim=*/1)) <= range;
}

absl::Status TokenizerEvalConfig::Validate() const {
  if (every < 0) return FieldError("every", "steps >= 0 (0 = only at the end)", every);
  if (batch_size <= 0) return FieldError("batch_size", "a value > 0", batch_size);
  if (max_images < 0)
    return FieldError("max_images", "a value >= 0 (0 = the whole split)", max_images);
  if (!(brightness >= 0 && brightness < 1)) {
    return FieldError("brightness", "a jitter factor in [0, 1)", brightness);
  }
  if (!(contrast >= 0 && contrast < 1)) {
    return FieldError("contrast", "a jitter factor in [0, 1)", contrast);
  }
  if (!(plain_range >= 0 && plain_range < 2)) {
    return FieldError("plain_range", "a value range in [0, 2) (inputs in [-1, 1])", plain_range);
  }
  return absl::OkStatus();
}

absl::Status ReadTokenizerEvalSection(ConfigReader& r, TokenizerEvalConfig* config) {
  RETURN_IF_ERROR(r.Read("enabled", &config->enabled));
  RETURN_IF_ERROR(r.ReadEnum("split", {"train", "test"}, &config->split));
  RETURN_IF_ERROR(r.Read("path", &config->path));
  RETURN_IF_ERROR(r.Read("every", &config->every));
  RETURN_IF_ERROR(r.Read("batch_size", &config->batch_size));
  RETURN_IF_ERROR(r.Read("max_images", &config->max_images));
  RETURN_IF_ERROR(r.Read("brightness", &config->brightness));
  RETURN_IF_ERROR(r.Read("contrast", &config->contrast));
  int64_t seed = static_cast<int64_t>(config->seed);
  RETURN_IF_ERROR(r.Read("seed", &seed));
  config->seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(r.Read("plain_range", &config->plain_range));
  return r.Finish();
}

int64_t TokenizerEvalImages(const Dataset& heldout, const TokenizerEvalConfig& config) {
  return config.max_images > 0 ? std::min(config.max_images, heldout.size()) : heldout.size();
}

absl::StatusOr<TokenizerEvalSums> EvaluateTokenizerShard(
    VqTokenizerImpl& model, const Dataset& heldout, const TokenizerEvalConfig& config,
    int image_size, torch::Device device, int rank, int world_size,
    const std::function<void(int64_t)>& on_batch) {
  const int64_t n = TokenizerEvalImages(heldout, config);
  if (n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: the held-out set ", heldout.name(), " holds no images"));
  }
  const TransformOptions plain = PlainView(image_size);
  TransformOptions jitter = plain;
  jitter.brightness = config.brightness;
  jitter.contrast = config.contrast;
  const int64_t num_codes = model.config().quantizer.num_codes;

  TokenizerEvalSums sums;
  sums.counts = torch::zeros({num_codes}, torch::kInt64);
  sums.plain_counts = torch::zeros({num_codes}, torch::kInt64);
  const bool training = model.is_training();
  model.eval();
  absl::Status status;
  // This rank's images: rank, rank + world_size, ...; a batch is batch_size of them.
  const int64_t stride = static_cast<int64_t>(world_size) * config.batch_size;
  for (int64_t begin = rank; begin < n && status.ok(); begin += stride) {
    const int64_t end = std::min(n, begin + stride);
    std::vector<torch::Tensor> views[3];  // plain, jitter a, jitter b
    status = TorchCall("preparing the held-out views", [&] {
      for (int64_t i = begin; i < end; i += world_size) {
        absl::StatusOr<Example> example = heldout.Get(i);
        if (!example.ok()) {  // skipped, as the training loader skips it
          if (sums.first_error.ok()) sums.first_error = example.status();
          ++sums.unreadable;
          continue;
        }
        std::mt19937_64 unused(0);  // the plain view draws nothing
        views[0].push_back(ApplyTransform(example->image, plain, unused)[0]);
        for (int v = 0; v < 2; ++v) {
          std::mt19937_64 rng(MixSeed(config.seed, static_cast<uint64_t>(i), v));
          views[1 + v].push_back(ApplyTransform(example->image, jitter, rng)[0]);
        }
      }
    });
    if (!status.ok() || views[0].empty()) continue;
    sums.images += static_cast<int64_t>(views[0].size());
    status = TorchCall("evaluating the tokenizer", [&] {
      torch::NoGradGuard no_grad;
      torch::Tensor x = torch::stack(views[0]).to(device);
      torch::Tensor tokens = model.Tokenize(x);
      // As a picture: the decoder's output clamped to the input range.
      torch::Tensor error = model.DecodeIndices(tokens).to(torch::kFloat32).clamp(-1, 1) - x;
      sums.abs_error += error.abs().sum().item<double>();
      sums.squared_error += error.pow(2).sum().item<double>();
      sums.values += static_cast<double>(error.numel());
      sums.counts += torch::bincount(tokens.flatten().to(torch::kCPU), {}, num_codes);
      torch::Tensor plain = PlainCells(x, tokens.size(1), config.plain_range);
      sums.plain_counts +=
          torch::bincount(tokens.masked_select(plain).to(torch::kCPU), {}, num_codes);
      torch::Tensor a = model.Tokenize(torch::stack(views[1]).to(device));
      torch::Tensor b = model.Tokenize(torch::stack(views[2]).to(device));
      sums.agreeing += (a == b).sum().item<double>();
      sums.positions += static_cast<double>(a.numel());
    });
    if (status.ok() && on_batch) on_batch(sums.images);
  }
  model.train(training);
  RETURN_IF_ERROR(status);
  return sums;
}

absl::StatusOr<TokenizerEvalResult> FinishTokenizerEval(const TokenizerEvalSums& sums,
                                                        const Dataset& heldout,
                                                        const TokenizerEvalConfig& config) {
  if (sums.images == 0) {
    const absl::Status& error = sums.first_error;
    return absl::Status(
        error.ok() ? absl::StatusCode::kDataLoss : error.code(),
        absl::StrCat("eval: none of the first ", TokenizerEvalImages(heldout, config),
                     " images of ", heldout.name(),
                     " could be read; the first error: ", error.message()));
  }
  TokenizerEvalResult result;
  result.images = sums.images;
  result.unreadable = sums.unreadable;
  result.l1 = sums.abs_error / sums.values;
  result.mse = sums.squared_error / sums.values;
  // [-1, 1] -> [0, 1] divides the error by 2, the squared error by 4.
  result.psnr = 10.0 * std::log10(1.0 / std::max(result.mse / 4.0, 1e-12));
  ASSIGN_OR_RETURN(const CodeUsage usage,
                   TorchCall("counting codes", [&] { return UsageFromCounts(sums.counts); }));
  result.codes_used = usage.codes_used;
  result.perplexity = usage.perplexity;
  result.token_agreement = sums.agreeing / sums.positions;
  // A code is a plain one when over half of its assignments are on plain cells.
  ASSIGN_OR_RETURN(const auto plain, TorchCall("counting plain-cell codes", [&] {
                     return std::make_pair(
                         (sums.plain_counts * 2 > sums.counts).sum().item<int64_t>(),
                         sums.plain_counts.sum().item<double>());
                   }));
  result.plain_codes = plain.first;
  result.plain_positions = plain.second / sums.positions;
  result.plain_code_share =
      result.codes_used > 0 ? static_cast<double>(result.plain_codes) / result.codes_used : 0;
  return result;
}

absl::StatusOr<TokenizerEvalResult> EvaluateTokenizer(
    VqTokenizerImpl& model, const Dataset& heldout, const TokenizerEvalConfig& config,
    int image_size, torch::Device device, const std::function<void(int64_t)>& on_batch) {
  ASSIGN_OR_RETURN(TokenizerEvalSums sums,
                   EvaluateTokenizerShard(model, heldout, config, image_size, device, /*rank=*/0,
                                          /*world_size=*/1, on_batch));
  return FinishTokenizerEval(sums, heldout, config);
}

}  // namespace peco::trainer
