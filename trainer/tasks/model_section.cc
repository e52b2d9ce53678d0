#include "trainer/tasks/model_section.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/json_writer.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace {

const std::map<std::string, BeitVitConfig (*)()>& Presets() {
  static const auto* presets = new std::map<std::string, BeitVitConfig (*)()>{
      {"beit_base_patch16_224_8k_vocab", &BeitBasePatch16Config},
      {"beit_large_patch16_224_8k_vocab", &BeitLargePatch16Config},
      {"beit_small_fashion_mnist", &BeitSmallFashionMnistConfig},
  };
  return *presets;
}

std::string Text(bool value) { return value ? "true" : "false"; }

}  // namespace

absl::Status ReadBeitModelSection(ConfigReader& r, std::string* preset, BeitVitConfig* m,
                                  std::vector<std::string>* explicit_fields) {
  static const char* const kFields[] = {"preset",          "img_size",
                                        "patch_size",      "embed_dim",
                                        "depth",           "num_heads",
                                        "mlp_ratio",       "qkv_bias",
                                        "drop_path_rate",  "layer_scale_init_value",
                                        "use_abs_pos_emb", "use_shared_rel_pos_bias",
                                        "init_std",        "vocab_size"};
  if (explicit_fields != nullptr) {
    explicit_fields->clear();
    for (const char* field : kFields) {
      if (r.Has(field)) explicit_fields->push_back(field);
    }
  }
  std::vector<std::string> names;
  for (const auto& [name, make] : Presets()) names.push_back(name);
  RETURN_IF_ERROR(r.ReadEnum("preset", names, preset));
  *m = Presets().at(*preset)();
  RETURN_IF_ERROR(r.Read("img_size", &m->img_size));
  RETURN_IF_ERROR(r.Read("patch_size", &m->patch_size));
  RETURN_IF_ERROR(r.Read("embed_dim", &m->embed_dim));
  RETURN_IF_ERROR(r.Read("depth", &m->depth));
  RETURN_IF_ERROR(r.Read("num_heads", &m->num_heads));
  RETURN_IF_ERROR(r.Read("mlp_ratio", &m->mlp_ratio));
  RETURN_IF_ERROR(r.Read("qkv_bias", &m->qkv_bias));
  RETURN_IF_ERROR(r.Read("drop_path_rate", &m->drop_path_rate));
  RETURN_IF_ERROR(r.Read("layer_scale_init_value", &m->layer_scale_init_value));
  RETURN_IF_ERROR(r.Read("use_abs_pos_emb", &m->use_abs_pos_emb));
  RETURN_IF_ERROR(r.Read("use_shared_rel_pos_bias", &m->use_shared_rel_pos_bias));
  RETURN_IF_ERROR(r.Read("init_std", &m->init_std));
  RETURN_IF_ERROR(r.Read("vocab_size", &m->vocab_size));
  return r.Finish();
}

const std::vector<std::string>& BeitArchitectureFields() {
  static const auto* fields = new std::vector<std::string>{
      "img_size",  "patch_size", "embed_dim",   "depth",           "num_heads",
      "mlp_ratio", "qkv_bias",   "layer_scale", "use_abs_pos_emb", "use_shared_rel_pos_bias"};
  return *fields;
}

std::string BeitArchitectureValue(const BeitVitConfig& c, const std::string& field) {
  if (field == "img_size") return absl::StrCat(c.img_size);
  if (field == "patch_size") return absl::StrCat(c.patch_size);
  if (field == "embed_dim") return absl::StrCat(c.embed_dim);
  if (field == "depth") return absl::StrCat(c.depth);
  if (field == "num_heads") return absl::StrCat(c.num_heads);
  if (field == "mlp_ratio") return absl::StrCat(c.mlp_ratio);
  if (field == "qkv_bias") return Text(c.qkv_bias);
  if (field == "layer_scale") return Text(c.layer_scale_init_value > 0);
  if (field == "use_abs_pos_emb") return Text(c.use_abs_pos_emb);
  if (field == "use_shared_rel_pos_bias") return Text(c.use_shared_rel_pos_bias);
  return "";
}

