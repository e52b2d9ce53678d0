#include "trainer/tasks/perceptual_network.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/losses/beit_trunk_extractor.h"
#include "trainer/losses/timm_vit_extractor.h"
#include "trainer/tasks/contrastive_config.h"
#include "trainer/tasks/contrastive_task.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/pretrain_task.h"

namespace peco::trainer {
namespace {

constexpr char kField[] = "loss.perceptual.checkpoint";

absl::Status FieldError(const std::string& path, const absl::Status& cause) {
  return absl::InvalidArgumentError(absl::StrCat(kField, ": cannot use '", path,
                                                 "' as the perceptual network: ", cause.message()));
}

// A checkpoint that can serve as the perceptual network, and the job kind that wrote it.
struct PerceptualCheckpoint {
  RestoredCheckpoint checkpoint;
  std::string kind;  // "pretrain", "contrastive" or "finetune"
};

// The checkpoint `path` resolves to, checked to be a pretrain, contrastive or finetune one.
absl::StatusOr<PerceptualCheckpoint> Resolve(const std::string& path) {
  if (!std::filesystem::is_directory(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, ": expected a peco contrastive, pretrain or finetune checkpoint or run ",
        "directory, got '", path, "'"));
  }
  absl::StatusOr<RestoredCheckpoint> checkpoint = ResolveCheckpoint(path, nullptr);
  if (!checkpoint.ok()) return FieldError(path, checkpoint.status());
  absl::StatusOr<std::string> kind = CheckpointKind(checkpoint->files, checkpoint->dir);
  if (!kind.ok()) return FieldError(path, kind.status());
  if (*kind != "pretrain" && *kind != "contrastive" && *kind != "finetune") {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, ": ", checkpoint->dir, " holds a '", *kind,
        "' checkpoint; expected a peco contrastive checkpoint (its MoCo v3 base encoder), "
        "pretrain checkpoint (its BEiT trunk) or finetune checkpoint (its classifier's trunk: a "
        "supervised perceptual network), or the run directory of one"));
  }
  return PerceptualCheckpoint{*std::move(checkpoint), *kind};
}

absl::Status CheckDepth(const PerceptualLossConfig& config, const PerceptualCheckpoint& resolved,
                        int64_t depth) {
  const char* network = resolved.kind == "pretrain"   ? "the BEiT of pretrain checkpoint "
                        : resolved.kind == "finetune" ? "the BEiT of finetune checkpoint "
                                                      : "the ViT of contrastive checkpoint ";
  return config.CheckBlocks("loss.perceptual.", depth,
                            absl::StrCat(network, resolved.checkpoint.dir, " with"));
}

// The source record of a checkpoint directory: its path and its manifest's digest.
absl::StatusOr<ExtractorSource> CheckpointSource(const PerceptualLossConfig& config,
                                                 const std::string& dir) {
  ExtractorSource source;
  source.path = dir;
  absl::StatusOr<std::string> digest =
      Sha256FileHex((std::filesystem::path(dir) / kManifestFileName).string());
  if (!digest.ok()) return FieldError(config.checkpoint, digest.status());
  source.sha256 = *digest;
  return source;
}

absl::StatusOr<std::unique_ptr<PerceptualFeatureExtractor>> PretrainExtractor(
    const PerceptualLossConfig& config, const PerceptualCheckpoint& resolved) {
  // Load the directory just resolved, so a checkpoint written meanwhile cannot slip in.
  absl::StatusOr<LoadedPretrain> loaded = LoadPretrainCheckpoint(resolved.checkpoint.dir);
  if (!loaded.ok()) return FieldError(config.checkpoint, loaded.status());
  RETURN_IF_ERROR(CheckDepth(config, resolved, loaded->config.model.depth));
  ASSIGN_OR_RETURN(ExtractorSource source, CheckpointSource(config, loaded->checkpoint_dir));
  const BeitVitConfig& model = loaded->config.model;
  source.description =
      absl::StrCat("pretrain checkpoint ", source.path, " (step ", loaded->step, ", BEiT ",
                   model.embed_dim, " wide, ", model.depth, " blocks, ", model.img_size, " px)");
  return std::make_unique<BeitTrunkExtractor>(loaded->model.ptr(), loaded->config.vit_mean,
                                              loaded->config.vit_std, std::move(source));
}

