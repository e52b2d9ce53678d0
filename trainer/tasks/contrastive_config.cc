#include "trainer/tasks/contrastive_config.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace {

absl::Status Bad(const std::string& field, const std::string& expected, double got) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": expected ", expected, ", got ", got));
}

MocoV3Config SmallFashionMnist() {
  MocoV3Config c;
  c.vit.img_size = 32;
  c.vit.patch_size = 4;
  c.vit.embed_dim = 128;
  c.vit.depth = 4;
  c.vit.num_heads = 4;
  c.dim = 128;
  c.mlp_dim = 1024;
  return c;
}

MocoV3Config VitSmall() {
  MocoV3Config c;
  c.vit.embed_dim = 384;
  c.vit.num_heads = 12;
  return c;
}

MocoV3Config VitBase() { return MocoV3Config(); }

const std::map<std::string, MocoV3Config (*)()>& Presets() {
  static const auto* presets =
      new std::map<std::string, MocoV3Config (*)()>{{"vit_small_fashion_mnist", &SmallFashionMnist},
                                                    {"vit_small", &VitSmall},
                                                    {"vit_base", &VitBase}};
  return *presets;
}

absl::Status ReadModel(ConfigReader& r, std::string* preset, MocoV3Config* m) {
  std::vector<std::string> names;
  for (const auto& [name, make] : Presets()) names.push_back(name);
  RETURN_IF_ERROR(r.ReadEnum("preset", names, preset));
  *m = Presets().at(*preset)();
  RETURN_IF_ERROR(r.Read("img_size", &m->vit.img_size));
  RETURN_IF_ERROR(r.Read("patch_size", &m->vit.patch_size));
  RETURN_IF_ERROR(r.Read("embed_dim", &m->vit.embed_dim));
  RETURN_IF_ERROR(r.Read("depth", &m->vit.depth));
  RETURN_IF_ERROR(r.Read("num_heads", &m->vit.num_heads));
  RETURN_IF_ERROR(r.Read("mlp_ratio", &m->vit.mlp_ratio));
  RETURN_IF_ERROR(r.Read("dim", &m->dim));
  RETURN_IF_ERROR(r.Read("mlp_dim", &m->mlp_dim));
  RETURN_IF_ERROR(r.Read("stop_grad_conv1", &m->stop_grad_conv1));
  return r.Finish();
}

absl::Status ReadMoco(ConfigReader& r, MocoConfig* m) {
  RETURN_IF_ERROR(r.Read("temperature", &m->temperature));
  RETURN_IF_ERROR(r.Read("momentum", &m->momentum));
  RETURN_IF_ERROR(r.ReadEnum("momentum_schedule", {"cosine", "constant"}, &m->momentum_schedule));
  RETURN_IF_ERROR(r.ReadEnum("batch_norm", {"sync", "per_rank"}, &m->batch_norm));
  return r.Finish();
}

absl::Status ReadOptim(ConfigReader& r, ContrastiveOptimConfig* o) {
  RETURN_IF_ERROR(r.Read("lr", &o->lr));
  RETURN_IF_ERROR(r.Read("scale_lr_by_batch", &o->scale_lr_by_batch));
  RETURN_IF_ERROR(r.Read("min_lr", &o->schedule.min_lr));
  RETURN_IF_ERROR(r.ReadEnum("schedule", {"cosine", "constant"}, &o->schedule.kind));
  RETURN_IF_ERROR(r.Read("warmup_steps", &o->schedule.warmup_steps));
  RETURN_IF_ERROR(r.Read("betas", &o->betas));
  RETURN_IF_ERROR(r.Read("eps", &o->eps));
  RETURN_IF_ERROR(r.Read("weight_decay", &o->weight_decay));
  RETURN_IF_ERROR(r.Read("grad_clip", &o->grad_clip));
  return r.Finish();
}

absl::Status ReadEval(ConfigReader& r, ContrastiveEvalConfig* e) {
  RETURN_IF_ERROR(r.Read("enabled", &e->enabled));
  RETURN_IF_ERROR(r.Read("split", &e->split));
  RETURN_IF_ERROR(r.Read("path", &e->path));
  RETURN_IF_ERROR(r.Read("every", &e->every));
  RETURN_IF_ERROR(r.Read("at_start", &e->at_start));
  RETURN_IF_ERROR(r.Read("train_images", &e->train_images));
  RETURN_IF_ERROR(r.Read("max_images", &e->max_images));
  RETURN_IF_ERROR(r.Read("batch_size", &e->batch_size));
  RETURN_IF_ERROR(r.Read("crop_fraction", &e->crop_fraction));
  ASSIGN_OR_RETURN(ConfigReader knn, r.Child("knn"));
  RETURN_IF_ERROR(knn.Read("k", &e->knn.k));
  RETURN_IF_ERROR(knn.Read("temperature", &e->knn.temperature));
  RETURN_IF_ERROR(knn.Finish());
  return r.Finish();
}

