#include "trainer/tasks/tokenizer_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "trainer/tasks/perceptual_network.h"

namespace peco::trainer {
namespace {

absl::Status ReadModel(ConfigReader& r, VqTokenizerConfig* m) {
  RETURN_IF_ERROR(r.Read("ch", &m->vqgan.ch));
  RETURN_IF_ERROR(r.Read("ch_mult", &m->vqgan.ch_mult));
  RETURN_IF_ERROR(r.Read("num_res_blocks", &m->vqgan.num_res_blocks));
  RETURN_IF_ERROR(r.Read("attn_resolutions", &m->vqgan.attn_resolutions));
  RETURN_IF_ERROR(r.Read("z_channels", &m->vqgan.z_channels));
  RETURN_IF_ERROR(r.Read("dropout", &m->vqgan.dropout));
  RETURN_IF_ERROR(r.Read("n_embed", &m->quantizer.num_codes));
  RETURN_IF_ERROR(r.Read("embed_dim", &m->quantizer.dim));
  RETURN_IF_ERROR(r.Read("beta", &m->quantizer.beta));
  RETURN_IF_ERROR(r.Read("legacy_loss", &m->quantizer.legacy_loss));
  RETURN_IF_ERROR(r.Read("dead_code_steps", &m->quantizer.dead_code_steps));
  RETURN_IF_ERROR(r.Read("dead_code_until_step", &m->quantizer.dead_code_until_step));
  RETURN_IF_ERROR(r.ReadEnum("quantizer", {"vq", "gumbel"}, &m->quantizer_kind));
  {
    ASSIGN_OR_RETURN(ConfigReader g, r.Child("gumbel"));
    GumbelQuantizerConfig& gumbel = m->gumbel;
    RETURN_IF_ERROR(g.Read("straight_through", &gumbel.straight_through));
    RETURN_IF_ERROR(g.Read("temperature_start", &gumbel.schedule.temperature_start));
    RETURN_IF_ERROR(g.Read("temperature_end", &gumbel.schedule.temperature_end));
    RETURN_IF_ERROR(g.Read("temperature_steps", &gumbel.schedule.temperature_steps));
    RETURN_IF_ERROR(g.Read("kl_weight", &gumbel.schedule.kl_weight));
    RETURN_IF_ERROR(g.Read("kl_warmup_steps", &gumbel.schedule.kl_warmup_steps));
    RETURN_IF_ERROR(g.Finish());
  }
  // One codebook size and code width for either quantizer.
  m->gumbel.num_codes = m->quantizer.num_codes;
  m->gumbel.dim = m->quantizer.dim;
  return r.Finish();
}

absl::Status ReadLoss(ConfigReader& r, TokenizerLossConfig* l) {
  RETURN_IF_ERROR(r.ReadEnum("pixel", {"l1", "l2"}, &l->pixel));
  RETURN_IF_ERROR(r.Read("pixel_weight", &l->pixel_weight));
  RETURN_IF_ERROR(r.Read("codebook_weight", &l->codebook_weight));
  RETURN_IF_ERROR(r.Read("perceptual_weight", &l->perceptual_weight));
  RETURN_IF_ERROR(r.ReadEnum("perceptual_balance", {"none", "initial"}, &l->perceptual_balance));
  {
    ASSIGN_OR_RETURN(ConfigReader p, r.Child("perceptual"));
    PerceptualLossConfig& pc = l->perceptual;
    RETURN_IF_ERROR(p.Read("weights", &pc.weights_path));
    RETURN_IF_ERROR(p.Read("checkpoint", &pc.checkpoint));
    int64_t seed = static_cast<int64_t>(pc.random_seed);
    RETURN_IF_ERROR(p.Read("seed", &seed));
    pc.random_seed = static_cast<uint64_t>(seed);
    RETURN_IF_ERROR(p.Read("blocks", &pc.blocks));
    RETURN_IF_ERROR(p.Read("layer_weights", &pc.layer_weights));
    RETURN_IF_ERROR(p.Read("include_cls_token", &pc.include_cls_token));
    RETURN_IF_ERROR(p.ReadEnum("normalize", {"none", "token"}, &pc.normalize));
    ASSIGN_OR_RETURN(ConfigReader e, p.Child("extractor"));
    RETURN_IF_ERROR(e.Read("img_size", &pc.extractor.img_size));
    RETURN_IF_ERROR(e.Read("patch_size", &pc.extractor.patch_size));
    RETURN_IF_ERROR(e.Read("embed_dim", &pc.extractor.embed_dim));
    RETURN_IF_ERROR(e.Read("depth", &pc.extractor.depth));
    RETURN_IF_ERROR(e.Read("num_heads", &pc.extractor.num_heads));
    RETURN_IF_ERROR(e.Read("mlp_ratio", &pc.extractor.mlp_ratio));
    RETURN_IF_ERROR(e.Finish());
    RETURN_IF_ERROR(p.Finish());
  }
  {
    ASSIGN_OR_RETURN(ConfigReader g, r.Child("gan"));
    RETURN_IF_ERROR(g.Read("enabled", &l->gan.enabled));
    RETURN_IF_ERROR(g.Read("disc_weight", &l->gan.disc_weight));
    RETURN_IF_ERROR(g.Read("disc_start", &l->gan.disc_start));
    RETURN_IF_ERROR(g.Read("ndf", &l->gan.discriminator.ndf));
    RETURN_IF_ERROR(g.Read("n_layers", &l->gan.discriminator.n_layers));
    RETURN_IF_ERROR(g.Finish());
  }
  return r.Finish();
}

absl::Status ReadOptim(ConfigReader& r, OptimConfig* o) {
  RETURN_IF_ERROR(r.ReadEnum("optimizer", {"adam", "adamw"}, &o->optimizer));
  RETURN_IF_ERROR(r.Read("lr", &o->schedule.base_lr));
  RETURN_IF_ERROR(r.Read("min_lr", &o->schedule.min_lr));
  RETURN_IF_ERROR(r.ReadEnum("schedule", {"cosine", "constant"}, &o->schedule.kind));
  RETURN_IF_ERROR(r.Read("warmup_steps", &o->schedule.warmup_steps));
  RETURN_IF_ERROR(r.Read("betas", &o->betas));
  RETURN_IF_ERROR(r.Read("eps", &o->eps));
  RETURN_IF_ERROR(r.Read("weight_decay", &o->weight_decay));
  RETURN_IF_ERROR(r.Read("grad_clip", &o->grad_clip));
  return r.Finish();
}

absl::Status ReadTrain(ConfigReader& r, TrainConfig* t) {
  RETURN_IF_ERROR(ReadTrainFields(r, t));
  return r.Finish();
}

}  // namespace

DataConfig TokenizerJobConfig::EvalData() const {
  DataConfig d = data;
  d.labels_per_class = 0;  // the whole held-out split
  d.split = eval.split;
  if (!eval.path.empty()) d.path = eval.path;
  return d;
}

absl::Status TokenizerJobConfig::Validate(bool check_paths) const {
  RETURN_IF_ERROR(ValidateDataSection(data, check_paths));
  RETURN_IF_ERROR(model.Validate("model."));
  if (loss.pixel_weight < 0) return absl::InvalidArgumentError("loss.pixel_weight: expected >= 0");
  if (loss.codebook_weight < 0)
    return absl::InvalidArgumentError("loss.codebook_weight: expected >= 0");
  if (loss.perceptual_weight < 0) {
    return absl::InvalidArgumentError("loss.perceptual_weight: expected >= 0");
  }
  if (loss.perceptual_balance == "initial" &&
      !(loss.perceptual_weight > 0 && loss.pixel_weight > 0)) {
    return absl::InvalidArgumentError(
        "loss.perceptual_balance: initial scales the perceptual term to the pixel term; it needs "
        "loss.perceptual_weight > 0 and loss.pixel_weight > 0");
  }
  if (loss.perceptual_weight > 0) {
    RETURN_IF_ERROR(loss.perceptual.Validate("loss.perceptual."));
    if (check_paths && !loss.perceptual.weights_path.empty() &&
        !std::filesystem::exists(loss.perceptual.weights_path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("loss.perceptual.weights: file not found: ", loss.perceptual.weights_path));
    }
    if (check_paths) RETURN_IF_ERROR(CheckPerceptualCheckpoint(loss.perceptual));
  }
  if (loss.gan.enabled) {
    if (loss.gan.disc_weight < 0)
      return absl::InvalidArgumentError("loss.gan.disc_weight: expected >= 0");
    if (loss.gan.disc_start < 0)
      return absl::InvalidArgumentError("loss.gan.disc_start: expected >= 0");
    if (loss.gan.discriminator.ndf <= 0)
      return absl::InvalidArgumentError("loss.gan.ndf: expected > 0");
    if (loss.gan.discriminator.n_layers < 1 || loss.gan.discriminator.n_layers > 6) {
      return absl::InvalidArgumentError("loss.gan.n_layers: expected a value in [1, 6]");
    }
  }
  RETURN_IF_ERROR(optim.schedule.Validate("optim."));
  if (optim.betas.size() != 2 || optim.betas[0] < 0 || optim.betas[0] >= 1 || optim.betas[1] < 0 ||
      optim.betas[1] >= 1) {
    return absl::InvalidArgumentError("optim.betas: expected two values in [0, 1)");
  }
  if (!(optim.eps > 0)) return absl::InvalidArgumentError("optim.eps: expected a value > 0");
  if (optim.weight_decay < 0)
    return absl::InvalidArgumentError("optim.weight_decay: expected >= 0");
  if (optim.grad_clip < 0)
    return absl::InvalidArgumentError("optim.grad_clip: expected >= 0 (0 = off)");
  RETURN_IF_ERROR(ValidateTrainSection(train));
  if (eval.enabled) {
    RETURN_IF_ERROR(eval.Validate());
    // Only a run needs the folder: a checkpoint's config written before `eval:` existed has none
    // and must still load (as a pretrain target, a perceptual network, for export).
    if (check_paths && data.source == "image_folder" && eval.path.empty()) {
      return absl::InvalidArgumentError(
          "eval.path: expected the held-out image folder (data.source is image_folder), or "
          "eval.enabled: false");
    }
    if (check_paths && data.source == "image_folder" && !IsDatasetPath(data.source, eval.path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "eval.path: expected a readable directory or list file, got '", eval.path, "'"));
    }
  }
  if (threads < 0) return absl::InvalidArgumentError("threads: expected >= 0 (0 = all cores)");
  return absl::OkStatus();
}

