#include "trainer/tasks/tokenizer_task.h"

#include <chrono>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config_reader.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "trainer/data/random.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/distributed_autograd.h"
#include "trainer/engine/distributed_module.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/module_state.h"
#include "trainer/engine/run_state.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/training_loop.h"
#include "trainer/losses/gan_loss.h"
#include "trainer/losses/perceptual_loss.h"
#include "trainer/models/patch_discriminator.h"
#include "trainer/tasks/perceptual_network.h"
#include "trainer/tasks/preview.h"
#include "trainer/tasks/run_setup.h"
#include "trainer/tasks/tokenizer_eval.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr char kDiscriminatorFile[] = "discriminator.pt";
constexpr char kDiscOptimizerFile[] = "disc_optimizer.pt";
constexpr char kRngFile[] = "rng.pt";
constexpr const char* kStateFile = kTrainerStateFile;

// trainer_state.json of a tokenizer checkpoint.
struct TrainerState : RunState {
  TrainerState() { kind = "tokenizer"; }
  // Provenance of the perceptual network: description ("off", "random (seed N)", "file P",
  // "pretrain checkpoint D ..."), its file or checkpoint directory, and that checkpoint's
  // MANIFEST SHA-256 (empty for files and random networks).
  std::string perceptual = "off";
  std::string perceptual_path;
  std::string perceptual_sha256;
  // loss.perceptual_balance initial: the factor (pixel / perceptual term on the first batch)
  // the perceptual weight is multiplied by; 0 until measured (and with balance none).
  double perceptual_balance = 0;
  int64_t codes_restarted = 0;  // dead codes restarted so far (vq with dead_code_steps)
};

std::string StateToJson(const TrainerState& state) {
  JsonWriter w;
  AddRunState(state, &w);
  w.Add("perceptual", state.perceptual)
      .Add("perceptual_path", state.perceptual_path)
      .Add("perceptual_sha256", state.perceptual_sha256)
      .Add("perceptual_balance", state.perceptual_balance)
      .Add("codes_restarted", state.codes_restarted);
  return w.str() + "\n";
}

absl::StatusOr<TrainerState> StateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  TrainerState state;
  // world_size is absent from checkpoints written before tokenizers trained data-parallel (one
  // rank), the perceptual provenance from those written before it was recorded.
  RETURN_IF_ERROR(ReadRunState(r, {"tokenizer"}, source, &state));
  RETURN_IF_ERROR(r.Read("perceptual", &state.perceptual));
  RETURN_IF_ERROR(r.Read("perceptual_path", &state.perceptual_path));
  RETURN_IF_ERROR(r.Read("perceptual_sha256", &state.perceptual_sha256));
  RETURN_IF_ERROR(r.Read("perceptual_balance", &state.perceptual_balance));
  RETURN_IF_ERROR(r.Read("codes_restarted", &state.codes_restarted));
  RETURN_IF_ERROR(r.Finish());
  return state;
}

// Salt that separates the Gumbel-noise stream from the others.
constexpr uint64_t kGumbelStream = 0x47554D42;  // "GUMB"

enum MetricPart { kPixel, kPerceptual, kCodebook, kGenerator, kDiscriminator, kGanWeight, kParts };