absl::StatusOr<std::unique_ptr<PerceptualFeatureExtractor>> FinetuneExtractor(
    const PerceptualLossConfig& config, const PerceptualCheckpoint& resolved) {
  absl::StatusOr<LoadedEval> loaded = LoadEvalCheckpoint(resolved.checkpoint.dir);
  if (!loaded.ok()) return FieldError(config.checkpoint, loaded.status());
  RETURN_IF_ERROR(CheckDepth(config, resolved, loaded->model_config.depth));
  ASSIGN_OR_RETURN(ExtractorSource source, CheckpointSource(config, loaded->checkpoint_dir));
  const BeitVitConfig& model = loaded->model_config;
  source.description =
      absl::StrCat("finetune checkpoint ", source.path, " (step ", loaded->step,
                   ", supervised BEiT ", model.embed_dim, " wide, ", model.depth, " blocks, ",
                   model.img_size, " px, top-1 ", absl::StrFormat("%.2f", loaded->eval.top1), "%)");
  return std::make_unique<BeitTrunkExtractor>(loaded->model.ptr(), loaded->input_mean,
                                              loaded->input_std, std::move(source));
}

absl::StatusOr<std::unique_ptr<PerceptualFeatureExtractor>> ContrastiveExtractor(
    const PerceptualLossConfig& config, const PerceptualCheckpoint& resolved) {
  absl::StatusOr<LoadedContrastive> loaded = LoadContrastiveCheckpoint(resolved.checkpoint.dir);
  if (!loaded.ok()) return FieldError(config.checkpoint, loaded.status());
  const TimmVitConfig& vit = loaded->config.model.vit;
  RETURN_IF_ERROR(CheckDepth(config, resolved, vit.depth));
  ASSIGN_OR_RETURN(ExtractorSource source, CheckpointSource(config, loaded->checkpoint_dir));
  source.description = absl::StrCat("contrastive checkpoint ", source.path, " (step ", loaded->step,
                                    ", MoCo v3 ViT ", vit.embed_dim, " wide, ", vit.depth,
                                    " blocks, ", vit.img_size, " px)");
  // The base encoder reads images as the job's views did.
  const TransformOptions& view = loaded->config.view1();
  return TimmVitExtractor::FromTrained(loaded->model->base_encoder(),
                                       MakeExtractorInput(vit.img_size, view.mean, view.std),
                                       std::move(source));
}

}  // namespace

absl::Status CheckPerceptualCheckpoint(const PerceptualLossConfig& config) {
  if (config.checkpoint.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(PerceptualCheckpoint resolved, Resolve(config.checkpoint));
  const RestoredCheckpoint& checkpoint = resolved.checkpoint;
  ASSIGN_OR_RETURN(const std::string* text,
                   CheckpointFile(checkpoint.files, kConfigFile, checkpoint.dir));
  const std::string source = checkpoint.dir + "/config.yaml";
  if (resolved.kind == "contrastive") {
    absl::StatusOr<ContrastiveJobConfig> contrastive =
        ParseContrastiveConfig(*text, source, /*check_paths=*/false);
    if (!contrastive.ok()) return FieldError(config.checkpoint, contrastive.status());
    return CheckDepth(config, resolved, contrastive->model.vit.depth);
  }
  if (resolved.kind == "finetune") {
    ASSIGN_OR_RETURN(const std::string* state_json,
                     CheckpointFile(checkpoint.files, kTrainerStateFile, checkpoint.dir));
    absl::StatusOr<EvalState> state =
        EvalStateFromJson(*state_json, checkpoint.dir + "/" + kTrainerStateFile);
    if (!state.ok()) return FieldError(config.checkpoint, state.status());
    return CheckDepth(config, resolved, state->model.depth);
  }
  absl::StatusOr<PretrainJobConfig> pretrain =
      ParsePretrainConfig(*text, source, /*check_paths=*/false);
  if (!pretrain.ok()) return FieldError(config.checkpoint, pretrain.status());
  return CheckDepth(config, resolved, pretrain->model.depth);
}

absl::StatusOr<std::unique_ptr<PerceptualLoss>> CreatePerceptualLoss(
    const PerceptualLossConfig& config) {
  if (config.checkpoint.empty()) return PerceptualLoss::Create(config);
  RETURN_IF_ERROR(config.Validate("loss.perceptual."));
  ASSIGN_OR_RETURN(PerceptualCheckpoint resolved, Resolve(config.checkpoint));
  ASSIGN_OR_RETURN(std::unique_ptr<PerceptualFeatureExtractor> extractor,
                   resolved.kind == "contrastive" ? ContrastiveExtractor(config, resolved)
                   : resolved.kind == "finetune"  ? FinetuneExtractor(config, resolved)
                                                  : PretrainExtractor(config, resolved));
  return PerceptualLoss::Create(config, std::move(extractor));
}

}  // namespace peco::trainer
