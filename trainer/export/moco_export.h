// Export of a contrastive (MoCo v3) model in the layout of MoCo v3's release checkpoints.
//
// The file is `{'epoch': step, 'arch': preset, 'state_dict': {name: tensor}}` with the names of
// a model trained by the official main_moco.py under DistributedDataParallel:
// `module.base_encoder.*` (the ViT, its `head` the projector), `module.momentum_encoder.*` and
// `module.predictor.*`, every parameter and BatchNorm buffer, in PyTorch's state_dict order. The
// optimizer state is left out (no downstream reader uses it). What downstream code reads — the
// base encoder without `head` — loads into a timm ViT, and into peco as `loss.perceptual.weights`
// (losses/timm_vit_extractor.h). Written atomically (WriteTorchFile).
//
// Errors: Internal / InvalidArgument naming the path when writing fails.
// Thread-safety: the model must not be modified during the call.
#ifndef PECO_TRAINER_EXPORT_MOCO_EXPORT_H_
#define PECO_TRAINER_EXPORT_MOCO_EXPORT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "trainer/models/moco_v3.h"

namespace peco::trainer {

absl::Status ExportMocoV3(MocoV3& model, int64_t step, const std::string& arch,
                          const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_EXPORT_MOCO_EXPORT_H_
