#include "trainer/tasks/pretrain_task.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config_reader.h"
#include "common/file_util.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/data/random.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/distributed_module.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/module_state.h"
#include "trainer/engine/run_state.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/training_loop.h"
#include "trainer/models/beit_optim.h"
#include "trainer/tasks/preview.h"
#include "trainer/tasks/run_setup.h"
#include "trainer/tasks/tokenizer_task.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace fs = std::filesystem;
namespace {

// Salts that separate the mask and drop-path streams from the augmentation stream.
constexpr uint64_t kMaskStream = 0x4D41534B;      // "MASK"
constexpr uint64_t kDropPathStream = 0x44525054;  // "DRPT"

// trainer_state.json of a pretrain checkpoint.
struct PretrainState : RunState {
  PretrainState() { kind = "pretrain"; }
  std::string tokenizer_sha256;
  std::string tokenizer_checkpoint;
};

std::string StateToJson(const PretrainState& state) {
  JsonWriter w;
  AddRunState(state, &w);
  w.Add("tokenizer_sha256", state.tokenizer_sha256)
      .Add("tokenizer_checkpoint", state.tokenizer_checkpoint);
  return w.str() + "\n";
}

absl::StatusOr<PretrainState> StateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  PretrainState state;
  RETURN_IF_ERROR(ReadRunState(r, {"pretrain"}, source, &state));
  RETURN_IF_ERROR(r.Read("tokenizer_sha256", &state.tokenizer_sha256));
  RETURN_IF_ERROR(r.Read("tokenizer_checkpoint", &state.tokenizer_checkpoint));
  RETURN_IF_ERROR(r.Finish());
  return state;
}

bool SameArchitecture(const BeitVitConfig& a, const BeitVitConfig& b) {
  return a.img_size == b.img_size && a.patch_size == b.patch_size && a.embed_dim == b.embed_dim &&
         a.depth == b.depth && a.num_heads == b.num_heads && a.mlp_ratio == b.mlp_ratio &&
         a.qkv_bias == b.qkv_bias &&
         (a.layer_scale_init_value > 0) == (b.layer_scale_init_value > 0) &&
         a.use_abs_pos_emb == b.use_abs_pos_emb &&
         a.use_shared_rel_pos_bias == b.use_shared_rel_pos_bias && a.vocab_size == b.vocab_size;
}

// Sums of the step metrics between two log events.
struct PretrainWindow {
  double loss = 0, accuracy = 0, grad_norm = 0;
  int64_t masked = 0;
};

class PretrainTask : public TrainingTask {
 public:
  PretrainTask(const PretrainJobConfig& config, ProgressSink* progress)
      : config_(config), progress_(*progress) {}

  absl::Status Build(const RunContext& run) override;
  absl::Status Restore(const RestoredCheckpoint& checkpoint) override;
  absl::Status Connect(DistributedContext* group) override;
  DataLoader* loader() override { return loader_.get(); }
  int64_t step() const override { return state_.step; }
  std::string DescribeStart(JsonWriter* start) override;
  absl::StatusOr<double> ForwardLoss(const Batch& batch) override;
  absl::Status Update() override;
  absl::StatusOr<std::string> Metrics(const MetricWindow& window, JsonWriter* event) override;
  absl::StatusOr<CheckpointFiles> CheckpointContents(bool final) override;

 private:
  absl::Status LoadTokenizer();
  torch::Tensor Masks(const Batch& batch) const;
  // The preview grid: the masked ViT input, the tokenizer's decoding of its own tokens (the
  // target), and its decoding of the tokens with the model's predictions at masked positions.
  absl::StatusOr<std::string> RenderPreview();

  PretrainJobConfig config_;  // a copy: the tokenizer view is resolved into it
  ProgressSink& progress_;

  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  DistributedContext* group_ = nullptr;
  LoadedTokenizer tokenizer_;
  BeitMim model_{nullptr};
  std::vector<BeitParamGroup> groups_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<GradientAllReducer> reducer_;
  std::unique_ptr<BlockMaskingGenerator> masking_;
  std::shared_ptr<const Dataset> dataset_;
  std::unique_ptr<DataLoader> loader_;
  torch::Tensor vit_mean_, vit_std_;  // [1, 3, 1, 1]
  // Main rank only, empty when previews are off: the ViT and tokenizer views of the preview
  // images, and their fixed masks [N, num_patches].
  std::vector<torch::Tensor> preview_views_;
  torch::Tensor preview_masks_;
  PretrainState state_;
  PretrainWindow window_;
  double flops_per_image_ = 0;  // forward + backward of BeitMim
  // Between ForwardLoss and Update: the step's scaled loss, logits and labels.
  torch::Tensor loss_, logits_, labels_;
  double loss_value_ = 0;
};