absl::StatusOr<TokenizerJobConfig> ParseTokenizerConfig(const std::string& yaml,
                                                        const std::string& source,
                                                        bool check_paths) {
  ASSIGN_OR_RETURN(ConfigReader root, ConfigReader::FromString(yaml, source));
  TokenizerJobConfig config;
  config.source_text = yaml;
  std::string kind = "tokenizer";
  RETURN_IF_ERROR(root.ReadEnum("kind", {"tokenizer"}, &kind));
  RETURN_IF_ERROR(ReadRunFields(root, &config.seed, &config.threads, &config.data, &config.faults));
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("transform"));
    RETURN_IF_ERROR(ReadTransformSection(r, &config.data.loader.transform));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("model"));
    RETURN_IF_ERROR(ReadModel(r, &config.model));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("loss"));
    RETURN_IF_ERROR(ReadLoss(r, &config.loss));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("optim"));
    RETURN_IF_ERROR(ReadOptim(r, &config.optim));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("train"));
    RETURN_IF_ERROR(ReadTrain(r, &config.train));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("eval"));
    RETURN_IF_ERROR(ReadTokenizerEvalSection(r, &config.eval));
  }
  // The `job:` section is for the service (docs/SERVICE.md), so one file runs both ways.
  RETURN_IF_ERROR(root.Child("job").status());
  RETURN_IF_ERROR(root.Finish());

  // Derived fields.
  config.model.vqgan.resolution = config.data.image_size;
  config.data.loader.seed = config.seed;
  config.data.loader.transform.output_sizes = {static_cast<int>(config.data.image_size)};
  config.data.loader.transform.to_rgb = true;
  config.data.loader.transform.mean = {0.5, 0.5, 0.5};  // tokenizer inputs live in [-1, 1]
  config.data.loader.transform.std = {0.5, 0.5, 0.5};
  config.optim.schedule.total_steps = config.train.max_steps;
  RETURN_IF_ERROR(config.Validate(check_paths));
  return config;
}

absl::StatusOr<TokenizerJobConfig> LoadTokenizerConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseTokenizerConfig(text, path);
}

}  // namespace peco::trainer
