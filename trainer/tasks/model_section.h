// The `model:` section of the BEiT job kinds (pretrain, finetune, linear_probe): a preset and
// explicit overrides, and the JSON form of a resolved model that checkpoints record.
//
// Free functions; thread-compatible. Errors are InvalidArgument naming the dotted field.
#ifndef PECO_TRAINER_TASKS_MODEL_SECTION_H_
#define PECO_TRAINER_TASKS_MODEL_SECTION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/config_reader.h"
#include "trainer/models/beit_config.h"

namespace peco::trainer {

// Reads `preset` (beit_base_patch16_224_8k_vocab, beit_large_patch16_224_8k_vocab,
// beit_small_fashion_mnist; absent = the current value of *preset) into *model, then the explicit
// fields over it, and finishes the reader. When `explicit_fields` is not null it receives the
// names of the keys the section gave ("preset" included).
absl::Status ReadBeitModelSection(ConfigReader& r, std::string* preset, BeitVitConfig* model,
                                  std::vector<std::string>* explicit_fields = nullptr);

// The fields that decide a BEiT trunk's parameter shapes, in the `model:` section's names:
// img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, qkv_bias, layer_scale (whether
// layer_scale_init_value > 0), use_abs_pos_emb, use_shared_rel_pos_bias.
const std::vector<std::string>& BeitArchitectureFields();

// The value of architecture field `field` of `config`, as text ("6", "true", "4").
std::string BeitArchitectureValue(const BeitVitConfig& config, const std::string& field);

// A one-line JSON object with every BeitVitConfig field, and its inverse (every field required;
// InvalidArgument naming `source` and the field otherwise).
std::string BeitConfigToJson(const BeitVitConfig& config);
absl::StatusOr<BeitVitConfig> BeitConfigFromReader(ConfigReader& r);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_MODEL_SECTION_H_
