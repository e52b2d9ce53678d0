#include "trainer/tasks/readouts.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace {

// InvalidArgument unless `features` is [N, D] and `labels` [N] int64 in [0, classes).
absl::Status CheckLabelled(const char* what, const torch::Tensor& features,
                           const torch::Tensor& labels, int64_t classes) {
  if (features.dim() != 2 || features.size(0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected features [N > 0, D], got ", features.dim(), " dimensions"));
  }
  if (labels.dim() != 1 || labels.size(0) != features.size(0) ||
      labels.scalar_type() != torch::kInt64) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected ", features.size(0), " int64 labels, got ", labels.numel()));
  }
  const int64_t low = labels.min().item<int64_t>(), high = labels.max().item<int64_t>();
  if (low < 0 || high >= classes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": labels in [", low, ", ", high, "], expected [0, ", classes, ")"));
  }
  return absl::OkStatus();
}

// Standardised features: (x - mean) / sqrt(var + eps), BatchNorm's form without affine terms.
torch::Tensor Standardise(const torch::Tensor& x, const torch::Tensor& mean,
                          const torch::Tensor& std) {
  return (x - mean) / std;
}

struct Fit {
  torch::Tensor weight, bias;
  double loss = 0;
  int64_t evaluations = 0;
};

// Softmax regression on standardised `x` by full-batch L-BFGS, from zero or from `start` (a fit of
// a neighbouring problem: another L2 strength, or a subset of the rows).
Fit FitSoftmax(const torch::Tensor& x, const torch::Tensor& y, int64_t classes, double l2,
               const LinearReadoutOptions& options, const Fit* start = nullptr) {
  Fit fit;
  if (start != nullptr) {
    fit.weight = start->weight.detach().clone().requires_grad_(true);
    fit.bias = start->bias.detach().clone().requires_grad_(true);
  } else {
    fit.weight = torch::zeros({classes, x.size(1)}, x.options()).requires_grad_(true);
    fit.bias = torch::zeros({classes}, x.options()).requires_grad_(true);
  }
  torch::optim::LBFGS optimizer({fit.weight, fit.bias},
                                torch::optim::LBFGSOptions(1.0)
                                    .max_iter(options.max_iterations)
                                    .max_eval(options.max_iterations * 5 / 4 + 1)
                                    .tolerance_grad(1e-9)
                                    .tolerance_change(options.tolerance)
                                    .history_size(20)
                                    .line_search_fn("strong_wolfe"));
  auto objective = [&] {
    optimizer.zero_grad();
    torch::Tensor logits = torch::addmm(fit.bias, x, fit.weight.t());
    torch::Tensor loss =
        torch::nn::functional::cross_entropy(logits, y) + 0.5 * l2 * fit.weight.pow(2).sum();
    loss.backward();
    ++fit.evaluations;
    if (options.on_progress && fit.evaluations % 20 == 0) options.on_progress(fit.evaluations);
    return loss;
  };
  optimizer.step(objective);
  {
    torch::NoGradGuard no_grad;
    torch::Tensor logits = torch::addmm(fit.bias, x, fit.weight.t());
    fit.loss =
        (torch::nn::functional::cross_entropy(logits, y) + 0.5 * l2 * fit.weight.pow(2).sum())
            .item<double>();
  }
  fit.weight = fit.weight.detach();
  fit.bias = fit.bias.detach();
  return fit;
}

LinearReadout FitOnAll(const torch::Tensor& train, const torch::Tensor& labels, int64_t classes,
                       double l2, const LinearReadoutOptions& options,
                       const LinearReadout* start = nullptr) {
  LinearReadout readout;
  if (options.standardize) {
    readout.mean = train.mean(0);
    readout.std = torch::sqrt(train.var(0, /*unbiased=*/false) + 1e-6);
  } else {
    readout.mean = torch::zeros({train.size(1)}, train.options());
    readout.std = torch::ones({train.size(1)}, train.options());
  }
  Fit initial;
  if (start != nullptr) {
    initial.weight = start->weight;
    initial.bias = start->bias;
  }
  Fit fit = FitSoftmax(Standardise(train, readout.mean, readout.std), labels, classes, l2, options,
                       start != nullptr ? &initial : nullptr);
  readout.weight = fit.weight;
  readout.bias = fit.bias;
  readout.l2 = l2;
  readout.train_loss = fit.loss;
  readout.iterations = fit.evaluations;
  return readout;
}

}  // namespace