absl::Status PretrainTask::LoadTokenizer() {
  absl::StatusOr<LoadedTokenizer> loaded = LoadTokenizerCheckpoint(config_.tokenizer.checkpoint);
  if (!loaded.ok()) {
    // A missing or damaged tokenizer does not heal on retry: a configuration error.
    const absl::StatusCode code = loaded.status().code() == absl::StatusCode::kInternal
                                      ? absl::StatusCode::kInternal
                                      : absl::StatusCode::kInvalidArgument;
    return absl::Status(
        code, absl::StrCat("tokenizer.checkpoint: cannot load a peco tokenizer from '",
                           config_.tokenizer.checkpoint, "': ", loaded.status().message()));
  }
  tokenizer_ = *std::move(loaded);
  RETURN_IF_ERROR(ResolveTokenizerView(tokenizer_.config, &config_));
  ASSIGN_OR_RETURN(state_.tokenizer_sha256, TokenizerDigest(tokenizer_.checkpoint_dir));
  state_.tokenizer_checkpoint = tokenizer_.checkpoint_dir;
  tokenizer_.model->to(device_);
  tokenizer_.model->eval();
  for (torch::Tensor& p : tokenizer_.model->parameters()) p.set_requires_grad(false);
  return absl::OkStatus();
}

absl::Status PretrainTask::Build(const RunContext& run) {
  device_ = run.device;
  bf16_ = run.bf16;
  state_.world_size = run.distributed.world_size;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  RETURN_IF_ERROR(LoadTokenizer());
  // Seeded construction: the same config gives the same initial weights on every rank.
  torch::manual_seed(config_.seed);
  model_ = BeitMim(config_.model);
  model_->to(device_);
  groups_ = BeitParamGroups(*model_, config_.model.depth, config_.optim.weight_decay, std::nullopt);
  const auto options = torch::optim::AdamWOptions(config_.optim.schedule.base_lr)
                           .betas(std::make_tuple(config_.optim.betas[0], config_.optim.betas[1]))
                           .eps(config_.optim.eps);
  optimizer_ = std::make_unique<ForeachAdamW>(ToAdamWParamGroups(groups_, options), options);
  auto channels = [&](const std::vector<double>& v) {
    std::vector<float> f(3);
    for (int c = 0; c < 3; ++c) f[c] = static_cast<float>(v.size() == 1 ? v[0] : v[c]);
    return torch::tensor(f).view({1, 3, 1, 1}).to(device_);
  };
  vit_mean_ = channels(config_.vit_mean);
  vit_std_ = channels(config_.vit_std);
  ASSIGN_OR_RETURN(BlockMaskingGenerator masking, BlockMaskingGenerator::Create([&] {
                     BlockMaskingOptions m = config_.masking;
                     m.height = m.width = static_cast<int>(config_.model.grid());
                     return m;
                   }()));
  masking_ = std::make_unique<BlockMaskingGenerator>(std::move(masking));
  flops_per_image_ = 3 * BeitMimForwardFlops(config_.model, masking_->num_masking_patches());
  model_->train();
  return absl::OkStatus();
}

absl::Status PretrainTask::Connect(DistributedContext* group) {
  group_ = group;
  RETURN_IF_ERROR(BroadcastModuleState(*group_, *model_));
  ASSIGN_OR_RETURN(GradientAllReducer reducer,
                   GradientAllReducer::Create(group_, model_->parameters()));
  reducer_ = std::make_unique<GradientAllReducer>(std::move(reducer));

  config_.data.loader.rank = group_->rank();
  config_.data.loader.world_size = group_->world_size();
  ASSIGN_OR_RETURN(dataset_, OpenDataset(config_.data, config_.seed));
  ASSIGN_OR_RETURN(loader_, DataLoader::Create(dataset_, config_.data.loader, state_.loader));
  if (group_->is_main()) {
    preview_views_ = PreviewViewsOrNone(config_.train.preview_images, *dataset_,
                                        config_.data.loader.transform, progress_);
    if (!preview_views_.empty()) {
      const int64_t n = preview_views_[0].size(0);
      preview_masks_ = torch::empty({n, config_.model.num_patches()}, torch::kBool);
      for (int64_t i = 0; i < n; ++i) {
        std::mt19937_64 rng(MixSeed(SampleSeed(config_.seed, /*epoch=*/0, i), kMaskStream));
        preview_masks_[i].copy_(masking_->GenerateTensor(rng));
      }
    }
  }
  return absl::OkStatus();
}

