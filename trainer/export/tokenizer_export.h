// Export of a trained tokenizer as a PyTorch file with taming-transformers `VQModel` names.
//
// The file is `{'state_dict': {name: tensor}}` (what VQModel.init_from_ckpt reads), holding
// every parameter of the encoder, decoder, quantizer and the two 1x1 convolutions and nothing
// else (peco-only buffers such as dead-code counters are left out), written atomically.
#ifndef PECO_TRAINER_EXPORT_TOKENIZER_EXPORT_H_
#define PECO_TRAINER_EXPORT_TOKENIZER_EXPORT_H_

#include <string>

#include "absl/status/status.h"
#include "trainer/models/vq_tokenizer.h"

namespace peco::trainer {

absl::Status ExportTokenizer(VqTokenizer& model, const std::string& path);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_EXPORT_TOKENIZER_EXPORT_H_
