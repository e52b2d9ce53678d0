// The perceptual network of a tokenizer job, as `loss.perceptual` configures it:
//   - `checkpoint` set: a checkpoint directory, or a run directory whose newest verified
//     checkpoint is used (as pretrain resolves tokenizer.checkpoint), of
//       - a contrastive job: its MoCo v3 base encoder (PeCo's perceptual network), reading images
//         normalised as the job's views were (transform.mean / std);
//       - a pretrain job: its BEiT trunk (transform.vit_mean / vit_std);
//       - a finetune job: its classifier's BEiT trunk (the input normalisation it trained with),
//         a supervised perceptual network (the positive control of docs/RESULTS.md).
//     The architecture comes from the checkpoint's config; `extractor`, `weights` and `seed` are
//     ignored (`weights` together with `checkpoint` is refused by
//     PerceptualLossConfig::Validate). Images are resized to the checkpoint's model.img_size.
//   - otherwise: the timm (MoCo v3) ViT of `extractor`, from `weights` or seeded random.
//
// Errors name the field: InvalidArgument "loss.perceptual.checkpoint: ..." for a missing or
// damaged checkpoint or one of another kind, "loss.perceptual.blocks: ..." for blocks deeper than
// the network. Free functions; thread-compatible.
#ifndef PECO_TRAINER_TASKS_PERCEPTUAL_NETWORK_H_
#define PECO_TRAINER_TASKS_PERCEPTUAL_NETWORK_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/losses/perceptual_loss.h"

namespace peco::trainer {

// Checks without building a model that `config.checkpoint` names a verified peco contrastive,
// pretrain or finetune checkpoint whose depth covers `config.blocks`. OK when `config.checkpoint`
// is empty.
absl::Status CheckPerceptualCheckpoint(const PerceptualLossConfig& config);

// Builds the perceptual loss and its frozen extractor on the CPU.
absl::StatusOr<std::unique_ptr<PerceptualLoss>> CreatePerceptualLoss(
    const PerceptualLossConfig& config);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_PERCEPTUAL_NETWORK_H_