std::string PretrainTask::DescribeStart(JsonWriter* start) {
  int64_t parameters = 0;
  for (const auto& p : model_->parameters()) parameters += p.numel();
  const int64_t grid = config_.model.grid();
  start->Add("parameters", parameters)
      .Add("dataset", dataset_->name())
      .Add("dataset_size", dataset_->size())
      .Add("grid", grid)
      .Add("vocab_size", config_.model.vocab_size)
      .Add("tokenizer", state_.tokenizer_checkpoint)
      .Add("tokenizer_sha256", state_.tokenizer_sha256);
  return absl::StrFormat("%d parameters, %s (%d images), %dx%d grid, %d codes from %s", parameters,
                         dataset_->name(), dataset_->size(), grid, grid, config_.model.vocab_size,
                         state_.tokenizer_checkpoint);
}

absl::Status PretrainTask::Restore(const RestoredCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(PretrainState stored,
                   StateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  if (stored.tokenizer_sha256 != state_.tokenizer_sha256) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer.checkpoint: ", state_.tokenizer_checkpoint, " (MANIFEST sha256 ",
                     state_.tokenizer_sha256, ") is not the tokenizer checkpoint ", dir,
                     " was trained with (", stored.tokenizer_checkpoint, ", sha256 ",
                     stored.tokenizer_sha256, "); resume with that tokenizer or start a new run"));
  }
  RETURN_IF_ERROR(CheckResumeWorldSize(stored, state_.world_size, dir));
  ASSIGN_OR_RETURN(const std::string* stored_config,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  ASSIGN_OR_RETURN(PretrainJobConfig previous,
                   ParsePretrainConfig(*stored_config, dir + "/config.yaml",
                                       /*check_paths=*/false));
  if (!SameArchitecture(previous.model, config_.model)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--resume: checkpoint ", dir,
                     " holds a different model than this config's `model:`; resume with the "
                     "checkpoint's config.yaml"));
  }
  const std::string tokenizer_sha256 = state_.tokenizer_sha256;
  const std::string tokenizer_checkpoint = state_.tokenizer_checkpoint;
  state_ = stored;
  state_.tokenizer_checkpoint = tokenizer_checkpoint;
  state_.tokenizer_sha256 = tokenizer_sha256;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  RETURN_IF_ERROR(RestoreModelAndOptimizer(checkpoint.files, dir, *model_, *optimizer_));
  return absl::OkStatus();
}

absl::StatusOr<CheckpointFiles> PretrainTask::CheckpointContents(bool final) {
  state_.loader = loader_->position();
  CheckpointFiles files;
  if (!group_->is_main()) return files;
  RETURN_IF_ERROR(AddModelAndOptimizer(*model_, *optimizer_, &files));
  if (!preview_views_.empty()) {
    AddPreviewFile(RenderPreview(), state_.step, progress_, &files);
  }
  files[kConfigFile] = config_.source_text;
  state_.seed = config_.seed;
  state_.final = final;
  files[kTrainerStateFile] = StateToJson(state_);
  return files;
}

torch::Tensor PretrainTask::Masks(const Batch& batch) const {
  const int64_t n = batch.indices.size(0);
  torch::Tensor masks = torch::empty({n, config_.model.num_patches()}, torch::kBool);
  const int64_t* indices = batch.indices.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::mt19937_64 rng(
        MixSeed(SampleSeed(config_.seed, batch.position.epoch, indices[i]), kMaskStream));
    masks[i].copy_(masking_->GenerateTensor(rng));
  }
  return masks;
}

