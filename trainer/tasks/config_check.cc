#include "trainer/tasks/config_check.h"

#include "absl/strings/str_cat.h"
#include "common/config_reader.h"
#include "trainer/tasks/eval_backbone.h"
#include "trainer/tasks/eval_config.h"
#include "trainer/tasks/pretrain_config.h"
#include "trainer/tasks/pretrain_task.h"
#include "trainer/tasks/tokenizer_config.h"
#include "trainer/tasks/tokenizer_task.h"

namespace peco::trainer {

absl::StatusOr<ConfigCheck> CheckJobConfig(const std::string& yaml, const std::string& source,
                                           bool check_paths, ProgressSink* progress) {
  absl::StatusOr<std::string> kind = ConfigKind(yaml, source);
  if (!kind.ok()) return kind.status();
  ConfigCheck check;
  check.kind = *kind;
  auto input = [&](const char* field, const std::string& path) {
    if (!path.empty()) check.inputs.emplace_back(field, path);
  };
  if (*kind == "tokenizer") {
    absl::StatusOr<TokenizerJobConfig> config = ParseTokenizerConfig(yaml, source, check_paths);
    if (!config.ok()) return config.status();
    if (config->data.source != "synthetic") input("data.path", config->data.path);
    input("loss.perceptual.weights", config->loss.perceptual.weights_path);
    input("loss.perceptual.checkpoint", config->loss.perceptual.checkpoint);
    check.max_steps = config->train.max_steps;
  } else if (*kind == "finetune" || *kind == "linear_probe") {
    absl::StatusOr<EvalJobConfig> config = ParseEvalConfig(yaml, source, check_paths);
    if (!config.ok()) return config.status();
    if (config->data.source != "synthetic") {
      input("data.path", config->data.path);
      input("eval.path", config->eval_data.path);
    }
    input("backbone.checkpoint", config->backbone.checkpoint);
    input("backbone.weights", config->backbone.weights);
    if (check_paths) {
      // The backbone exists now: refuse another kind or a conflicting architecture.
      absl::Status status = ResolveEvalBackbone(&*config, progress).status();
      if (!status.ok()) return status;
    }
    check.max_steps = config->train.max_steps;
  } else {
    absl::StatusOr<PretrainJobConfig> config = ParsePretrainConfig(yaml, source, check_paths);
    if (!config.ok()) return config.status();
    if (config->data.source != "synthetic") input("data.path", config->data.path);
    input("tokenizer.checkpoint", config->tokenizer.checkpoint);
    if (check_paths) {
      // The tokenizer exists now: refuse a grid or vocabulary mismatch before any training.
      absl::StatusOr<LoadedTokenizer> tokenizer =
          LoadTokenizerCheckpoint(config->tokenizer.checkpoint);
      if (!tokenizer.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.checkpoint: cannot load a peco tokenizer from '",
                         config->tokenizer.checkpoint, "': ", tokenizer.status().message()));
      }
      absl::Status status = ResolveTokenizerView(tokenizer->config, &*config);
      if (!status.ok()) return status;
    }
    check.max_steps = config->train.max_steps;
  }
  return check;
}

ValidationResponse AnswerValidationRequest(const ValidationRequest& request,
                                           ProgressSink* progress) {
  ValidationResponse response;
  response.id = request.id;
  absl::StatusOr<std::string> text = ApplyConfigOverrides(request.config, request.sets);
  if (!text.ok()) {
    response.status = text.status();
    return response;
  }
  absl::StatusOr<ConfigCheck> check =
      CheckJobConfig(*text, "config", request.check_paths, progress);
  if (!check.ok()) {
    response.status = check.status();
    return response;
  }
  response.kind = check->kind;
  response.max_steps = check->max_steps;
  response.inputs = std::move(check->inputs);
  return response;
}

}  // namespace peco::trainer
