// Export of BEiT models as PyTorch files in the official format.
//
// The file is `{'model': state_dict}` (what BEiT's release checkpoints hold and its scripts
// read), with the official names, shapes and order: every parameter and the
// relative_position_index buffers (int64), nothing else. For the ViT-B/16 presets the keys are
// exactly shared/spec/keys/beit_base_patch16_224_8k_vocab_pretrain.txt (BeitMim) and
// beit_base_patch16_224_finetune.txt (BeitClassifier built with FinetuneConfigFrom). Tensors are
// copied to the CPU, contiguous, in their own dtype. ReadBeitStateFile (beit_weights.h) reads
// these files back.
//
// Errors: Internal / InvalidArgument with the path when writing fails; the target is replaced
// atomically (WriteTorchFile), so a failed export leaves any earlier file intact.
// Thread-safety: the model must not be modified during the call.
#ifndef PECO_TRAINER_EXPORT_BEIT_EXPORT_H_
#define PECO_TRAINER_EXPORT_BEIT_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "trainer/models/beit_vit.h"

namespace peco::trainer {

// Writes the MIM pre-training model (`beit_base_patch16_224_8k_vocab` names) to `path`.
absl::Status ExportBeitPretrain(const BeitMim& model, const std::string& path);

// Writes the fine-tuning classifier (`beit_base_patch16_224` names) to `path`.
absl::Status ExportBeitFinetune(const BeitClassifier& model, const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_EXPORT_BEIT_EXPORT_H_