// Running sums of the step metrics between two log events. The loss parts stay on the device
// and are read once per log event, so a step costs one host sync (the non-finite check).
struct TokenizerWindow {
  double loss = 0;
  torch::Tensor parts;  // [kParts] sums, on the training device
};

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimConfig& optim,
                                                       std::vector<torch::Tensor> params) {
  const auto betas = std::make_tuple(optim.betas[0], optim.betas[1]);
  if (optim.optimizer == "adamw") {
    return std::make_unique<ForeachAdamW>(params, torch::optim::AdamWOptions(optim.schedule.base_lr)
                                                      .betas(betas)
                                                      .eps(optim.eps)
                                                      .weight_decay(optim.weight_decay));
  }
  return std::make_unique<ForeachAdam>(params, torch::optim::AdamOptions(optim.schedule.base_lr)
                                                   .betas(betas)
                                                   .eps(optim.eps)
                                                   .weight_decay(optim.weight_decay));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// The tokenizer job's part of the training loop (engine/training_loop.h). Data parallel: the
// autoencoder's and the discriminator's gradients are averaged over the ranks after their own
// backward passes, the adaptive GAN weight comes from rank-averaged gradients, the
// discriminator's BatchNorm uses the global batch's statistics, code counts (usage, dead codes)
// are summed over the ranks, dead codes restart from the global batch's encoder outputs, and
// Gumbel noise is drawn for the global batch: N ranks x batch b train as 1 rank x batch N b.
class TokenizerTask : public TrainingTask {
 public:
  TokenizerTask(const TokenizerJobConfig& config, ProgressSink* progress)
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
  EvaluationPolicy evaluation() const override {
    if (!config_.eval.enabled) return {};
    return {EvalOrder::kAfterCheckpoint, config_.eval.every};
  }
  absl::Status Evaluate() override;
  int64_t evaluated_step() const override { return evaluated_step_; }

 private:
  absl::Status SetupPerceptualLoss();
  // The preview grid: the preview images above their reconstructions.
  absl::StatusOr<std::string> RenderPreview();
  // Averages `tensor` over the ranks, in place (identity for one rank).
  absl::Status AverageOverRanks(torch::Tensor& tensor);
  // The global batch of a per-sample tensor [b, ...] -> [world_size b, ...], in the order of the
  // samples of 1 rank with the global batch (the data loader's shard order).
  absl::StatusOr<torch::Tensor> GatherGlobalBatch(const torch::Tensor& local);
  // Restarts dead codes of the vq quantizer from the global batch's encoder outputs.
  absl::Status RestartDeadCodes();
  // loss.perceptual_balance initial: sets state_.perceptual_balance to the ratio of the global
  // batch's weighted pixel term to its unweighted perceptual term.
  absl::Status BalancePerceptualTerm(const torch::Tensor& pixel, const torch::Tensor& perceptual);

  const TokenizerJobConfig& config_;
  ProgressSink& progress_;

  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  DistributedContext* group_ = nullptr;
  VqTokenizer model_{nullptr};
  PatchDiscriminator discriminator_{nullptr};
  std::unique_ptr<PerceptualLoss> perceptual_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<torch::optim::Optimizer> disc_optimizer_;
  std::unique_ptr<GradientAllReducer> reducer_;
  std::unique_ptr<GradientAllReducer> disc_reducer_;
  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const Dataset> eval_dataset_;  // null when eval.enabled is false
  int64_t evaluated_step_ = -1;
  std::unique_ptr<DataLoader> loader_;
  torch::Tensor preview_images_;  // [N, 3, S, S] in [-1, 1]; undefined when previews are off
  TrainerState state_;
  TokenizerWindow window_;

  // Between ForwardLoss and Update: this rank's images, the model's output and the step's loss.
  torch::Tensor images_, total_;
  TokenizerOutput out_;
  bool gan_active_ = false;
  double lr_ = 0;
  double loss_value_ = 0;  // total_ on the host
  torch::Tensor parts_;    // [kParts] of the step, disc_loss filled in by Update
};

absl::Status TokenizerTask::SetupPerceptualLoss() {
  const PerceptualLossConfig& perceptual = config_.loss.perceptual;
  ASSIGN_OR_RETURN(perceptual_, CreatePerceptualLoss(perceptual));
  perceptual_->extractor().module().to(device_);
  const ExtractorSource& source = perceptual_->extractor().source();
  state_.perceptual = source.description;
  state_.perceptual_path = source.path;
  state_.perceptual_sha256 = source.sha256;
  if (!perceptual.checkpoint.empty()) {
    progress_.Log(absl::StrCat("perceptual network: ", source.description,
                               "; loss.perceptual.extractor and seed are ignored"));
  } else if (perceptual.weights_path.empty()) {
    progress_.Log(absl::StrCat(
        "warning: the perceptual network is a randomly initialised ViT (", source.description,
        "): set loss.perceptual.weights to a MoCo v3 checkpoint, or loss.perceptual.checkpoint "
        "to a peco pretrain run, for PeCo's perceptual codebook"));
  }
  return absl::OkStatus();
}

absl::Status TokenizerTask::Build(const RunContext& run) {
  device_ = run.device;
  bf16_ = run.bf16;
  state_.world_size = run.distributed.world_size;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  // Seeded construction: the same config gives the same initial weights on every rank.
  torch::manual_seed(config_.seed);
  model_ = VqTokenizer(config_.model);
  model_->to(device_);
  optimizer_ = MakeOptimizer(config_.optim, model_->parameters());
  if (config_.loss.gan.enabled) {
    discriminator_ = PatchDiscriminator(config_.loss.gan.discriminator, config_.seed + 1);
    discriminator_->to(device_);
    disc_optimizer_ = MakeOptimizer(config_.optim, discriminator_->parameters());
  }
  if (config_.loss.perceptual_weight > 0) RETURN_IF_ERROR(SetupPerceptualLoss());
  if (config_.eval.enabled) {
    absl::StatusOr<std::shared_ptr<const Dataset>> heldout =
        OpenDataset(config_.EvalData(), MixSeed(config_.eval.seed, kEvalDataStream));
    if (!heldout.ok()) {
      return absl::Status(heldout.status().code(),
                          absl::StrCat("eval: the held-out data: ", heldout.status().message()));
    }
    eval_dataset_ = *std::move(heldout);
  }
  model_->train();
  return absl::OkStatus();
}

absl::Status TokenizerTask::Restore(const RestoredCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kStateFile, dir));
  ASSIGN_OR_RETURN(TrainerState stored,
                   StateFromJson(*state_json, absl::StrCat(dir, "/", kStateFile)));
  // A run trained against one pretrain checkpoint's features must not switch networks midway.
  if (!stored.perceptual_sha256.empty() && stored.perceptual_sha256 != state_.perceptual_sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss.perceptual.checkpoint: checkpoint ", dir, " was trained with the perceptual network ",
        stored.perceptual_path, " (MANIFEST sha256 ", stored.perceptual_sha256, "), this run has ",
        state_.perceptual, "; resume with that network or start a new run"));
  }
  RETURN_IF_ERROR(CheckResumeWorldSize(stored, state_.world_size, dir));
  stored.perceptual = state_.perceptual;
  stored.perceptual_path = state_.perceptual_path;
  stored.perceptual_sha256 = state_.perceptual_sha256;
  state_ = std::move(stored);
  ASSIGN_OR_RETURN(const std::string* stored_config,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  // The model must be the same shape; other changes (more steps, new output dir) are allowed.
  ASSIGN_OR_RETURN(
      TokenizerJobConfig previous,
      ParseTokenizerConfig(*stored_config, dir + "/config.yaml", /*check_paths=*/false));
  if (previous.model.vqgan.ch != config_.model.vqgan.ch ||
      previous.model.vqgan.ch_mult != config_.model.vqgan.ch_mult ||
      previous.model.quantizer.num_codes != config_.model.quantizer.num_codes ||
      previous.model.quantizer.dim != config_.model.quantizer.dim ||
      previous.model.quantizer_kind != config_.model.quantizer_kind ||
      previous.data.image_size != config_.data.image_size ||
      previous.loss.gan.enabled != config_.loss.gan.enabled) {
    return absl::InvalidArgumentError(
        absl::StrCat("--resume: checkpoint ", dir,
                     " was trained with a different model, image size or GAN "
                     "setting than this config; resume with the checkpoint's config.yaml"));
  }
  state_.config_sha256 = Sha256Hex(config_.source_text);
  ASSIGN_OR_RETURN(const std::string* rng_bytes, CheckpointFile(checkpoint.files, kRngFile, dir));
  RETURN_IF_ERROR(RestoreModelAndOptimizer(checkpoint.files, dir, *model_, *optimizer_));
  RETURN_IF_ERROR(DeserializeCpuRng(*rng_bytes, absl::StrCat(dir, "/", kRngFile)));
  if (discriminator_) {
    RETURN_IF_ERROR(RestoreModelAndOptimizer(checkpoint.files, dir, *discriminator_,
                                             *disc_optimizer_, kDiscriminatorFile,
                                             kDiscOptimizerFile));
  }
  return absl::OkStatus();
}

