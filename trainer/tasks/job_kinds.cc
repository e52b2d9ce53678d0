#include "trainer/tasks/job_kinds.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/config_reader.h"
#include "common/status_macros.h"
#include "trainer/export/beit_export.h"
#include "trainer/export/moco_export.h"
#include "trainer/export/tokenizer_export.h"
#include "trainer/tasks/contrastive_config.h"
#include "trainer/tasks/contrastive_task.h"
#include "trainer/tasks/eval_backbone.h"
#include "trainer/tasks/eval_config.h"
#include "trainer/tasks/eval_task.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/tokenizer_config.h"
#include "trainer/tasks/tokenizer_task.h"

namespace peco::trainer {
namespace {

// Adds (field, path) to `check` unless the path is empty.
void AddInput(ConfigCheck* check, const char* field, const std::string& path) {
  if (!path.empty()) check->inputs.emplace_back(field, path);
}

// --- contrastive -------------------------------------------------------------------------------

absl::Status RunContrastive(const std::string& text, const std::string& source,
                            const JobFlags& flags, ProgressSink* progress) {
  ASSIGN_OR_RETURN(ContrastiveJobConfig config, ParseContrastiveConfig(text, source));
  if (!flags.output_dir.empty()) config.train.output_dir = flags.output_dir;
  return RunContrastiveJob(config, {flags.resume_from, progress}).status();
}

absl::StatusOr<ConfigCheck> CheckContrastive(const std::string& yaml, const std::string& source,
                                             bool check_paths, ProgressSink* progress) {
  ASSIGN_OR_RETURN(ContrastiveJobConfig config, ParseContrastiveConfig(yaml, source, check_paths));
  ConfigCheck check{"contrastive", config.train.max_steps, {}};
  check.device = config.train.device;
  if (config.data.source != "synthetic") {
    AddInput(&check, "data.path", config.data.path);
    if (config.eval.enabled) AddInput(&check, "eval.path", config.eval_data.path);
  }
  return check;
}

absl::StatusOr<ExportSummary> ExportContrastiveCheckpoint(const std::string& dir,
                                                          const std::string& out) {
  ASSIGN_OR_RETURN(LoadedContrastive loaded, LoadContrastiveCheckpoint(dir));
  RETURN_IF_ERROR(ExportMocoV3(loaded.model, loaded.step, loaded.config.model_preset, out));
  return ExportSummary{loaded.checkpoint_dir, loaded.step,
                       "MoCo v3 release key names (state_dict with module.base_encoder.*, "
                       "module.momentum_encoder.*, module.predictor.*)"};
}

// --- tokenizer ---------------------------------------------------------------------------------

absl::Status RunTokenizer(const std::string& text, const std::string& source, const JobFlags& flags,
                          ProgressSink* progress) {
  ASSIGN_OR_RETURN(TokenizerJobConfig config, ParseTokenizerConfig(text, source));
  // --output_dir overrides train.output_dir (the worker gives every job its own directory).
  if (!flags.output_dir.empty()) config.train.output_dir = flags.output_dir;
  return RunTokenizerJob(config, {flags.resume_from, progress}).status();
}

absl::StatusOr<ConfigCheck> CheckTokenizer(const std::string& yaml, const std::string& source,
                                           bool check_paths, ProgressSink* progress) {
  ASSIGN_OR_RETURN(TokenizerJobConfig config, ParseTokenizerConfig(yaml, source, check_paths));
  ConfigCheck check{"tokenizer", config.train.max_steps, {}};
  check.device = config.train.device;
  if (config.data.source != "synthetic") AddInput(&check, "data.path", config.data.path);
  if (config.eval.enabled && config.data.source == "image_folder") {
    AddInput(&check, "eval.path", config.eval.path);
  }
  AddInput(&check, "loss.perceptual.weights", config.loss.perceptual.weights_path);
  AddInput(&check, "loss.perceptual.checkpoint", config.loss.perceptual.checkpoint);
  return check;
}

absl::StatusOr<ExportSummary> ExportTokenizerCheckpoint(const std::string& dir,
                                                        const std::string& out) {
  ASSIGN_OR_RETURN(LoadedTokenizer loaded, LoadTokenizerCheckpoint(dir));
  RETURN_IF_ERROR(ExportTokenizer(loaded.model, out));
  return ExportSummary{loaded.checkpoint_dir, loaded.step,
                       loaded.config.model.gumbel_kind()
                           ? "taming GumbelVQ key names (quantize.proj, quantize.embed)"
                           : "taming VQModel key names"};
}

// --- pretrain ----------------------------------------------------------------------------------

absl::Status RunPretrain(const std::string& text, const std::string& source, const JobFlags& flags,
                         ProgressSink* progress) {
  ASSIGN_OR_RETURN(PretrainJobConfig config, ParsePretrainConfig(text, source));
  if (!flags.output_dir.empty()) config.train.output_dir = flags.output_dir;
  return RunPretrainJob(config, {flags.resume_from, progress}).status();
}

absl::StatusOr<ConfigCheck> CheckPretrain(const std::string& yaml, const std::string& source,
                                          bool check_paths, ProgressSink* progress) {
  ASSIGN_OR_RETURN(PretrainJobConfig config, ParsePretrainConfig(yaml, source, check_paths));
  ConfigCheck check{"pretrain", config.train.max_steps, {}};
  check.device = config.train.device;
  if (config.data.source != "synthetic") AddInput(&check, "data.path", config.data.path);
  AddInput(&check, "tokenizer.checkpoint", config.tokenizer.checkpoint);
  if (check_paths) {
    // The tokenizer exists now: refuse a grid or vocabulary mismatch before any training.
    absl::StatusOr<LoadedTokenizer> tokenizer =
        LoadTokenizerCheckpoint(config.tokenizer.checkpoint);
    if (!tokenizer.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.checkpoint: cannot load a peco tokenizer from '",
                       config.tokenizer.checkpoint, "': ", tokenizer.status().message()));
    }
    RETURN_IF_ERROR(ResolveTokenizerView(tokenizer->config, &config));
  }
  return check;
}

