#include "trainer/tasks/tokenizer_eval.h"

#include <algorithm>
#include <cmath>
#include <random>
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

// Running sums over the evaluated images.
struct Sums {
  double abs_error = 0, squared_error = 0, values = 0;
  double agreeing = 0, positions = 0;
  torch::Tensor counts;  // [K] token histogram
};

}  // namespace

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
  return r.Finish();
}

absl::StatusOr<TokenizerEvalResult> EvaluateTokenizer(
    VqTokenizerImpl& model, const Dataset& heldout, const TokenizerEvalConfig& config,
    int image_size, torch::Device device, const std::function<void(int64_t)>& on_batch) {
  const int64_t n =
      config.max_images > 0 ? std::min(config.max_images, heldout.size()) : heldout.size();
  if (n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval: the held-out set ", heldout.name(), " holds no images"));
  }
  const TransformOptions plain = PlainView(image_size);
  TransformOptions jitter = plain;
  jitter.brightness = config.brightness;
  jitter.contrast = config.contrast;
  const int64_t num_codes = model.config().quantizer.num_codes;

  Sums sums;
  int64_t evaluated = 0, unreadable = 0;
  absl::Status first_error;
  const bool training = model.is_training();
  model.eval();
  absl::Status status;
  for (int64_t begin = 0; begin < n && status.ok(); begin += config.batch_size) {
    const int64_t end = std::min(n, begin + config.batch_size);
    std::vector<torch::Tensor> views[3];  // plain, jitter a, jitter b
    status = TorchCall("preparing the held-out views", [&] {
      for (int64_t i = begin; i < end; ++i) {
        absl::StatusOr<Example> example = heldout.Get(i);
        if (!example.ok()) {  // skipped, as the training loader skips it
          if (first_error.ok()) first_error = example.status();
          ++unreadable;
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
    evaluated += static_cast<int64_t>(views[0].size());
    status = TorchCall("evaluating the tokenizer", [&] {
      torch::NoGradGuard no_grad;
      torch::Tensor x = torch::stack(views[0]).to(device);
      torch::Tensor tokens = model.Tokenize(x);
      // As a picture: the decoder's output clamped to the input range.
      torch::Tensor error = model.DecodeIndices(tokens).to(torch::kFloat32).clamp(-1, 1) - x;
      sums.abs_error += error.abs().sum().item<double>();
      sums.squared_error += error.pow(2).sum().item<double>();
      sums.values += static_cast<double>(error.numel());
      torch::Tensor counts = torch::bincount(tokens.flatten().to(torch::kCPU), {}, num_codes);
      sums.counts = sums.counts.defined() ? sums.counts + counts : counts;
      torch::Tensor a = model.Tokenize(torch::stack(views[1]).to(device));
      torch::Tensor b = model.Tokenize(torch::stack(views[2]).to(device));
      sums.agreeing += (a == b).sum().item<double>();
      sums.positions += static_cast<double>(a.numel());
    });
    if (status.ok() && on_batch) on_batch(evaluated);
  }
  model.train(training);
  RETURN_IF_ERROR(status);
  if (evaluated == 0) {
    return absl::Status(first_error.code(),
                        absl::StrCat("eval: none of the first ", n, " images of ", heldout.name(),
                                     " could be read; the first error: ", first_error.message()));
  }

  TokenizerEvalResult result;
  result.images = evaluated;
  result.unreadable = unreadable;
  result.l1 = sums.abs_error / sums.values;
  result.mse = sums.squared_error / sums.values;
  // [-1, 1] -> [0, 1] divides the error by 2, the squared error by 4.
  result.psnr = 10.0 * std::log10(1.0 / std::max(result.mse / 4.0, 1e-12));
  ASSIGN_OR_RETURN(const CodeUsage usage,
                   TorchCall("counting codes", [&] { return UsageFromCounts(sums.counts); }));
  result.codes_used = usage.codes_used;
  result.perplexity = usage.perplexity;
  result.token_agreement = sums.agreeing / sums.positions;
  return result;
}

}  // namespace peco::trainer