absl::Status TokenizerTask::Connect(DistributedContext* group) {
  group_ = group;
  RETURN_IF_ERROR(BroadcastModuleState(*group_, *model_));
  ASSIGN_OR_RETURN(GradientAllReducer reducer,
                   GradientAllReducer::Create(group_, model_->parameters()));
  reducer_ = std::make_unique<GradientAllReducer>(std::move(reducer));
  if (discriminator_) {
    RETURN_IF_ERROR(BroadcastModuleState(*group_, *discriminator_));
    ASSIGN_OR_RETURN(GradientAllReducer disc_reducer,
                     GradientAllReducer::Create(group_, discriminator_->parameters()));
    disc_reducer_ = std::make_unique<GradientAllReducer>(std::move(disc_reducer));
    discriminator_->SetRankSum(SumOverRanks(group_));
  }
  if (group_->is_distributed()) {
    DistributedContext* counts_group = group_;
    model_->SetDataParallel(group_->rank(), group_->world_size(),
                            [counts_group](const torch::Tensor& counts) {
                              std::vector<torch::Tensor> buffer = {counts.contiguous()};
                              absl::Status status = counts_group->AllReduceSum(buffer);
                              if (!status.ok()) throw std::runtime_error(status.ToString());
                              return buffer[0];
                            });
  }
  DataConfig data = config_.data;
  data.loader.rank = group_->rank();
  data.loader.world_size = group_->world_size();
  ASSIGN_OR_RETURN(dataset_, OpenDataset(data, config_.seed));
  ASSIGN_OR_RETURN(loader_, DataLoader::Create(dataset_, data.loader, state_.loader));
  if (group_->is_main()) {
    std::vector<torch::Tensor> preview = PreviewViewsOrNone(
        config_.train.preview_images, *dataset_, config_.data.loader.transform, progress_);
    if (!preview.empty()) preview_images_ = preview[0];
  }
  return absl::OkStatus();
}