absl::StatusOr<ExportSummary> ExportPretrainCheckpoint(const std::string& dir,
                                                       const std::string& out) {
  ASSIGN_OR_RETURN(LoadedPretrain loaded, LoadPretrainCheckpoint(dir));
  RETURN_IF_ERROR(ExportBeitPretrain(loaded.model, out));
  return ExportSummary{loaded.checkpoint_dir, loaded.step,
                       "BEiT pre-training key names ({'model': state_dict})"};
}

// --- finetune and linear_probe -----------------------------------------------------------------

template <const char* kKind>
absl::Status RunEval(const std::string& text, const std::string& source, const JobFlags& flags,
                     ProgressSink* progress) {
  ASSIGN_OR_RETURN(EvalJobConfig config, ParseEvalConfig(text, source));
  if (config.kind != kKind) {
    return absl::InvalidArgumentError(
        absl::StrCat("kind: the config is a ", config.kind, " job, the command is ", kKind));
  }
  if (!flags.output_dir.empty()) config.train.output_dir = flags.output_dir;
  return RunEvalJob(config, {flags.resume_from, progress}).status();
}

absl::StatusOr<ConfigCheck> CheckEval(const std::string& yaml, const std::string& source,
                                      bool check_paths, ProgressSink* progress) {
  ASSIGN_OR_RETURN(EvalJobConfig config, ParseEvalConfig(yaml, source, check_paths));
  ConfigCheck check{config.kind, config.train.max_steps, {}};
  check.device = config.train.device;
  if (config.data.source != "synthetic") {
    AddInput(&check, "data.path", config.data.path);
    AddInput(&check, "eval.path", config.eval_data.path);
  }
  AddInput(&check, "backbone.checkpoint", config.backbone.checkpoint);
  AddInput(&check, "backbone.weights", config.backbone.weights);
  if (check_paths) {
    // The backbone exists now: refuse another kind or a conflicting architecture.
    RETURN_IF_ERROR(ResolveEvalBackbone(&config, progress).status());
  }
  return check;
}

absl::StatusOr<ExportSummary> ExportFinetuneCheckpoint(const std::string& dir,
                                                       const std::string& out) {
  ASSIGN_OR_RETURN(LoadedEval loaded, LoadEvalCheckpoint(dir));
  RETURN_IF_ERROR(ExportBeitFinetune(loaded.model, out));
  return ExportSummary{loaded.checkpoint_dir, loaded.step,
                       "BEiT fine-tuning key names ({'model': state_dict})"};
}

absl::StatusOr<ExportSummary> RefuseLinearProbeExport(const std::string& dir,
                                                      const std::string& out) {
  return absl::InvalidArgumentError(absl::StrCat(
      "--checkpoint: ", dir,
      " is a linear_probe checkpoint; export does not support it (its readout reads an "
      "intermediate block's pooled tokens, which no official BEiT layout holds). Export the "
      "backbone's pretrain checkpoint, or load readout.pt (mean, std, weight, bias) from the "
      "checkpoint directory"));
}

constexpr char kFinetune[] = "finetune";
constexpr char kLinearProbe[] = "linear_probe";

}  // namespace

const std::vector<JobKind>& JobKinds() {
  static const std::vector<JobKind>* kinds = new std::vector<JobKind>{
      {"contrastive", RunContrastive, CheckContrastive, ExportContrastiveCheckpoint},
      {"tokenizer", RunTokenizer, CheckTokenizer, ExportTokenizerCheckpoint},
      {"pretrain", RunPretrain, CheckPretrain, ExportPretrainCheckpoint},
      {kFinetune, RunEval<kFinetune>, CheckEval, ExportFinetuneCheckpoint},
      {kLinearProbe, RunEval<kLinearProbe>, CheckEval, RefuseLinearProbeExport},
  };
  return *kinds;
}

const JobKind* FindJobKind(absl::string_view name) {
  for (const JobKind& kind : JobKinds()) {
    if (name == kind.name) return &kind;
  }
  return nullptr;
}

absl::StatusOr<const JobKind*> ConfigJobKind(const std::string& yaml, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader root, ConfigReader::FromString(yaml, source));
  std::vector<std::string> names;
  for (const JobKind& kind : JobKinds()) names.push_back(kind.name);
  std::string name = "tokenizer";
  RETURN_IF_ERROR(root.ReadEnum("kind", names, &name));
  return FindJobKind(name);
}

absl::StatusOr<std::string> ConfigKind(const std::string& yaml, const std::string& source) {
  ASSIGN_OR_RETURN(const JobKind* kind, ConfigJobKind(yaml, source));
  return std::string(kind->name);
}

}  // namespace peco::trainer