absl::Status KnnOptions::Validate(int64_t train_size) const {
  if (k < 1 || k > train_size) {
    return absl::InvalidArgumentError(absl::StrCat("knn.k: expected a value in [1, ", train_size,
                                                   "] (the training features), got ", k));
  }
  if (!(temperature > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("knn.temperature: expected a value > 0, got ", temperature));
  }
  if (chunk < 1) return absl::InvalidArgumentError("knn.chunk: expected a value >= 1");
  return absl::OkStatus();
}

absl::Status LinearReadoutOptions::Validate() const {
  if (l2.empty()) return absl::InvalidArgumentError("linear.l2: expected at least one strength");
  for (double v : l2) {
    if (!(v >= 0)) {
      return absl::InvalidArgumentError(absl::StrCat("linear.l2: expected values >= 0, got ", v));
    }
  }
  if (l2.size() > 1 && !(validation_fraction > 0 && validation_fraction < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "linear.validation_fraction: expected a value in (0, 1), got ", validation_fraction));
  }
  if (max_iterations < 1) {
    return absl::InvalidArgumentError("linear.max_iterations: expected a value >= 1");
  }
  if (!(tolerance >= 0)) return absl::InvalidArgumentError("linear.tolerance: expected >= 0");
  return absl::OkStatus();
}

absl::StatusOr<ValidationSplit> SplitForValidation(int64_t n, int64_t held, uint64_t seed,
                                                   const char* field) {
  if (held < 1 || held >= n) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a validation split of ", held,
                                                   " leaves no training features of ", n,
                                                   " (expected 1 <= size < ", n, ")"));
  }
  auto generator = at::detail::createCPUGenerator(seed);
  const torch::Tensor order = torch::randperm(n, generator, torch::kInt64);
  return ValidationSplit{order.slice(0, held), order.slice(0, 0, held)};
}

absl::StatusOr<FeatureChoice> ChooseFeatureSet(const std::vector<torch::Tensor>& candidates,
                                               const torch::Tensor& labels, int64_t classes,
                                               int64_t held, uint64_t seed, const KnnOptions& knn) {
  if (candidates.empty()) {
    return absl::InvalidArgumentError("readout.blocks: expected at least one candidate");
  }
  ASSIGN_OR_RETURN(ValidationSplit split, SplitForValidation(candidates[0].size(0), held, seed,
                                                             "readout.validation_size"));
  const torch::Tensor fit_y = labels.index_select(0, split.fit);
  const torch::Tensor val_y = labels.index_select(0, split.validation);
  FeatureChoice choice;
  for (size_t c = 0; c < candidates.size(); ++c) {
    ASSIGN_OR_RETURN(ReadoutScore score, KnnScore(candidates[c].index_select(0, split.fit), fit_y,
                                                  candidates[c].index_select(0, split.validation),
                                                  val_y, classes, knn));
    choice.validation_top1.push_back(score.top1);
    if (score.top1 > choice.validation_top1[choice.best]) choice.best = c;
  }
  return choice;
}

ReadoutScore ScoreLogits(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  torch::Tensor hits = std::get<1>(logits.topk(k, 1)) == labels.unsqueeze(1);
  ReadoutScore score;
  score.images = labels.size(0);
  const double n = static_cast<double>(std::max<int64_t>(score.images, 1));
  score.top1 = 100.0 * hits.select(1, 0).sum().item<double>() / n;
  score.top5 = 100.0 * hits.any(1).sum().item<double>() / n;
  return score;
}