// `transform:`: the fields both views share, then `view1:` / `view2:` overrides of any of them.
absl::Status ReadViews(ConfigReader& r, ContrastiveJobConfig* config) {
  TransformOptions shared;
  shared.scale_min = 0.08;
  shared.brightness = 0.4;
  shared.contrast = 0.4;
  shared.saturation = 0.2;
  shared.hue = 0.1;
  shared.jitter_probability = 0.8;
  shared.grayscale_probability = 0.2;
  shared.mean = {0.485, 0.456, 0.406};  // ImageNet's, as MoCo v3
  shared.std = {0.229, 0.224, 0.225};
  ASSIGN_OR_RETURN(ConfigReader view1, r.Child("view1"));
  ASSIGN_OR_RETURN(ConfigReader view2, r.Child("view2"));
  RETURN_IF_ERROR(r.Read("mean", &shared.mean));
  RETURN_IF_ERROR(r.Read("std", &shared.std));
  RETURN_IF_ERROR(ReadTransformSection(r, &shared));
  TransformOptions first = shared, second = shared;
  first.blur_probability = 1.0;  // BYOL's asymmetry
  second.blur_probability = 0.1;
  second.solarize_probability = 0.2;
  RETURN_IF_ERROR(ReadTransformSection(view1, &first));
  RETURN_IF_ERROR(ReadTransformSection(view2, &second));
  config->data.loader.transform = first;
  config->data.loader.independent_views = {second};
  return absl::OkStatus();
}

absl::Status ReadTrain(ConfigReader& r, ContrastiveTrainConfig* t) {
  RETURN_IF_ERROR(ReadTrainFields(r, t));
  RETURN_IF_ERROR(r.Read("peak_tflops", &t->peak_tflops));
  return r.Finish();
}

// A view's transform error naming the view's field ("transform.view2.hue: ..."; a field both
// views share is named in view1).
absl::Status ValidateView(const TransformOptions& view, const char* name) {
  absl::Status status = view.Validate();
  if (status.ok()) return status;
  std::string message(status.message());
  if (message.rfind("transform.", 0) == 0) message = message.substr(10);
  return absl::InvalidArgumentError(absl::StrCat("transform.", name, ".", message));
}

}  // namespace

double MocoConfig::MomentumAt(int64_t step, int64_t total_steps) const {
  if (momentum_schedule == "constant" || total_steps <= 0) return momentum;
  const double progress = std::min(1.0, static_cast<double>(step) / total_steps);
  return 1.0 - 0.5 * (1.0 + std::cos(M_PI * progress)) * (1.0 - momentum);
}

absl::StatusOr<MocoV3Config> MocoV3Preset(const std::string& name) {
  auto it = Presets().find(name);
  if (it == Presets().end()) {
    std::vector<std::string> names;
    for (const auto& [known, make] : Presets()) names.push_back(known);
    return absl::InvalidArgumentError(absl::StrCat(
        "model.preset: expected one of ", absl::StrJoin(names, ", "), ", got '", name, "'"));
  }
  return it->second();
}

