#include "trainer/losses/gan_loss.h"

namespace peco::trainer {

torch::Tensor HingeDiscriminatorLoss(const torch::Tensor& logits_real,
                                     const torch::Tensor& logits_fake) {
  return 0.5 * (torch::relu(1.0 - logits_real).mean() + torch::relu(1.0 + logits_fake).mean());
}

torch::Tensor GeneratorLoss(const torch::Tensor& logits_fake) { return -logits_fake.mean(); }

torch::Tensor GanWeightGradients(const torch::Tensor& nll_loss, const torch::Tensor& g_loss,
                                 const torch::Tensor& last_layer_weight) {
  torch::Tensor nll_grad =
      torch::autograd::grad({nll_loss}, {last_layer_weight}, {}, /*retain_graph=*/true)[0];
  torch::Tensor g_grad =
      torch::autograd::grad({g_loss}, {last_layer_weight}, {}, /*retain_graph=*/true)[0];
  return torch::stack({nll_grad, g_grad});
}

torch::Tensor AdaptiveGanWeightFromGradients(const torch::Tensor& gradients, double disc_weight) {
  torch::Tensor weight = gradients[0].norm() / (gradients[1].norm() + 1e-4);
  return (torch::clamp(weight, 0.0, 1e4) * disc_weight).detach();
}

torch::Tensor AdaptiveGanWeight(const torch::Tensor& nll_loss, const torch::Tensor& g_loss,
                                const torch::Tensor& last_layer_weight, double disc_weight) {
  return AdaptiveGanWeightFromGradients(GanWeightGradients(nll_loss, g_loss, last_layer_weight),
                                        disc_weight);
}

}  // namespace peco::trainer
