#include "trainer/models/beit_config.h"

#include "absl/strings/str_cat.h"

namespace peco::trainer {
namespace {

absl::Status Bad(absl::string_view prefix, absl::string_view field, absl::string_view expected,
                 double got) {
  return absl::InvalidArgumentError(
      absl::StrCat(prefix, field, ": expected ", expected, ", got ", got));
}

}  // namespace

absl::Status BeitVitConfig::Validate(absl::string_view prefix) const {
  if (img_size <= 0) return Bad(prefix, "img_size", "> 0", img_size);
  if (patch_size <= 0 || img_size % patch_size != 0) {
    return Bad(prefix, "patch_size", absl::StrCat("a divisor of img_size ", img_size), patch_size);
  }
  if (in_chans <= 0) return Bad(prefix, "in_chans", "> 0", in_chans);
  if (embed_dim <= 0) return Bad(prefix, "embed_dim", "> 0", embed_dim);
  if (num_heads <= 0 || embed_dim % num_heads != 0) {
    return Bad(prefix, "num_heads", absl::StrCat("a divisor of embed_dim ", embed_dim), num_heads);
  }
  if (depth <= 0) return Bad(prefix, "depth", "> 0", depth);
  if (!(mlp_ratio > 0)) return Bad(prefix, "mlp_ratio", "> 0", mlp_ratio);
  if (static_cast<int64_t>(embed_dim * mlp_ratio) <= 0) {
    return Bad(prefix, "mlp_ratio", "a hidden width embed_dim * mlp_ratio >= 1", mlp_ratio);
  }
  if (!(drop_path_rate >= 0 && drop_path_rate < 1)) {
    return Bad(prefix, "drop_path_rate", "a value in [0, 1)", drop_path_rate);
  }
  if (!(layer_scale_init_value >= 0)) {
    return Bad(prefix, "layer_scale_init_value", ">= 0 (0 disables LayerScale)",
               layer_scale_init_value);
  }
  if (!(init_std > 0)) return Bad(prefix, "init_std", "> 0", init_std);
  if (!(norm_eps > 0)) return Bad(prefix, "norm_eps", "> 0", norm_eps);
  if (vocab_size <= 0) return Bad(prefix, "vocab_size", "> 0", vocab_size);
  if (num_classes < 0) return Bad(prefix, "num_classes", ">= 0 (0: no head)", num_classes);
  if (!(init_scale > 0)) return Bad(prefix, "init_scale", "> 0", init_scale);
  return absl::OkStatus();
}

BeitVitConfig BeitBasePatch16Config() { return BeitVitConfig(); }

BeitVitConfig BeitLargePatch16Config() {
  BeitVitConfig config;
  config.embed_dim = 1024;
  config.depth = 24;
  config.num_heads = 16;
  config.layer_scale_init_value = 1e-5;
  return config;
}

BeitVitConfig FinetuneConfigFrom(const BeitVitConfig& pretrain, int64_t num_classes) {
  BeitVitConfig config = pretrain;
  config.use_shared_rel_pos_bias = false;
  config.use_rel_pos_bias = pretrain.use_shared_rel_pos_bias || pretrain.use_rel_pos_bias;
  config.use_mean_pooling = true;
  config.num_classes = num_classes;
  return config;
}

BeitVitConfig BeitSmallFashionMnistConfig() {
  BeitVitConfig config;
  config.img_size = 32;
  config.patch_size = 4;
  config.vocab_size = 512;
  config.embed_dim = 192;
  config.depth = 6;
  config.num_heads = 3;
  config.num_classes = 10;
  return config;
}

}  // namespace peco::trainer
