// VQGAN's adversarial terms: hinge discriminator loss, generator loss and the adaptive weight.
//
// Pure functions over tensors; thread-compatible.
#ifndef PECO_TRAINER_LOSSES_GAN_LOSS_H_
#define PECO_TRAINER_LOSSES_GAN_LOSS_H_

#include <torch/torch.h>

namespace peco::trainer {

// 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))).
torch::Tensor HingeDiscriminatorLoss(const torch::Tensor& logits_real,
                                     const torch::Tensor& logits_fake);

// -mean(D(x_rec)).
torch::Tensor GeneratorLoss(const torch::Tensor& logits_fake);

// lambda = ||grad_W nll|| / (||grad_W g|| + 1e-4), clamped to [0, 1e4], detached, times
// disc_weight. W is the decoder's last layer weight. Keeps both graphs (retain_graph).
torch::Tensor AdaptiveGanWeight(const torch::Tensor& nll_loss, const torch::Tensor& g_loss,
                                const torch::Tensor& last_layer_weight, double disc_weight);

// The two parts of AdaptiveGanWeight, so that a data-parallel job can average the gradients over
// its ranks in between (the weight of the global batch): the gradients of nll_loss and g_loss
// with respect to last_layer_weight, stacked [2, ...] (both graphs kept), and the weight from them.
torch::Tensor GanWeightGradients(const torch::Tensor& nll_loss, const torch::Tensor& g_loss,
                                 const torch::Tensor& last_layer_weight);
torch::Tensor AdaptiveGanWeightFromGradients(const torch::Tensor& gradients, double disc_weight);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_LOSSES_GAN_LOSS_H_