std::string TokenizerTask::DescribeStart(JsonWriter* start) {
  int64_t parameters = 0;
  for (const auto& p : model_->parameters()) parameters += p.numel();
  start->Add("parameters", parameters)
      .Add("dataset", dataset_->name())
      .Add("dataset_size", dataset_->size())
      .Add("perceptual", state_.perceptual)
      .Add("perceptual_sha256", state_.perceptual_sha256);
  return absl::StrFormat("%d parameters, %s (%d images), perceptual network: %s", parameters,
                         dataset_->name(), dataset_->size(), state_.perceptual);
}

absl::StatusOr<CheckpointFiles> TokenizerTask::CheckpointContents(bool final) {
  state_.loader = loader_->position();
  CheckpointFiles files;
  if (!group_->is_main()) return files;
  RETURN_IF_ERROR(AddModelAndOptimizer(*model_, *optimizer_, &files));
  ASSIGN_OR_RETURN(files[kRngFile], SerializeCpuRng());
  if (discriminator_) {
    RETURN_IF_ERROR(AddModelAndOptimizer(*discriminator_, *disc_optimizer_, &files,
                                         kDiscriminatorFile, kDiscOptimizerFile));
  }
  if (preview_images_.defined()) {
    AddPreviewFile(RenderPreview(), state_.step, progress_, &files);
  }
  files[kConfigFile] = config_.source_text;
  state_.seed = config_.seed;
  state_.final = final;
  files[kStateFile] = StateToJson(state_);
  return files;
}

absl::StatusOr<std::string> TokenizerTask::RenderPreview() {
  torch::Tensor reconstruction;
  RETURN_IF_ERROR(TorchCall("rendering the preview", [&] {
    torch::NoGradGuard no_grad;
    // Evaluation mode: no code-usage counting (and no collective), so training is unaffected.
    const bool training = model_->is_training();
    model_->eval();
    reconstruction = model_->forward(preview_images_.to(device_)).reconstruction;
    model_->train(training);
  }));
  return EncodePreviewGrid(
      {SignedUnitToPixels(preview_images_), SignedUnitToPixels(reconstruction)});
}

