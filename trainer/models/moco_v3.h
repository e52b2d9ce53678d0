// MoCo v3 for ViTs (shared/research/mocov3_and_readouts.md section 1): the model of the
// `contrastive` job, which trains PeCo's self-supervised perceptual network.
//
// Parameter names are those of MoCo v3's release checkpoints without the `module.` prefix:
//   base_encoder.*      the trained ViT (models/timm_vit.h names) with its projector `head`:
//                       head.0 Linear(no bias), head.1 BatchNorm1d, ReLU, head.3, head.4, ReLU,
//                       head.6 Linear(no bias), head.7 BatchNorm1d(affine=false)
//   momentum_encoder.*  the same architecture, an exponential moving average of base_encoder's
//                       parameters (its BatchNorm statistics are its own); never trained
//   predictor.*         predictor.0 Linear, .1 BN, ReLU, .3 Linear, .4 BN(affine=false)
// The ViT input to a head is the CLS token after the final LayerNorm.
//
// Initialisation (InitializeMocoV3): MoCo v3's vits.py for the ViTs (qkv uniform with bound
// sqrt(6 / (out / 3 + in)), other Linear xavier-uniform, zero biases, CLS N(0, 1e-6), patch
// projection uniform with bound sqrt(6 / (in_channels p^2 + dim)), fixed 2-D sin-cos position
// embedding), PyTorch's default Linear / BatchNorm initialisation for the heads (drawn from the
// global LibTorch generator), and momentum_encoder := base_encoder. With stop_grad_conv1 the
// patch projection keeps its random initialisation (requires_grad false).
//
// Not thread-safe (a LibTorch module).
#ifndef PECO_TRAINER_MODELS_MOCO_V3_H_
#define PECO_TRAINER_MODELS_MOCO_V3_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "torch/torch.h"
#include "trainer/models/rank_sum.h"
#include "trainer/models/timm_vit.h"

namespace peco::trainer {

struct MocoV3Config {
  TimmVitConfig vit;
  int64_t dim = 256;       // projector and predictor output
  int64_t mlp_dim = 4096;  // their hidden width
  bool stop_grad_conv1 = true;
  // InvalidArgument naming `<prefix><field>` (the vit's fields too).
  absl::Status Validate(const std::string& prefix) const;
};

// MoCo v3's _build_mlp: `layers` Linear(no bias) layers, BatchNorm1d + ReLU between them, and a
// BatchNorm1d without affine parameters after the last. Submodules are named by their index in
// the official nn.Sequential ("0", "1", "3", ...).
class MocoMlpImpl : public torch::nn::Module {
 public:
  MocoMlpImpl(int64_t layers, int64_t input_dim, int64_t mlp_dim, int64_t output_dim);
  // x [B, input_dim] -> [B, output_dim]. In training mode with `sum_over_ranks` set, each
  // BatchNorm normalises over the global batch (models/synced_batch_norm.h).
  torch::Tensor forward(const torch::Tensor& x, const RankSum& sum_over_ranks = nullptr);

 private:
  std::vector<torch::nn::Linear> linears_;
  std::vector<torch::nn::BatchNorm1d> norms_;
};
TORCH_MODULE(MocoMlp);

// The symmetric loss halves of MoCo v3: ctr(q, k) for this rank's queries against the keys of
// every rank.
struct ContrastiveLossOptions {
  double temperature = 0.2;
  int rank = 0;  // this rank's place in the gathered keys: its positives are rows rank * B + i
  int world_size = 1;
  // MocoV3::Loss: the heads' BatchNorm over the global batch (through the rank sum); false:
  // each rank's own batch statistics (the keys are gathered either way).
  bool sync_batch_norm = true;
};

// ctr(q, k) = CrossEntropy(normalize(q) normalize(k_all)^T / T, rank * B + arange(B)) * 2 T, with
// `all_keys` [world * B, dim] every rank's keys in rank order (no gradient).
torch::Tensor ContrastiveLoss(const torch::Tensor& queries, const torch::Tensor& all_keys,
                              const ContrastiveLossOptions& options);

class MocoV3Impl : public torch::nn::Module {
 public:
  explicit MocoV3Impl(const MocoV3Config& config);

  // MoCo v3's initialisation (see the top of this file); the ViTs from `seed`, the heads from
  // the global LibTorch generator (seed it first for reproducible heads).
  void InitializeMocoV3(uint64_t seed);

  // Queries predictor(base_encoder(images)) [B, dim], with gradients.
  torch::Tensor Queries(const torch::Tensor& images, const RankSum& sum_over_ranks = nullptr);
  // Keys momentum_encoder(images) [B, dim], without gradients.
  torch::Tensor Keys(const torch::Tensor& images, const RankSum& sum_over_ranks = nullptr);
  // momentum_param := m * momentum_param + (1 - m) * base_param, for every parameter.
  void UpdateMomentumEncoder(double m);

  // One MoCo v3 step's loss (MoCo.forward of the official builder.py), in its order: queries of
  // view 1 then view 2, the momentum update with `m`, keys of view 1 then view 2, every rank's
  // keys gathered (through `sum_over_ranks`: each rank fills its own rows of a zero buffer; every
  // rank must hold the same batch size), then ctr(q1, k2) + ctr(q2, k1). BatchNorm statistics
  // are synchronised over the ranks when `sum_over_ranks` is set and options.sync_batch_norm.
  // Collective when `sum_over_ranks` is set.
  torch::Tensor Loss(const torch::Tensor& view1, const torch::Tensor& view2, double m,
                     const ContrastiveLossOptions& options,
                     const RankSum& sum_over_ranks = nullptr);

  // The trained parameters: base_encoder's (less the frozen patch projection under
  // stop_grad_conv1 and the fixed position embedding) and the predictor's.
  std::vector<torch::Tensor> TrainableParameters();

  TimmVit base_encoder() const { return base_; }
  const MocoV3Config& config() const { return config_; }

 private:
  MocoV3Config config_;
  TimmVit base_{nullptr}, momentum_{nullptr};
  MocoMlp base_head_{nullptr}, momentum_head_{nullptr}, predictor_{nullptr};
};
TORCH_MODULE(MocoV3);

// Forward FLOPs of one image through one ViT trunk and head (multiply-adds counted as 2).
double MocoEncoderForwardFlops(const MocoV3Config& config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_MOCO_V3_H_