absl::StatusOr<std::string> PretrainTask::RenderPreview() {
  torch::Tensor target, predicted;
  RETURN_IF_ERROR(TorchCall("rendering the preview", [&] {
    torch::NoGradGuard no_grad;
    const bool training = model_->is_training();
    model_->eval();  // no dropout or drop path, and no random numbers drawn
    torch::Tensor masks = preview_masks_.to(device_);
    torch::Tensor images = ((preview_views_[0].to(device_) * 0.5 + 0.5) - vit_mean_) / vit_std_;
    torch::Tensor ids = tokenizer_.model->Tokenize(preview_views_[1].to(device_));
    torch::Tensor logits = model_->forward(images, masks);  // [masked positions, vocab]
    model_->train(training);
    torch::Tensor mixed = ids.reshape({ids.size(0), -1}).clone();
    mixed.index_put_({masks}, logits.argmax(-1));
    target = tokenizer_.model->DecodeIndices(ids);
    predicted = tokenizer_.model->DecodeIndices(mixed.view_as(ids));
  }));
  return EncodePreviewGrid({ShadeMaskedPatches(SignedUnitToPixels(preview_views_[0]),
                                               preview_masks_, config_.model.grid()),
                            SignedUnitToPixels(target), SignedUnitToPixels(predicted)});
}

absl::StatusOr<double> PretrainTask::ForwardLoss(const Batch& batch) {
  const double lr = config_.optim.schedule.At(state_.step);
  for (size_t g = 0; g < optimizer_->param_groups().size(); ++g) {
    optimizer_->param_groups()[g].options().set_lr(lr * groups_[g].lr_scale);
  }
  torch::manual_seed(MixSeed(config_.seed ^ kDropPathStream, static_cast<uint64_t>(state_.step),
                             static_cast<uint64_t>(group_->rank())));
  torch::Tensor masks = Masks(batch).to(device_);
  // The ViT view, renormalised from [-1, 1] to vit_mean / vit_std.
  torch::Tensor images = ((batch.views[0].to(device_) * 0.5 + 0.5) - vit_mean_) / vit_std_;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor ids = tokenizer_.model->Tokenize(batch.views[1].to(device_));
    labels_ = ids.reshape({ids.size(0), -1}).index({masks});
  }
  {
    AutocastGuard autocast(bf16_, device_);
    logits_ = model_->forward(images, masks);
  }
  logits_ = logits_.to(torch::kFloat32);
  // The mean over every masked token of the global batch (not a mean of per-rank means, which
  // would weight ranks whose masks are smaller more): each rank scales its sum by world_size /
  // the global count, and the all-reduce averages the gradients.
  const double local_masked = static_cast<double>(labels_.size(0));
  double global_masked = local_masked;
  if (group_->is_distributed()) {
    ASSIGN_OR_RETURN(std::vector<double> mean, group_->AllReduceMean({local_masked}));
    global_masked = mean[0] * group_->world_size();
  }
  torch::Tensor loss_sum = torch::nn::functional::cross_entropy(
      logits_, labels_, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  loss_ = loss_sum * (group_->world_size() / global_masked);
  loss_value_ = loss_sum.item<double>() / local_masked;
  return loss_value_;
}

absl::Status PretrainTask::Update() {
  optimizer_->zero_grad();
  loss_.backward();
  RETURN_IF_ERROR(reducer_->AllReduce());
  double grad_norm = 0;
  if (config_.optim.grad_clip > 0) {
    grad_norm = ClipGradNorm(model_->parameters(), config_.optim.grad_clip);
  }
  optimizer_->step();

  window_.loss += loss_value_;
  window_.accuracy += (logits_.argmax(-1) == labels_).to(torch::kFloat64).mean().item<double>();
  window_.grad_norm += grad_norm;
  window_.masked += labels_.size(0);
  loss_ = logits_ = labels_ = torch::Tensor();
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<std::string> PretrainTask::Metrics(const MetricWindow& window, JsonWriter* event) {
  const double n = static_cast<double>(window.steps);
  ASSIGN_OR_RETURN(std::vector<double> means,
                   group_->AllReduceMean({window_.loss / n, window_.accuracy / n}));
  const double images_per_second = window.images / window.seconds;
  const double tflops = images_per_second / group_->world_size() * flops_per_image_ / 1e12;
  const double lr = config_.optim.schedule.At(state_.step - 1);
  const double local_images = static_cast<double>(window.images) / group_->world_size();
  event->Add("loss", means[0])
      .Add("mlm_acc", means[1])
      .Add("lr", lr)
      .Add("grad_norm", window_.grad_norm / n)
      .Add("masked_per_image", static_cast<double>(window_.masked) / local_images)
      .Add("tflops_per_device", tflops);
  if (config_.train.peak_tflops > 0) event->Add("mfu", tflops / config_.train.peak_tflops);
  const std::string summary =
      absl::StrFormat("loss %.4f  mlm_acc %.4f  lr %.2e  grad_norm %.3f  %.3f TFLOP/s", means[0],
                      means[1], lr, window_.grad_norm / n, tflops);
  window_ = PretrainWindow();
  return summary;
}

}  // namespace