absl::Status TokenizerTask::AverageOverRanks(torch::Tensor& tensor) {
  if (!group_->is_distributed()) return absl::OkStatus();
  std::vector<torch::Tensor> buffer = {tensor.contiguous()};
  RETURN_IF_ERROR(group_->AllReduceSum(buffer));
  tensor = buffer[0] / static_cast<double>(group_->world_size());
  return absl::OkStatus();
}

absl::StatusOr<torch::Tensor> TokenizerTask::GatherGlobalBatch(const torch::Tensor& local) {
  if (!group_->is_distributed()) return local;
  const int64_t world = group_->world_size();
  std::vector<int64_t> shape = local.sizes().vec();
  shape.insert(shape.begin(), world);
  std::vector<torch::Tensor> buffer = {torch::zeros(shape, local.options())};
  buffer[0][group_->rank()].copy_(local);
  RETURN_IF_ERROR(group_->AllReduceSum(buffer));
  // [world, b, ...] -> [b, world, ...]: sample j of rank r is sample j * world + r of the batch.
  shape.erase(shape.begin());
  shape[0] *= world;
  return buffer[0].transpose(0, 1).reshape(shape);
}

absl::Status TokenizerTask::BalancePerceptualTerm(const torch::Tensor& pixel,
                                                  const torch::Tensor& perceptual) {
  torch::Tensor terms =
      torch::stack({pixel.detach().to(torch::kFloat32), perceptual.detach().to(torch::kFloat32)})
          .to(torch::kFloat64);
  RETURN_IF_ERROR(AverageOverRanks(terms));
  const double pixel_term = terms[0].item<double>();
  const double perceptual_term = terms[1].item<double>();
  if (!(perceptual_term > 0) || !std::isfinite(pixel_term / perceptual_term) || !(pixel_term > 0)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "loss.perceptual_balance: initial needs positive, finite pixel and perceptual terms on "
        "the first batch; got pixel %g, perceptual %g (a network whose features do not change "
        "with the image cannot be balanced; set loss.perceptual_balance: none)",
        pixel_term, perceptual_term));
  }
  state_.perceptual_balance = pixel_term / perceptual_term;
  progress_.Log(absl::StrFormat(
      "perceptual term balanced at step %d: pixel term %.4g, perceptual term %.4g, so the "
      "perceptual weight is %g x %.4g = %.4g",
      state_.step, pixel_term, perceptual_term, config_.loss.perceptual_weight,
      state_.perceptual_balance, config_.loss.perceptual_weight * state_.perceptual_balance));
  return absl::OkStatus();
}

absl::Status TokenizerTask::RestartDeadCodes() {
  const VectorQuantizerConfig& quantizer = config_.model.quantizer;
  if (quantizer.dead_code_steps <= 0 || config_.model.gumbel_kind()) return absl::OkStatus();
  if (quantizer.dead_code_until_step > 0 && state_.step >= quantizer.dead_code_until_step) {
    return absl::OkStatus();  // past the restart window (the same step on every rank)
  }
  // The counters are summed over the ranks, so every rank takes this branch alike.
  if (!model_->quantizer()->HasDeadCodes()) return absl::OkStatus();
  ASSIGN_OR_RETURN(torch::Tensor z, GatherGlobalBatch(out_.z.detach().contiguous()));
  auto generator = at::detail::createCPUGenerator(config_.seed * 1000003 + state_.step);
  state_.codes_restarted += model_->quantizer()->RestartDeadCodes(z, generator);
  return absl::OkStatus();
}

