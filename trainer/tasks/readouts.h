// Readouts of frozen features (shared/research/mocov3_and_readouts.md section 2): the two
// protocols that tell backbones apart once their features are computed and cached.
//
//   k-NN: every evaluated feature votes with its k nearest training features by cosine
//   similarity, each vote weighted exp(sim / T) (InstDisc / DINO; k 20, T 0.07).
//   Linear: softmax regression fitted to convergence by L-BFGS (strong Wolfe line search) on the
//   mean cross-entropy plus l2 / 2 * ||W||^2, on features standardised with the training set's
//   per-feature mean and standard deviation (MAE's BatchNorm without affine parameters, at its
//   fixed point; optional); the L2 strength is chosen among candidates on a validation split
//   carved from the training features (fitted along a regularisation path: strongest first, each
//   starting from the previous solution), then the classifier is refitted on all of them,
//   starting from the chosen candidate.
//
// Features are [N, D] float tensors on the CPU, labels [N] int64 in [0, classes). Free functions;
// thread-compatible (LibTorch's intra-op threads do the work). Errors: InvalidArgument naming the
// option or the mismatched shape.
#ifndef PECO_TRAINER_TASKS_READOUTS_H_
#define PECO_TRAINER_TASKS_READOUTS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "torch/torch.h"

namespace peco::trainer {

// Accuracy of a readout on a labelled set, in percent (top-5 is top-min(5, classes)).
struct ReadoutScore {
  double top1 = 0;
  double top5 = 0;
  int64_t images = 0;
};

struct KnnOptions {
  int64_t k = 20;
  double temperature = 0.07;
  int64_t chunk = 1024;  // evaluated features per similarity block (memory: chunk x N floats)

  // InvalidArgument naming knn.k / knn.temperature; k may not exceed `train_size`.
  absl::Status Validate(int64_t train_size) const;
};

// Scores `test` against `train` by weighted k-NN votes.
absl::StatusOr<ReadoutScore> KnnScore(const torch::Tensor& train, const torch::Tensor& train_labels,
                                      const torch::Tensor& test, const torch::Tensor& test_labels,
                                      int64_t classes, const KnnOptions& options);

struct LinearReadoutOptions {
  // L2 strengths tried on the validation split; one value skips the choice.
  std::vector<double> l2 = {1e-5, 1e-4, 1e-3, 1e-2};
  double validation_fraction = 0.1;  // of the training features, drawn with `seed`
  uint64_t seed = 0;
  int64_t max_iterations = 300;  // L-BFGS iterations of one fit
  double tolerance = 1e-7;       // stop when the loss changes less than this
  // Standardise each feature with the training set's mean and standard deviation (MAE's
  // BatchNorm without affine parameters, `feature_norm: batchnorm`); false: the features as they
  // are (BEiT's probe, `feature_norm: none`).
  bool standardize = true;
  // Called every 20 objective evaluations with the evaluations of the fit so far (a liveness
  // signal for long fits: peco-train turns it into heartbeat events). Optional.
  std::function<void(int64_t)> on_progress;

  // InvalidArgument naming linear.<field>.
  absl::Status Validate() const;
};

// A fitted linear readout: logits = ((x - mean) / std) W^T + b.
struct LinearReadout {
  torch::Tensor mean, std;     // [D]
  torch::Tensor weight, bias;  // [classes, D], [classes]
  double l2 = 0;               // the strength it was fitted with
  double train_loss = 0;       // the regularised objective at the end of the fit
  int64_t iterations = 0;      // objective evaluations of the final fit
  // Validation top-1 (percent) of each candidate strength, in LinearReadoutOptions::l2 order;
  // empty when there was one candidate.
  std::vector<double> validation_top1;

  torch::Tensor Logits(const torch::Tensor& features) const;
};

// Fits the readout to `train` (choosing l2 on a validation split when options.l2 has several).
absl::StatusOr<LinearReadout> FitLinearReadout(const torch::Tensor& train,
                                               const torch::Tensor& train_labels, int64_t classes,
                                               const LinearReadoutOptions& options);

// A validation split of N training features: `held` of them drawn by a permutation seeded with
// `seed` (never the test split), the rest to fit on.
struct ValidationSplit {
  torch::Tensor fit, validation;  // int64 row indices
};
// InvalidArgument naming `field` unless 1 <= held < n.
absl::StatusOr<ValidationSplit> SplitForValidation(int64_t n, int64_t held, uint64_t seed,
                                                   const char* field);

// `block: auto`: which of several candidate feature sets of the same images (one per block)
// reads out best, by k-NN on a validation split of `held` training images; ties go to the
// earlier candidate.
struct FeatureChoice {
  size_t best = 0;
  std::vector<double> validation_top1;  // per candidate, percent
};
absl::StatusOr<FeatureChoice> ChooseFeatureSet(const std::vector<torch::Tensor>& candidates,
                                               const torch::Tensor& labels, int64_t classes,
                                               int64_t held, uint64_t seed, const KnnOptions& knn);

// Top-1 and top-5 of `logits` [N, classes] against `labels`.
ReadoutScore ScoreLogits(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_READOUTS_H_