absl::Status ContrastiveJobConfig::Validate(bool check_paths) const {
  RETURN_IF_ERROR(ValidateView(view1(), "view1"));
  RETURN_IF_ERROR(ValidateView(view2(), "view2"));
  RETURN_IF_ERROR(ValidateDataSection(data, check_paths));
  RETURN_IF_ERROR(ValidateNormalisation("transform.mean", view1().mean, false));
  RETURN_IF_ERROR(ValidateNormalisation("transform.std", view1().std, true));
  RETURN_IF_ERROR(model.Validate("model."));
  if (model.vit.img_size != data.image_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.img_size: ", model.vit.img_size, " (the ViT's input) differs from data.image_size ",
        data.image_size, " (the size of both views); set both to the same size"));
  }
  if (data.loader.batch_size < 2) {
    return Bad("data.batch_size",
               "at least 2 images per rank (each query's negatives are the other images' keys)",
               static_cast<double>(data.loader.batch_size));
  }
  if (!(moco.temperature > 0) || !std::isfinite(moco.temperature)) {
    return Bad("moco.temperature", "a value > 0", moco.temperature);
  }
  if (!(moco.momentum >= 0 && moco.momentum <= 1)) {
    return Bad("moco.momentum", "a value in [0, 1]", moco.momentum);
  }
  if (!(optim.lr > 0) || !std::isfinite(optim.lr)) return Bad("optim.lr", "a value > 0", optim.lr);
  RETURN_IF_ERROR(optim.schedule.Validate("optim."));
  if (optim.betas.size() != 2 || optim.betas[0] < 0 || optim.betas[0] >= 1 || optim.betas[1] < 0 ||
      optim.betas[1] >= 1) {
    return absl::InvalidArgumentError("optim.betas: expected two values in [0, 1)");
  }
  if (!(optim.eps > 0)) return Bad("optim.eps", "a value > 0", optim.eps);
  if (!(optim.weight_decay >= 0)) return Bad("optim.weight_decay", ">= 0", optim.weight_decay);
  if (!(optim.grad_clip >= 0)) return Bad("optim.grad_clip", ">= 0 (0 = off)", optim.grad_clip);
  if (eval.enabled) {
    if (eval.every < 0) return Bad("eval.every", ">= 0 (0 = at the start and the end)", eval.every);
    if (eval.train_images < 0) {
      return Bad("eval.train_images", ">= 0 (0 = every training image)",
                 static_cast<double>(eval.train_images));
    }
    if (eval.max_images < 0) {
      return Bad("eval.max_images", ">= 0 (0 = the whole split)",
                 static_cast<double>(eval.max_images));
    }
    if (!(eval.crop_fraction > 0 && eval.crop_fraction <= 1)) {
      return Bad("eval.crop_fraction", "a value in (0, 1]", eval.crop_fraction);
    }
    if (eval.batch_size < 1) {
      return Bad("eval.batch_size", "a value >= 1", static_cast<double>(eval.batch_size));
    }
    if (eval.knn.k < 1) return Bad("eval.knn.k", "a value >= 1", static_cast<double>(eval.knn.k));
    if (eval.train_images > 0 && eval.knn.k > eval.train_images) {
      return Bad("eval.knn.k", absl::StrCat("at most eval.train_images ", eval.train_images),
                 static_cast<double>(eval.knn.k));
    }
    if (!(eval.knn.temperature > 0)) {
      return Bad("eval.knn.temperature", "a value > 0", eval.knn.temperature);
    }
    if (data.source == "image_folder" && eval.path.empty()) {
      return absl::InvalidArgumentError(
          "eval.path: expected the held-out image folder (data.source is image_folder)");
    }
    if (check_paths && data.source != "synthetic" &&
        !IsDatasetPath(eval_data.source, eval_data.path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("eval.path: expected a readable directory for the held-out split, got '",
                       eval_data.path, "'"));
    }
  }
  RETURN_IF_ERROR(ValidateTrainSection(train));
  if (!(train.peak_tflops >= 0)) return Bad("train.peak_tflops", ">= 0", train.peak_tflops);
  if (threads < 0) return Bad("threads", ">= 0 (0 = all cores)", threads);
  return absl::OkStatus();
}

absl::StatusOr<ContrastiveJobConfig> ParseContrastiveConfig(const std::string& yaml,
                                                            const std::string& source,
                                                            bool check_paths) {
  ASSIGN_OR_RETURN(ConfigReader root, ConfigReader::FromString(yaml, source));
  ContrastiveJobConfig config;
  config.source_text = yaml;
  config.train.output_dir = "runs/contrastive";
  std::string kind = "contrastive";
  RETURN_IF_ERROR(root.ReadEnum("kind", {"contrastive"}, &kind));
  RETURN_IF_ERROR(ReadRunFields(root, &config.seed, &config.threads, &config.data, &config.faults));
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("transform"));
    RETURN_IF_ERROR(ReadViews(r, &config));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("model"));
    RETURN_IF_ERROR(ReadModel(r, &config.model_preset, &config.model));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("moco"));
    RETURN_IF_ERROR(ReadMoco(r, &config.moco));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("optim"));
    RETURN_IF_ERROR(ReadOptim(r, &config.optim));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("eval"));
    RETURN_IF_ERROR(ReadEval(r, &config.eval));
  }
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("train"));
    RETURN_IF_ERROR(ReadTrain(r, &config.train));
  }
  RETURN_IF_ERROR(root.Child("job").status());  // the service's section (docs/SERVICE.md)
  RETURN_IF_ERROR(root.Finish());

  // Derived fields.
  config.data.loader.seed = config.seed;
  const int size = static_cast<int>(config.data.image_size);
  for (TransformOptions* view :
       {&config.data.loader.transform, &config.data.loader.independent_views[0]}) {
    view->output_sizes = {size};
    view->to_rgb = true;
    view->mean = config.data.loader.transform.mean;
    view->std = config.data.loader.transform.std;
  }
  config.eval_data = config.data;
  config.eval_data.labels_per_class = 0;
  config.eval_data.split = config.eval.split;
  if (!config.eval.path.empty()) config.eval_data.path = config.eval.path;
  config.eval_data.loader.transform =
      EvaluationView(config.data.loader.transform, config.eval.crop_fraction);
  config.eval_data.loader.independent_views.clear();
  config.eval_data.loader.batch_size = config.eval.batch_size;
  config.eval_data.loader.shuffle = false;
  config.eval_data.loader.drop_last = false;
  config.optim.schedule.total_steps = config.train.max_steps;
  config.optim.schedule.warmup_from_zero = true;  // MoCo v3's warm-up starts at 0
  RETURN_IF_ERROR(config.Validate(check_paths));
  return config;
}

}  // namespace peco::trainer