absl::StatusOr<double> TokenizerTask::ForwardLoss(const Batch& batch) {
  images_ = batch.views[0].to(device_);
  lr_ = config_.optim.schedule.At(state_.step);
  SetLearningRate(*optimizer_, lr_);
  const TokenizerLossConfig& loss_config = config_.loss;
  gan_active_ = discriminator_ && state_.step >= loss_config.gan.disc_start;

  model_->SetStep(state_.step);
  if (config_.model.gumbel_kind()) {
    // The Gumbel noise of a step is a function of (seed, step) on every device and rank, so a
    // resumed run draws the same samples.
    torch::manual_seed(MixSeed(config_.seed ^ kGumbelStream, static_cast<uint64_t>(state_.step)));
  }
  {
    AutocastGuard autocast(bf16_, device_);
    out_ = model_->forward(images_);
  }
  torch::Tensor reconstruction = out_.reconstruction.to(torch::kFloat32);
  torch::Tensor pixel = loss_config.pixel == "l1" ? (reconstruction - images_).abs().mean()
                                                  : (reconstruction - images_).pow(2).mean();
  torch::Tensor nll = loss_config.pixel_weight * pixel;
  torch::Tensor perceptual;
  if (perceptual_) {
    {
      AutocastGuard autocast(bf16_, device_);
      perceptual = perceptual_->Compute(reconstruction, images_);
    }
    if (loss_config.perceptual_balance == "initial" && state_.perceptual_balance == 0) {
      RETURN_IF_ERROR(BalancePerceptualTerm(loss_config.pixel_weight * pixel, perceptual));
    }
    const double factor =
        loss_config.perceptual_balance == "initial" ? state_.perceptual_balance : 1.0;
    perceptual = loss_config.perceptual_weight * factor * perceptual;
    nll = nll + perceptual;
  }
  torch::Tensor codebook = out_.quantized.loss.to(torch::kFloat32);
  total_ = nll + loss_config.codebook_weight * codebook;
  torch::Tensor generator_loss, gan_weight;
  if (gan_active_) {
    discriminator_->eval();  // the generator pass must not update BatchNorm statistics
    torch::Tensor logits_fake;
    {
      AutocastGuard autocast(bf16_, device_);
      logits_fake = discriminator_->forward(reconstruction);
    }
    generator_loss = GeneratorLoss(logits_fake.to(torch::kFloat32));
    // The weight of the global batch: from the gradients averaged over the ranks.
    torch::Tensor gradients =
        GanWeightGradients(nll, generator_loss, model_->decoder()->last_layer_weight());
    RETURN_IF_ERROR(AverageOverRanks(gradients));
    gan_weight = AdaptiveGanWeightFromGradients(gradients, loss_config.gan.disc_weight);
    total_ = total_ + gan_weight * generator_loss;
  }
  torch::Tensor zero = torch::zeros({}, total_.options().dtype(torch::kFloat32));
  auto part = [&](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(torch::kFloat32).reshape({}) : zero;
  };
  parts_ = torch::stack({part(pixel), part(perceptual), part(codebook), part(generator_loss), zero,
                         part(gan_weight)});
  loss_value_ = total_.item<double>();  // the step's one host sync
  return loss_value_;
}

