#include "trainer/tasks/perceptual_network.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/losses/beit_trunk_extractor.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/pretrain_task.h"

namespace peco::trainer {
namespace {

constexpr char kField[] = "loss.perceptual.checkpoint";

absl::Status FieldError(const std::string& path, const absl::Status& cause) {
  return absl::InvalidArgumentError(absl::StrCat(kField, ": cannot use '", path,
                                                 "' as the perceptual network: ", cause.message()));
}

// The pretrain checkpoint `path` resolves to, checked to be one.
absl::StatusOr<RestoredCheckpoint> ResolvePretrain(const std::string& path) {
  if (!std::filesystem::is_directory(path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, ": expected a peco pretrain checkpoint or run directory, got '", path, "'"));
  }
  absl::StatusOr<RestoredCheckpoint> checkpoint = ResolveCheckpoint(path, nullptr);
  if (!checkpoint.ok()) return FieldError(path, checkpoint.status());
  absl::StatusOr<std::string> kind = CheckpointKind(checkpoint->files, checkpoint->dir);
  if (!kind.ok()) return FieldError(path, kind.status());
  if (*kind != "pretrain") {
    return absl::InvalidArgumentError(absl::StrCat(
        kField, ": ", checkpoint->dir, " holds a '", *kind,
        "' checkpoint; expected a peco pretrain checkpoint or run directory (the BEiT trunk of a "
        "pretrain job is the perceptual network)"));
  }
  return checkpoint;
}

absl::Status CheckDepth(const PerceptualLossConfig& config, const std::string& dir, int64_t depth) {
  return config.CheckBlocks("loss.perceptual.", depth,
                            absl::StrCat("the BEiT of pretrain checkpoint ", dir, " with"));
}

}  // namespace

absl::Status CheckPerceptualCheckpoint(const PerceptualLossConfig& config) {
  if (config.checkpoint.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolvePretrain(config.checkpoint));
  ASSIGN_OR_RETURN(const std::string* text,
                   CheckpointFile(checkpoint.files, "config.yaml", checkpoint.dir));
  absl::StatusOr<PretrainJobConfig> pretrain =
      ParsePretrainConfig(*text, checkpoint.dir + "/config.yaml", /*check_paths=*/false);
  if (!pretrain.ok()) return FieldError(config.checkpoint, pretrain.status());
  return CheckDepth(config, checkpoint.dir, pretrain->model.depth);
}

absl::StatusOr<std::unique_ptr<PerceptualLoss>> CreatePerceptualLoss(
    const PerceptualLossConfig& config) {
  if (config.checkpoint.empty()) return PerceptualLoss::Create(config);
  RETURN_IF_ERROR(config.Validate("loss.perceptual."));
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolvePretrain(config.checkpoint));
  // Load the directory just resolved, so a checkpoint written meanwhile cannot slip in.
  absl::StatusOr<LoadedPretrain> loaded = LoadPretrainCheckpoint(checkpoint.dir);
  if (!loaded.ok()) return FieldError(config.checkpoint, loaded.status());
  RETURN_IF_ERROR(CheckDepth(config, loaded->checkpoint_dir, loaded->config.model.depth));
  ExtractorSource source;
  source.path = loaded->checkpoint_dir;
  absl::StatusOr<std::string> digest =
      Sha256FileHex((std::filesystem::path(source.path) / kManifestName).string());
  if (!digest.ok()) return FieldError(config.checkpoint, digest.status());
  source.sha256 = *digest;
  const BeitVitConfig& model = loaded->config.model;
  source.description =
      absl::StrCat("pretrain checkpoint ", source.path, " (step ", loaded->step, ", BEiT ",
                   model.embed_dim, " wide, ", model.depth, " blocks, ", model.img_size, " px)");
  auto extractor = std::make_unique<BeitTrunkExtractor>(loaded->model, loaded->config.vit_mean,
                                                        loaded->config.vit_std, std::move(source));
  return PerceptualLoss::Create(config, std::move(extractor));
}

}  // namespace peco::trainer