absl::StatusOr<ReadoutScore> KnnScore(const torch::Tensor& train, const torch::Tensor& train_labels,
                                      const torch::Tensor& test, const torch::Tensor& test_labels,
                                      int64_t classes, const KnnOptions& options) {
  RETURN_IF_ERROR(CheckLabelled("knn training features", train, train_labels, classes));
  RETURN_IF_ERROR(CheckLabelled("knn evaluated features", test, test_labels, classes));
  if (train.size(1) != test.size(1)) {
    return absl::InvalidArgumentError(absl::StrCat("knn: training features have ", train.size(1),
                                                   " dimensions, evaluated ones ", test.size(1)));
  }
  RETURN_IF_ERROR(options.Validate(train.size(0)));
  torch::NoGradGuard no_grad;
  const torch::Tensor bank = torch::nn::functional::normalize(
      train.to(torch::kFloat32), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const torch::Tensor queries = torch::nn::functional::normalize(
      test.to(torch::kFloat32), torch::nn::functional::NormalizeFuncOptions().dim(1));
  std::vector<torch::Tensor> votes;
  for (int64_t begin = 0; begin < queries.size(0); begin += options.chunk) {
    const torch::Tensor chunk = queries.slice(0, begin, begin + options.chunk);
    auto [similarity, nearest] = torch::mm(chunk, bank.t()).topk(options.k, 1);
    const torch::Tensor weights = (similarity / options.temperature).exp();
    votes.push_back(torch::zeros({chunk.size(0), classes}, weights.options())
                        .scatter_add_(1, train_labels.index({nearest}), weights));
  }
  return ScoreLogits(torch::cat(votes), test_labels);
}

torch::Tensor LinearReadout::Logits(const torch::Tensor& features) const {
  torch::NoGradGuard no_grad;
  return torch::addmm(bias, Standardise(features.to(torch::kFloat32), mean, std), weight.t());
}

absl::StatusOr<LinearReadout> FitLinearReadout(const torch::Tensor& train,
                                               const torch::Tensor& train_labels, int64_t classes,
                                               const LinearReadoutOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  RETURN_IF_ERROR(CheckLabelled("linear training features", train, train_labels, classes));
  const torch::Tensor x = train.to(torch::kFloat32);
  if (options.l2.size() == 1) return FitOnAll(x, train_labels, classes, options.l2[0], options);

  // The validation split: a seeded permutation's first fraction of the training features.
  const int64_t n = x.size(0);
  const int64_t held = std::max<int64_t>(
      1, static_cast<int64_t>(std::llround(options.validation_fraction * static_cast<double>(n))));
  ASSIGN_OR_RETURN(ValidationSplit split,
                   SplitForValidation(n, held, options.seed, "linear.validation_fraction"));
  const torch::Tensor fit_x = x.index_select(0, split.fit);
  const torch::Tensor val_x = x.index_select(0, split.validation);
  const torch::Tensor fit_y = train_labels.index_select(0, split.fit);
  const torch::Tensor val_y = train_labels.index_select(0, split.validation);
  // From the strongest penalty to the weakest, each fit starting from the previous one's
  // solution (a regularisation path: far fewer iterations than fits from zero).
  std::vector<size_t> order(options.l2.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return options.l2[a] > options.l2[b]; });
  std::vector<double> validation_top1(options.l2.size(), 0.0);
  std::vector<LinearReadout> candidates(options.l2.size());
  const LinearReadout* previous = nullptr;
  size_t best = order[0];
  for (size_t i : order) {
    candidates[i] = FitOnAll(fit_x, fit_y, classes, options.l2[i], options, previous);
    previous = &candidates[i];
    validation_top1[i] = ScoreLogits(candidates[i].Logits(val_x), val_y).top1;
    // Ties go to the stronger penalty (the simpler classifier), which comes first.
    if (validation_top1[i] > validation_top1[best]) best = i;
  }
  LinearReadout readout =
      FitOnAll(x, train_labels, classes, options.l2[best], options, &candidates[best]);
  readout.validation_top1 = std::move(validation_top1);
  return readout;
}

}  // namespace peco::trainer
