// BEiT state dicts: the official key order, reading official-format files, and turning a
// pre-training state into the initial weights of a fine-tuning classifier.
//
// Errors are InvalidArgument naming the key and `what` (usually the file), as in weights.h;
// loading is all-or-nothing. Functions are thread-compatible (they touch only their arguments).
#ifndef PECO_TRAINER_MODELS_BEIT_WEIGHTS_H_
#define PECO_TRAINER_MODELS_BEIT_WEIGHTS_H_

#include <torch/torch.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/io/torch_file.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_vit.h"

namespace peco::trainer {

// Returns every parameter and buffer of `module` (detached, sharing storage) in Python's
// state_dict order: for each module in pre-order, its own parameters, then its own buffers, then
// its children. For the BEiT models this is the order of the official state_dict (ModuleState
// in weights.h lists all parameters before all buffers instead).
NamedTensors StateDictInOfficialOrder(const torch::nn::Module& module);

// Reads a PyTorch file `{'model': state_dict}` (BEiT's release format and peco's BEiT export).
// NotFound / InvalidArgument naming `path` when the file, the 'model' key or a tensor is bad.
absl::StatusOr<NamedTensors> ReadBeitStateFile(const std::string& path);

// Returns what the official fine-tuning script (run_class_finetuning.py) keeps of a
// pre-training state for a classifier of `finetune` config: with use_rel_pos_bias, the shared
// rel_pos_bias.relative_position_bias_table copied into
// blocks.<i>.attn.relative_position_bias_table of every block; every relative_position_index
// dropped (the model keeps its own); mask_token, lm_head.* dropped; norm.* dropped when
// use_mean_pooling (norm is Identity there). Everything else is passed through unchanged. Never
// fails.
NamedTensors ConvertPretrainToFinetune(const NamedTensors& pretrain, const BeitVitConfig& finetune);

// Loads a pre-training state into `model` through ConvertPretrainToFinetune. The classifier's
// own initial values are kept for head.*, fc_norm.*, relative_position_index buffers and, when
// the pre-training state has no relative position table at all, the per-block tables (zeros),
// as the official non-strict load does; a head.* of another shape (another number of
// classes) is dropped too, as the official script does. Any other key of the model that is missing,
// any mis-shaped tensor (a table for another resolution too: resizing is not supported) and any
// unexpected key (for example pos_embed into a model without one) is InvalidArgument naming it
// and `what`; then nothing is loaded.
absl::Status LoadPretrainIntoClassifier(BeitClassifier& model, const NamedTensors& pretrain,
                                        absl::string_view what);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_MODELS_BEIT_WEIGHTS_H_