std::string BeitConfigToJson(const BeitVitConfig& c) {
  JsonWriter w;
  w.Add("img_size", c.img_size)
      .Add("patch_size", c.patch_size)
      .Add("in_chans", c.in_chans)
      .Add("embed_dim", c.embed_dim)
      .Add("depth", c.depth)
      .Add("num_heads", c.num_heads)
      .Add("mlp_ratio", c.mlp_ratio)
      .Add("qkv_bias", c.qkv_bias)
      .Add("drop_path_rate", c.drop_path_rate)
      .Add("layer_scale_init_value", c.layer_scale_init_value)
      .Add("use_abs_pos_emb", c.use_abs_pos_emb)
      .Add("use_shared_rel_pos_bias", c.use_shared_rel_pos_bias)
      .Add("use_rel_pos_bias", c.use_rel_pos_bias)
      .Add("init_std", c.init_std)
      .Add("norm_eps", c.norm_eps)
      .Add("vocab_size", c.vocab_size)
      .Add("num_classes", c.num_classes)
      .Add("use_mean_pooling", c.use_mean_pooling)
      .Add("init_scale", c.init_scale);
  return w.str();
}

absl::StatusOr<BeitVitConfig> BeitConfigFromReader(ConfigReader& r) {
  BeitVitConfig c;
  static const char* const kRequired[] = {"img_size",
                                          "patch_size",
                                          "in_chans",
                                          "embed_dim",
                                          "depth",
                                          "num_heads",
                                          "mlp_ratio",
                                          "qkv_bias",
                                          "layer_scale_init_value",
                                          "use_abs_pos_emb",
                                          "use_shared_rel_pos_bias",
                                          "use_rel_pos_bias",
                                          "num_classes",
                                          "use_mean_pooling"};
  for (const char* field : kRequired) {
    if (!r.Has(field)) {
      return absl::InvalidArgumentError(absl::StrCat(r.PathOf(field), ": missing"));
    }
  }
  RETURN_IF_ERROR(r.Read("img_size", &c.img_size));
  RETURN_IF_ERROR(r.Read("patch_size", &c.patch_size));
  RETURN_IF_ERROR(r.Read("in_chans", &c.in_chans));
  RETURN_IF_ERROR(r.Read("embed_dim", &c.embed_dim));
  RETURN_IF_ERROR(r.Read("depth", &c.depth));
  RETURN_IF_ERROR(r.Read("num_heads", &c.num_heads));
  RETURN_IF_ERROR(r.Read("mlp_ratio", &c.mlp_ratio));
  RETURN_IF_ERROR(r.Read("qkv_bias", &c.qkv_bias));
  RETURN_IF_ERROR(r.Read("drop_path_rate", &c.drop_path_rate));
  RETURN_IF_ERROR(r.Read("layer_scale_init_value", &c.layer_scale_init_value));
  RETURN_IF_ERROR(r.Read("use_abs_pos_emb", &c.use_abs_pos_emb));
  RETURN_IF_ERROR(r.Read("use_shared_rel_pos_bias", &c.use_shared_rel_pos_bias));
  RETURN_IF_ERROR(r.Read("use_rel_pos_bias", &c.use_rel_pos_bias));
  RETURN_IF_ERROR(r.Read("init_std", &c.init_std));
  RETURN_IF_ERROR(r.Read("norm_eps", &c.norm_eps));
  RETURN_IF_ERROR(r.Read("vocab_size", &c.vocab_size));
  RETURN_IF_ERROR(r.Read("num_classes", &c.num_classes));
  RETURN_IF_ERROR(r.Read("use_mean_pooling", &c.use_mean_pooling));
  RETURN_IF_ERROR(r.Read("init_scale", &c.init_scale));
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(c.Validate(r.PathOf("")));
  return c;
}

}  // namespace peco::trainer