absl::Status ResolveTokenizerView(const TokenizerJobConfig& tokenizer, PretrainJobConfig* config) {
  const VqganConfig& vqgan = tokenizer.model.vqgan;
  const int64_t factor = vqgan.downsample_factor();
  const int64_t size =
      config->tokenizer.image_size > 0 ? config->tokenizer.image_size : vqgan.resolution;
  const int64_t grid = config->model.grid();
  if (size % factor != 0 || size / factor != grid) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "tokenizer.checkpoint: its token grid %dx%d (tokenizer view %d px / downsampling factor "
        "%d%s) differs from the ViT patch grid %dx%d (model.img_size %d / model.patch_size %d)",
        size / factor, size / factor, size, factor,
        config->tokenizer.image_size > 0 ? ", tokenizer.image_size" : ", its training size", grid,
        grid, config->model.img_size, config->model.patch_size));
  }
  const int64_t codes = tokenizer.model.quantizer.num_codes;
  if (codes != config->model.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("model.vocab_size: ", config->model.vocab_size,
                                                   " differs from the tokenizer's codebook size ",
                                                   codes, " (tokenizer.checkpoint n_embed)"));
  }
  config->data.loader.transform.output_sizes = {static_cast<int>(config->model.img_size),
                                                static_cast<int>(size)};
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenizerDigest(const std::string& checkpoint_dir) {
  return Sha256FileHex((fs::path(checkpoint_dir) / kManifestFileName).string());
}

double BeitMimForwardFlops(const BeitVitConfig& c, int64_t masked) {
  const double n = static_cast<double>(c.num_patches()), t = n + 1, d = c.embed_dim;
  const double hidden = static_cast<double>(static_cast<int64_t>(d * c.mlp_ratio));
  const double patch = 2 * n * c.in_chans * c.patch_size * c.patch_size * d;
  const double block = 2 * t * d * 3 * d          // qkv
                       + 2 * 2 * t * t * d        // q k^T and attention x v
                       + 2 * t * d * d            // proj
                       + 2 * 2 * t * d * hidden;  // fc1 and fc2
  const double head = 2.0 * static_cast<double>(masked) * d * c.vocab_size;
  return patch + c.depth * block + head;
}

absl::StatusOr<PretrainRunResult> RunPretrainJob(const PretrainJobConfig& config,
                                                 const PretrainRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  PretrainTask task(config, options.progress);
  return RunTrainingLoop(task,
                         LoopOptionsFor("pretrain", config.threads, config.train, config.faults,
                                        options.resume_from, options.progress, config.source_text));
}

absl::StatusOr<LoadedPretrain> LoadPretrainCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolveCheckpoint(path, nullptr));
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* config_text,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(PretrainState state,
                   StateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  ASSIGN_OR_RETURN(const std::string* model_bytes,
                   CheckpointFile(checkpoint.files, kModelFile, dir));
  LoadedPretrain loaded;
  ASSIGN_OR_RETURN(loaded.config,
                   ParsePretrainConfig(*config_text, dir + "/config.yaml", /*check_paths=*/false));
  loaded.step = state.step;
  loaded.checkpoint_dir = dir;
  loaded.tokenizer_sha256 = state.tokenizer_sha256;
  RETURN_IF_ERROR(TorchCall(absl::StrCat("loading ", dir), [&]() -> absl::Status {
    loaded.model = BeitMim(loaded.config.model);
    RETURN_IF_ERROR(
        DeserializeModule(*model_bytes, *loaded.model, absl::StrCat(dir, "/", kModelFile)));
    loaded.model->eval();
    return absl::OkStatus();
  }));
  return loaded;
}

}  // namespace peco::trainer