absl::Status TokenizerTask::Update() {
  optimizer_->zero_grad();
  total_.backward();
  RETURN_IF_ERROR(reducer_->AllReduce());
  if (config_.optim.grad_clip > 0) {
    ClipGradNorm(model_->parameters(), config_.optim.grad_clip);
  }
  optimizer_->step();

  if (gan_active_) {
    SetLearningRate(*disc_optimizer_, lr_);
    discriminator_->train();
    torch::Tensor reconstruction = out_.reconstruction.detach().to(torch::kFloat32);
    torch::Tensor logits_real, logits_fake;
    {
      AutocastGuard autocast(bf16_, device_);
      logits_real = discriminator_->forward(images_.detach());
      logits_fake = discriminator_->forward(reconstruction);
    }
    torch::Tensor disc_loss =
        HingeDiscriminatorLoss(logits_real.to(torch::kFloat32), logits_fake.to(torch::kFloat32));
    disc_optimizer_->zero_grad();
    disc_loss.backward();
    RETURN_IF_ERROR(disc_reducer_->AllReduce());
    disc_optimizer_->step();
    parts_[kDiscriminator] = disc_loss.detach().to(torch::kFloat32).reshape({});
  }
  RETURN_IF_ERROR(RestartDeadCodes());

  window_.loss += loss_value_;
  window_.parts = window_.parts.defined() ? window_.parts + parts_ : parts_;
  images_ = total_ = parts_ = torch::Tensor();
  out_ = TokenizerOutput();
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenizerTask::Metrics(const MetricWindow& window, JsonWriter* event) {
  const double n = static_cast<double>(window.steps);
  std::vector<double> means(1 + kParts);
  {
    torch::Tensor host = window_.parts.to(torch::kCPU, torch::kFloat64).contiguous();
    means[0] = window_.loss / n;
    for (int i = 0; i < kParts; ++i) means[1 + i] = host.data_ptr<double>()[i] / n;
  }
  ASSIGN_OR_RETURN(means, group_->AllReduceMean(means));
  const double* parts = means.data() + 1;
  CodeUsage usage = model_->TakeUsage();  // of the global batch (collective for gumbel)
  const double lr = config_.optim.schedule.At(state_.step - 1);
  event->Add("loss", means[0])
      .Add("loss_pixel", parts[kPixel])
      .Add("loss_perceptual", parts[kPerceptual])
      .Add("loss_codebook", parts[kCodebook])
      .Add("lr", lr)
      .Add("codes_used", usage.codes_used)
      .Add("codebook_size", config_.model.quantizer.num_codes)
      .Add("perplexity", usage.perplexity);
  if (config_.model.quantizer.dead_code_steps > 0 && !config_.model.gumbel_kind()) {
    event->Add("codes_restarted", state_.codes_restarted);  // cumulative, the same on every rank
  }
  if (perceptual_ && config_.loss.perceptual_balance == "initial") {
    // The weight in effect: perceptual_weight x the first batch's pixel / perceptual ratio.
    event->Add("perceptual_weight", config_.loss.perceptual_weight * state_.perceptual_balance);
  }
  if (discriminator_) {
    event->Add("loss_generator", parts[kGenerator])
        .Add("loss_discriminator", parts[kDiscriminator])
        .Add("gan_weight", parts[kGanWeight]);
  }
  if (config_.model.gumbel_kind()) {
    // The schedules at the window's last step; loss_codebook is the weighted KL term.
    model_->SetStep(state_.step - 1);
    event->Add("temperature", model_->temperature()).Add("kl_weight", model_->kl_weight());
  }
  window_ = TokenizerWindow();
  return absl::StrFormat(
      "loss %.4f (pixel %.4f, perceptual %.4f, codebook %.4f)  lr %.2e  codes %d/%d  "
      "perplexity %.1f",
      means[0], parts[kPixel], parts[kPerceptual], parts[kCodebook], lr, usage.codes_used,
      config_.model.quantizer.num_codes, usage.perplexity);
}

absl::Status TokenizerTask::Evaluate() {
  if (!eval_dataset_) return absl::OkStatus();
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(TokenizerEvalSums sums,
                   EvaluateTokenizerShard(*model_, *eval_dataset_, config_.eval,
                                          static_cast<int>(config_.data.image_size), device_,
                                          group_->rank(), group_->world_size(), [&](int64_t done) {
                                            progress_.Heartbeat("eval", done);
                                          }));
  if (group_->is_distributed()) {
    // Every rank's sums, added: [images, unreadable, abs, squared, values, agreeing, positions,
    // counts..., plain counts...] (float64 holds the counts exactly).
    std::vector<double> values = {static_cast<double>(sums.images),
                                  static_cast<double>(sums.unreadable),
                                  sums.abs_error,
                                  sums.squared_error,
                                  sums.values,
                                  sums.agreeing,
                                  sums.positions};
    torch::Tensor counts = sums.counts.to(torch::kFloat64).contiguous();
    values.insert(values.end(), counts.data_ptr<double>(),
                  counts.data_ptr<double>() + counts.numel());
    torch::Tensor plain_counts = sums.plain_counts.to(torch::kFloat64).contiguous();
    values.insert(values.end(), plain_counts.data_ptr<double>(),
                  plain_counts.data_ptr<double>() + plain_counts.numel());
    ASSIGN_OR_RETURN(std::vector<double> means, group_->AllReduceMean(values));
    const double world = static_cast<double>(group_->world_size());
    for (double& v : means) v = std::round(v * world * 1e6) / 1e6;
    sums.images = std::llround(means[0]);
    sums.unreadable = std::llround(means[1]);
    sums.abs_error = means[2];
    sums.squared_error = means[3];
    sums.values = means[4];
    sums.agreeing = means[5];
    sums.positions = means[6];
    const int64_t num_codes = counts.numel();
    auto histogram = [&](int64_t begin) {
      return torch::tensor(
                 std::vector<double>(means.begin() + begin, means.begin() + begin + num_codes))
          .round()
          .to(torch::kInt64);
    };
    sums.counts = histogram(7);
    sums.plain_counts = histogram(7 + num_codes);
  }
  ASSIGN_OR_RETURN(TokenizerEvalResult r, FinishTokenizerEval(sums, *eval_dataset_, config_.eval));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  evaluated_step_ = state_.step;
  JsonWriter event;
  event.Add("event", trainer_protocol::kEventEval)
      .Add("step", state_.step)
      .Add("eval_l1", r.l1)
      .Add("eval_mse", r.mse)
      .Add("eval_psnr", r.psnr)
      .Add("eval_codes_used", r.codes_used)
      .Add("eval_perplexity", r.perplexity)
      .Add("eval_token_agreement", r.token_agreement)
      .Add("eval_plain_positions", r.plain_positions)
      .Add("eval_plain_codes", r.plain_codes)
      .Add("eval_plain_code_share", r.plain_code_share)
      .Add("eval_images", r.images)
      .Add("eval_unreadable", r.unreadable)
      .Add("eval_seconds", seconds);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "eval at step %d on %d held-out images of %s: L1 %.4f  PSNR %.2f dB  codes %d/%d  "
      "perplexity %.1f  token agreement under jitter %.2f%%  plain cells %.1f%% of positions, "
      "%d codes (%.1f%% of those used)  (%.1f s)",
      state_.step, r.images, eval_dataset_->name(), r.l1, r.psnr, r.codes_used,
      config_.model.quantizer.num_codes, r.perplexity, 100.0 * r.token_agreement,
      100.0 * r.plain_positions, r.plain_codes, 100.0 * r.plain_code_share, seconds));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TokenizerRunResult> RunTokenizerJob(const TokenizerJobConfig& config,
                                                   const TokenizerRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  TokenizerTask task(config, options.progress);
  return RunTrainingLoop(task,
                         LoopOptionsFor("tokenizer", config.threads, config.train, config.faults,
                                        options.resume_from, options.progress, config.source_text));
}

