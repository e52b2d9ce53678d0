#include "trainer/tasks/eval_backbone.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/models/beit_weights.h"
#include "trainer/tasks/model_section.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/pretrain_task.h"

namespace peco::trainer {
namespace {

bool Given(const EvalJobConfig& config, const std::string& field) {
  return std::find(config.model_fields.begin(), config.model_fields.end(), field) !=
         config.model_fields.end();
}

// A configuration error about the source: InvalidArgument unless LibTorch failed.
absl::Status SourceError(const char* field, const std::string& path, const absl::Status& status) {
  const absl::StatusCode code = status.code() == absl::StatusCode::kInternal
                                    ? absl::StatusCode::kInternal
                                    : absl::StatusCode::kInvalidArgument;
  return absl::Status(code, absl::StrCat(field, ": cannot load '", path, "': ", status.message()));
}

absl::StatusOr<EvalBackboneSource> ResolveCheckpointBackbone(EvalJobConfig* config,
                                                             ProgressSink* progress) {
  const std::string& path = config->backbone.checkpoint;
  absl::StatusOr<RestoredCheckpoint> checkpoint = ResolveCheckpoint(path, progress);
  if (!checkpoint.ok()) return SourceError("backbone.checkpoint", path, checkpoint.status());
  const std::string& dir = checkpoint->dir;
  absl::StatusOr<std::string> kind = CheckpointKind(checkpoint->files, dir);
  if (!kind.ok()) return SourceError("backbone.checkpoint", path, kind.status());
  if (*kind != "pretrain") {
    return absl::InvalidArgumentError(absl::StrCat("backbone.checkpoint: ", dir, " is a ", *kind,
                                                   " checkpoint, expected a pretrain checkpoint"));
  }
  absl::StatusOr<const std::string*> text = CheckpointFile(checkpoint->files, kConfigFile, dir);
  if (!text.ok()) return SourceError("backbone.checkpoint", path, text.status());
  absl::StatusOr<PretrainJobConfig> pretrain =
      ParsePretrainConfig(**text, dir + "/config.yaml", /*check_paths=*/false);
  if (!pretrain.ok()) return SourceError("backbone.checkpoint", path, pretrain.status());

  // A preset names every architecture field; otherwise only the fields written are compared.
  const bool all = Given(*config, "preset");
  for (const std::string& field : BeitArchitectureFields()) {
    const bool given = all || Given(*config, field) ||
                       (field == "layer_scale" && Given(*config, "layer_scale_init_value"));
    if (!given) continue;
    const std::string ours = BeitArchitectureValue(config->model, field);
    const std::string theirs = BeitArchitectureValue(pretrain->model, field);
    if (ours != theirs) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.", field, ": ", ours,
          Given(*config, field) ? "" : absl::StrCat(" (model.preset ", config->model_preset, ")"),
          " differs from the backbone's ", theirs, " (backbone.checkpoint ", dir,
          "); leave the model's architecture out to take the backbone's"));
    }
  }
  BeitVitConfig model = pretrain->model;
  if (Given(*config, "drop_path_rate")) model.drop_path_rate = config->model.drop_path_rate;
  if (Given(*config, "init_std")) model.init_std = config->model.init_std;
  config->model = model;
  if (!config->normalisation_given) {
    config->mean = pretrain->vit_mean;
    config->std = pretrain->vit_std;
  }
  EvalBackboneSource source;
  source.kind = "checkpoint";
  source.path = dir;
  ASSIGN_OR_RETURN(source.sha256, TokenizerDigest(dir));  // the MANIFEST's SHA-256
  source.step = CheckpointStep(dir);
  return source;
}

}  // namespace

absl::StatusOr<EvalBackboneSource> ResolveEvalBackbone(EvalJobConfig* config,
                                                       ProgressSink* progress) {
  EvalBackboneSource source;
  if (!config->backbone.checkpoint.empty()) {
    ASSIGN_OR_RETURN(source, ResolveCheckpointBackbone(config, progress));
  } else if (!config->backbone.weights.empty()) {
    source.kind = "weights";
    source.path = config->backbone.weights;
    absl::StatusOr<std::string> digest = Sha256FileHex(source.path);
    if (!digest.ok()) return SourceError("backbone.weights", source.path, digest.status());
    source.sha256 = *digest;
  } else if (config->backbone.named == "pixels") {
    source.kind = "pixels";
  }
  config->backbone_resolved = true;
  FinishEvalConfig(config);
  RETURN_IF_ERROR(config->Validate(/*check_paths=*/false));
  return source;
}

absl::Status LoadBackboneInto(const EvalBackboneSource& source, BeitClassifier& model) {
  if (source.kind == "checkpoint") {
    absl::StatusOr<LoadedPretrain> loaded = LoadPretrainCheckpoint(source.path);
    if (!loaded.ok()) return SourceError("backbone.checkpoint", source.path, loaded.status());
    absl::Status status =
        LoadPretrainIntoClassifier(model, StateDictInOfficialOrder(*loaded->model), source.path);
    if (!status.ok()) return SourceError("backbone.checkpoint", source.path, status);
  } else if (source.kind == "weights") {
    absl::StatusOr<NamedTensors> state = ReadBeitStateFile(source.path);
    if (!state.ok()) return SourceError("backbone.weights", source.path, state.status());
    absl::Status status = LoadPretrainIntoClassifier(model, *state, source.path);
    if (!status.ok()) return SourceError("backbone.weights", source.path, status);
  }
  return absl::OkStatus();
}

}  // namespace peco::trainer