absl::StatusOr<LoadedTokenizer> LoadTokenizerCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolveCheckpoint(path, nullptr));
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* config_text,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kStateFile, dir));
  ASSIGN_OR_RETURN(TrainerState state, StateFromJson(*state_json, dir + "/" + kStateFile));
  ASSIGN_OR_RETURN(const std::string* model_bytes,
                   CheckpointFile(checkpoint.files, kModelFile, dir));
  LoadedTokenizer loaded;
  // Without path checks: the dataset it trained on may not exist where the checkpoint is used.
  absl::StatusOr<TokenizerJobConfig> config =
      ParseTokenizerConfig(*config_text, dir + "/config.yaml", /*check_paths=*/false);
  if (!config.ok()) return config.status();
  loaded.config = *std::move(config);
  loaded.step = state.step;
  loaded.checkpoint_dir = dir;
  RETURN_IF_ERROR(TorchCall(absl::StrCat("loading ", dir), [&]() -> absl::Status {
    loaded.model = VqTokenizer(loaded.config.model);
    RETURN_IF_ERROR(
        DeserializeModule(*model_bytes, *loaded.model, absl::StrCat(dir, "/", kModelFile)));
    loaded.model->eval();
    return absl::OkStatus();
  }));
  return loaded;
}

}  // namespace peco::trainer
