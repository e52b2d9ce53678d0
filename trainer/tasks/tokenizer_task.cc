#include "trainer/tasks/tokenizer_task.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/config_reader.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "trainer/data/random.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_policy.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/module_state.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/stop_signal.h"
#include "trainer/losses/gan_loss.h"
#include "trainer/losses/perceptual_loss.h"
#include "trainer/models/patch_discriminator.h"
#include "trainer/tasks/checkpoint_lookup.h"
#include "trainer/tasks/perceptual_network.h"
#include "trainer/tasks/preview.h"
#include "trainer/tasks/tokenizer_eval.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace fs = std::filesystem;
namespace {

constexpr char kConfigFile[] = "config.yaml";
constexpr char kModelFile[] = "model.pt";
constexpr char kOptimizerFile[] = "optimizer.pt";
constexpr char kDiscriminatorFile[] = "discriminator.pt";
constexpr char kDiscOptimizerFile[] = "disc_optimizer.pt";
constexpr char kRngFile[] = "rng.pt";
constexpr const char* kStateFile = kTrainerStateFile;

std::string CheckpointRoot(const TokenizerJobConfig& config) {
  return (fs::path(config.train.output_dir) / "checkpoints").string();
}

struct TrainerState {
  int64_t step = 0;
  LoaderPosition loader;
  std::string config_sha256;
  // Provenance of the perceptual network: description ("off", "random (seed N)", "file P",
  // "pretrain checkpoint D ..."), its file or checkpoint directory, and that checkpoint's
  // MANIFEST SHA-256 (empty for files and random networks).
  std::string perceptual = "off";
  std::string perceptual_path;
  std::string perceptual_sha256;
};

std::string StateToJson(const TrainerState& state, const TokenizerJobConfig& config, bool final) {
  JsonWriter w;
  w.Add("kind", "tokenizer")
      .Add("step", state.step)
      .Add("epoch", state.loader.epoch)
      .Add("batch", state.loader.batch)
      .Add("seed", static_cast<uint64_t>(config.seed))
      .Add("config_sha256", state.config_sha256)
      .Add("perceptual", state.perceptual)
      .Add("perceptual_path", state.perceptual_path)
      .Add("perceptual_sha256", state.perceptual_sha256)
      .Add("final", final);
  return w.str() + "\n";
}

absl::StatusOr<TrainerState> StateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  TrainerState state;
  std::string kind, sha;
  int64_t seed = 0;
  bool final = false;
  RETURN_IF_ERROR(r.Read("kind", &kind));
  if (kind != "tokenizer") {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": holds a '", kind, "' checkpoint, expected a tokenizer checkpoint"));
  }
  RETURN_IF_ERROR(r.Read("step", &state.step));
  RETURN_IF_ERROR(r.Read("epoch", &state.loader.epoch));
  RETURN_IF_ERROR(r.Read("batch", &state.loader.batch));
  RETURN_IF_ERROR(r.Read("seed", &seed));
  RETURN_IF_ERROR(r.Read("config_sha256", &state.config_sha256));
  // Absent from checkpoints written before the provenance was recorded.
  RETURN_IF_ERROR(r.Read("perceptual", &state.perceptual));
  RETURN_IF_ERROR(r.Read("perceptual_path", &state.perceptual_path));
  RETURN_IF_ERROR(r.Read("perceptual_sha256", &state.perceptual_sha256));
  RETURN_IF_ERROR(r.Read("final", &final));
  RETURN_IF_ERROR(r.Finish());
  return state;
}

// Running sums of the step metrics between two log events. The loss parts stay on the device
// and are read once per log event, so a step costs one host sync (the non-finite check).
// Salt that separates the Gumbel-noise stream from the others.
constexpr uint64_t kGumbelStream = 0x47554D42;  // "GUMB"

enum MetricPart { kPixel, kPerceptual, kCodebook, kGenerator, kDiscriminator, kGanWeight, kParts };

struct MetricWindow {
  double loss = 0;
  torch::Tensor parts;  // [kParts] sums, on the training device
  int64_t steps = 0, images = 0;
  double data_wait_at_start = 0;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  void Reset(double data_wait) {
    *this = MetricWindow();
    data_wait_at_start = data_wait;
  }
};

class TokenizerTrainer {
 public:
  TokenizerTrainer(const TokenizerJobConfig& config, const TokenizerRunOptions& options)
      : config_(config), options_(options), progress_(*options.progress) {}

  absl::Status Setup();
  absl::StatusOr<TokenizerRunResult> Train();

 private:
  absl::Status BuildModels();
  absl::Status Restore(const RestoredCheckpoint& checkpoint);
  absl::StatusOr<std::string> SaveCheckpoint(bool final);
  // The preview grid: the preview images above their reconstructions.
  absl::StatusOr<std::string> RenderPreview();
  void TrainStep(const torch::Tensor& images);
  void EmitMetrics();
  // Evaluates on the held-out set (eval:) and emits an `eval` event.
  absl::Status Evaluate();

  const TokenizerJobConfig& config_;
  const TokenizerRunOptions& options_;
  ProgressSink& progress_;

  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  VqTokenizer model_{nullptr};
  PatchDiscriminator discriminator_{nullptr};
  std::unique_ptr<PerceptualLoss> perceptual_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::unique_ptr<torch::optim::Optimizer> disc_optimizer_;
  std::shared_ptr<const Dataset> dataset_;
  std::shared_ptr<const Dataset> eval_dataset_;  // null when eval.enabled is false
  int64_t evaluated_step_ = -1;
  std::unique_ptr<DataLoader> loader_;
  torch::Tensor preview_images_;  // [N, 3, S, S] in [-1, 1]; undefined when previews are off
  TrainerState state_;
  MetricWindow window_;
  int64_t last_saved_step_ = -1;
  std::string last_checkpoint_;
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

absl::Status TokenizerTrainer::BuildModels() {
  if (config_.train.device == "cuda") {
    if (!torch::cuda::is_available()) {
      return absl::InvalidArgumentError(
          "train.device: cuda requested but this LibTorch has no CUDA device");
    }
    device_ = torch::Device(torch::kCUDA);
  }
  bf16_ = config_.train.precision == "bf16";
  // Seeded construction: the same config gives the same initial weights.
  torch::manual_seed(config_.seed);
  model_ = VqTokenizer(config_.model);
  model_->to(device_);
  optimizer_ = MakeOptimizer(config_.optim, model_->parameters());
  if (config_.loss.gan.enabled) {
    discriminator_ = PatchDiscriminator(config_.loss.gan.discriminator, config_.seed + 1);
    discriminator_->to(device_);
    disc_optimizer_ = MakeOptimizer(config_.optim, discriminator_->parameters());
  }
  return absl::OkStatus();
}

absl::Status TokenizerTrainer::Setup() {
  const int threads = ConfigureThreads(config_.threads);
  ASSIGN_OR_RETURN(DistributedOptions env, DistributedOptionsFromEnv());
  RETURN_IF_ERROR(Faults().Configure(config_.faults, env.attempt, env.rank));
  state_.config_sha256 = Sha256Hex(config_.source_text);
  const std::string root = CheckpointRoot(config_);
  if (options_.resume_from.empty() && !ListCheckpoints(root).empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("train.output_dir: ", config_.train.output_dir,
                     " already holds checkpoints; pass --resume ", config_.train.output_dir,
                     " to continue that run, or choose another output_dir"));
  }
  RETURN_IF_ERROR(TorchCall("building the tokenizer", [&] { return BuildModels(); }));
  if (config_.loss.perceptual_weight > 0) {
    const PerceptualLossConfig& perceptual = config_.loss.perceptual;
    ASSIGN_OR_RETURN(perceptual_, CreatePerceptualLoss(perceptual));
    RETURN_IF_ERROR(
        TorchCall("perceptual extractor", [&] { perceptual_->extractor().module().to(device_); }));
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
  }
  if (!options_.resume_from.empty()) {
    ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint,
                     ResolveCheckpoint(options_.resume_from, &progress_));
    RETURN_IF_ERROR(Restore(checkpoint));
    last_saved_step_ = state_.step;
    last_checkpoint_ = checkpoint.dir;
  }
  ASSIGN_OR_RETURN(dataset_, OpenDataset(config_.data, config_.seed));
  ASSIGN_OR_RETURN(loader_, DataLoader::Create(dataset_, config_.data.loader, state_.loader));
  if (config_.eval.enabled) {
    absl::StatusOr<std::shared_ptr<const Dataset>> heldout =
        OpenDataset(config_.EvalData(), MixSeed(config_.eval.seed, kEvalDataStream));
    if (!heldout.ok()) {
      return absl::Status(heldout.status().code(),
                          absl::StrCat("eval: the held-out data: ", heldout.status().message()));
    }
    eval_dataset_ = *std::move(heldout);
  }
  std::vector<torch::Tensor> preview = PreviewViewsOrNone(config_.train.preview_images, *dataset_,
                                                          config_.data.loader.transform, progress_);
  if (!preview.empty()) preview_images_ = preview[0];

  int64_t parameters = 0;
  for (const auto& p : model_->parameters()) parameters += p.numel();
  JsonWriter start;
  start.Add("event", "start")
      .Add("kind", "tokenizer")
      .Add("step", state_.step)
      .Add("max_steps", config_.train.max_steps)
      .Add("threads", threads)
      .Add("parameters", parameters)
      .Add("dataset", dataset_->name())
      .Add("dataset_size", dataset_->size())
      .Add("perceptual", state_.perceptual)
      .Add("perceptual_sha256", state_.perceptual_sha256)
      .Add("precision", config_.train.precision)
      .Add("device", config_.train.device);
  progress_.Emit(start);
  progress_.Log(absl::StrFormat(
      "tokenizer: %d parameters, %s (%d images), %d threads, %s, starting at step %d of %d",
      parameters, dataset_->name(), dataset_->size(), threads, config_.train.precision, state_.step,
      config_.train.max_steps));
  window_.Reset(loader_->data_wait_seconds());
  return absl::OkStatus();
}

absl::Status TokenizerTrainer::Restore(const RestoredCheckpoint& checkpoint) {
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
  ASSIGN_OR_RETURN(const std::string* model_bytes,
                   CheckpointFile(checkpoint.files, kModelFile, dir));
  ASSIGN_OR_RETURN(const std::string* optim_bytes,
                   CheckpointFile(checkpoint.files, kOptimizerFile, dir));
  ASSIGN_OR_RETURN(const std::string* rng_bytes, CheckpointFile(checkpoint.files, kRngFile, dir));
  RETURN_IF_ERROR(TorchCall(absl::StrCat("restoring ", dir), [&] {
    DeserializeModule(*model_bytes, *model_);
    DeserializeOptimizer(*optim_bytes, *optimizer_);
    DeserializeCpuRng(*rng_bytes);
  }));
  if (discriminator_) {
    ASSIGN_OR_RETURN(const std::string* disc,
                     CheckpointFile(checkpoint.files, kDiscriminatorFile, dir));
    ASSIGN_OR_RETURN(const std::string* disc_opt,
                     CheckpointFile(checkpoint.files, kDiscOptimizerFile, dir));
    RETURN_IF_ERROR(TorchCall(absl::StrCat("restoring ", dir), [&] {
      DeserializeModule(*disc, *discriminator_);
      DeserializeOptimizer(*disc_opt, *disc_optimizer_);
    }));
  }
  progress_.Log(absl::StrCat("resumed from ", dir, " at step ", state_.step));
  return absl::OkStatus();
}

absl::StatusOr<std::string> TokenizerTrainer::SaveCheckpoint(bool final) {
  const auto started = std::chrono::steady_clock::now();
  CheckpointFiles files;
  state_.loader = loader_->position();
  RETURN_IF_ERROR(TorchCall("serialising the checkpoint", [&] {
    files[kModelFile] = SerializeModule(*model_);
    files[kOptimizerFile] = SerializeOptimizer(*optimizer_);
    files[kRngFile] = SerializeCpuRng();
    if (discriminator_) {
      files[kDiscriminatorFile] = SerializeModule(*discriminator_);
      files[kDiscOptimizerFile] = SerializeOptimizer(*disc_optimizer_);
    }
  }));
  if (preview_images_.defined()) {
    AddPreviewFile(RenderPreview(), state_.step, progress_, &files);
  }
  files[kConfigFile] = config_.source_text;
  files[kStateFile] = StateToJson(state_, config_, final);
  const std::string root = CheckpointRoot(config_);
  ASSIGN_OR_RETURN(std::string dir, WriteCheckpoint(root, state_.step, files));
  RETURN_IF_ERROR(ApplyRetention(root, config_.train.keep_checkpoints, dir));
  int64_t bytes = 0;
  for (const auto& [name, data] : files) bytes += static_cast<int64_t>(data.size());
  JsonWriter event;
  event.Add("event", "checkpoint")
      .Add("step", state_.step)
      .Add("path", dir)
      .Add("bytes", bytes)
      .Add("seconds",
           std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count())
      .Add("final", final);
  progress_.Emit(event);
  last_saved_step_ = state_.step;
  last_checkpoint_ = dir;
  return dir;
}

absl::StatusOr<std::string> TokenizerTrainer::RenderPreview() {
  torch::Tensor reconstruction;
  RETURN_IF_ERROR(TorchCall("rendering the preview", [&] {
    torch::NoGradGuard no_grad;
    // Evaluation mode: no code-usage counting, so training is unaffected.
    const bool training = model_->is_training();
    model_->eval();
    reconstruction = model_->forward(preview_images_.to(device_)).reconstruction;
    model_->train(training);
  }));
  return EncodePreviewGrid(
      {SignedUnitToPixels(preview_images_), SignedUnitToPixels(reconstruction)});
}

void TokenizerTrainer::TrainStep(const torch::Tensor& images) {
  const double lr = config_.optim.schedule.At(state_.step);
  SetLearningRate(*optimizer_, lr);
  const TokenizerLossConfig& loss_config = config_.loss;
  const bool gan_active = discriminator_ && state_.step >= loss_config.gan.disc_start;

  TokenizerOutput out;
  model_->SetStep(state_.step);
  if (config_.model.gumbel_kind()) {
    // The Gumbel noise of a step is a function of (seed, step) on every device, so a resumed run
    // draws the same samples.
    torch::manual_seed(MixSeed(config_.seed ^ kGumbelStream, static_cast<uint64_t>(state_.step)));
  }
  {
    AutocastGuard autocast(bf16_, device_);
    out = model_->forward(images);
  }
  torch::Tensor reconstruction = out.reconstruction.to(torch::kFloat32);
  torch::Tensor pixel = loss_config.pixel == "l1" ? (reconstruction - images).abs().mean()
                                                  : (reconstruction - images).pow(2).mean();
  torch::Tensor nll = loss_config.pixel_weight * pixel;
  torch::Tensor perceptual;
  if (perceptual_) {
    AutocastGuard autocast(bf16_, device_);
    perceptual = loss_config.perceptual_weight * perceptual_->Compute(reconstruction, images);
    nll = nll + perceptual;
  }
  torch::Tensor codebook = out.quantized.loss.to(torch::kFloat32);
  torch::Tensor total = nll + loss_config.codebook_weight * codebook;
  torch::Tensor generator_loss, gan_weight;
  if (gan_active) {
    discriminator_->eval();  // the generator pass must not update BatchNorm statistics
    torch::Tensor logits_fake;
    {
      AutocastGuard autocast(bf16_, device_);
      logits_fake = discriminator_->forward(reconstruction);
    }
    generator_loss = GeneratorLoss(logits_fake.to(torch::kFloat32));
    gan_weight = AdaptiveGanWeight(nll, generator_loss, model_->decoder()->last_layer_weight(),
                                   loss_config.gan.disc_weight);
    total = total + gan_weight * generator_loss;
  }
  // Refuse a non-finite loss before it reaches the weights: the last checkpoint stays clean.
  double total_value = total.item<double>();
  if (Faults().NanLoss(state_.step)) total_value = std::nan("");
  if (!std::isfinite(total_value)) {
    throw std::runtime_error(absl::StrCat("non-finite loss at step ", state_.step));
  }
  optimizer_->zero_grad();
  total.backward();
  if (config_.optim.grad_clip > 0) {
    ClipGradNorm(model_->parameters(), config_.optim.grad_clip);
  }
  optimizer_->step();

  torch::Tensor disc_loss;
  if (gan_active) {
    SetLearningRate(*disc_optimizer_, lr);
    discriminator_->train();
    torch::Tensor logits_real, logits_fake;
    {
      AutocastGuard autocast(bf16_, device_);
      logits_real = discriminator_->forward(images.detach());
      logits_fake = discriminator_->forward(reconstruction.detach());
    }
    disc_loss =
        HingeDiscriminatorLoss(logits_real.to(torch::kFloat32), logits_fake.to(torch::kFloat32));
    disc_optimizer_->zero_grad();
    disc_loss.backward();
    disc_optimizer_->step();
  }
  if (config_.model.quantizer.dead_code_steps > 0) {
    auto generator = at::detail::createCPUGenerator(config_.seed * 1000003 + state_.step);
    model_->quantizer()->RestartDeadCodes(out.z, generator);
  }

  window_.loss += total_value;
  torch::Tensor zero = torch::zeros({}, total.options().dtype(torch::kFloat32));
  auto part = [&](const torch::Tensor& t) {
    return t.defined() ? t.detach().to(torch::kFloat32).reshape({}) : zero;
  };
  torch::Tensor parts = torch::stack({part(pixel), part(perceptual), part(codebook),
                                      part(generator_loss), part(disc_loss), part(gan_weight)});
  window_.parts = window_.parts.defined() ? window_.parts + parts : parts;
  window_.steps += 1;
  window_.images += images.size(0);
  ++state_.step;
}

void TokenizerTrainer::EmitMetrics() {
  if (window_.steps == 0) return;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - window_.start).count();
  const double wait = loader_->data_wait_seconds() - window_.data_wait_at_start;
  const double n = static_cast<double>(window_.steps);
  double sums[kParts] = {};
  {
    torch::Tensor host = window_.parts.to(torch::kCPU, torch::kFloat64).contiguous();
    for (int i = 0; i < kParts; ++i) sums[i] = host.data_ptr<double>()[i];
  }
  CodeUsage usage = model_->TakeUsage();
  const double lr = config_.optim.schedule.At(state_.step - 1);
  JsonWriter event;
  event.Add("event", "step")
      .Add("step", state_.step)
      .Add("epoch", loader_->position().epoch)
      .Add("loss", window_.loss / n)
      .Add("loss_pixel", sums[kPixel] / n)
      .Add("loss_perceptual", sums[kPerceptual] / n)
      .Add("loss_codebook", sums[kCodebook] / n)
      .Add("lr", lr)
      .Add("images_per_second", window_.images / std::max(seconds, 1e-9))
      .Add("step_seconds", seconds / n)
      .Add("data_wait_seconds", wait)
      .Add("data_wait_share", wait / std::max(seconds, 1e-9))
      .Add("codes_used", usage.codes_used)
      .Add("codebook_size", config_.model.quantizer.num_codes)
      .Add("perplexity", usage.perplexity)
      .Add("skipped_samples", loader_->skipped_samples());
  if (discriminator_) {
    event.Add("loss_generator", sums[kGenerator] / n)
        .Add("loss_discriminator", sums[kDiscriminator] / n)
        .Add("gan_weight", sums[kGanWeight] / n);
  }
  if (config_.model.gumbel_kind()) {
    // The schedules at the window's last step; loss_codebook is the weighted KL term.
    model_->SetStep(state_.step - 1);
    event.Add("temperature", model_->temperature()).Add("kl_weight", model_->kl_weight());
  }
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "step %d/%d  loss %.4f (pixel %.4f, perceptual %.4f, codebook %.4f)  lr %.2e  %.1f img/s  "
      "codes %d/%d  perplexity %.1f",
      state_.step, config_.train.max_steps, window_.loss / n, sums[kPixel] / n,
      sums[kPerceptual] / n, sums[kCodebook] / n, lr, window_.images / std::max(seconds, 1e-9),
      usage.codes_used, config_.model.quantizer.num_codes, usage.perplexity));
  window_.Reset(loader_->data_wait_seconds());
}

absl::Status TokenizerTrainer::Evaluate() {
  if (!eval_dataset_ || evaluated_step_ == state_.step) return absl::OkStatus();
  const auto started = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(TokenizerEvalResult r,
                   EvaluateTokenizer(*model_, *eval_dataset_, config_.eval,
                                     static_cast<int>(config_.data.image_size), device_,
                                     [&](int64_t done) { progress_.Heartbeat("eval", done); }));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  evaluated_step_ = state_.step;
  JsonWriter event;
  event.Add("event", "eval")
      .Add("step", state_.step)
      .Add("eval_l1", r.l1)
      .Add("eval_mse", r.mse)
      .Add("eval_psnr", r.psnr)
      .Add("eval_codes_used", r.codes_used)
      .Add("eval_perplexity", r.perplexity)
      .Add("eval_token_agreement", r.token_agreement)
      .Add("eval_images", r.images)
      .Add("eval_unreadable", r.unreadable)
      .Add("eval_seconds", seconds);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "eval at step %d on %d held-out images of %s: L1 %.4f  PSNR %.2f dB  codes %d/%d  "
      "perplexity %.1f  token agreement under jitter %.2f%%  (%.1f s)",
      state_.step, r.images, eval_dataset_->name(), r.l1, r.psnr, r.codes_used,
      config_.model.quantizer.num_codes, r.perplexity, 100.0 * r.token_agreement, seconds));
  return absl::OkStatus();
}

absl::StatusOr<TokenizerRunResult> TokenizerTrainer::Train() {
  model_->train();
  TokenizerRunResult result;
  CheckpointFailureGuard checkpoint_guard(config_.train.on_checkpoint_failure,
                                          config_.train.max_skipped_checkpoints, &progress_);
  while (state_.step < config_.train.max_steps) {
    if (StopRequested()) {
      result.stopped_by_signal = true;
      break;
    }
    ASSIGN_OR_RETURN(Batch batch, loader_->Next());
    torch::Tensor images = batch.views[0].to(device_);
    Faults().BeforeStep(state_.step);
    absl::Status step_status =
        TorchCall(absl::StrCat("step ", state_.step), [&] { TrainStep(images); });
    if (!step_status.ok()) {
      if (absl::StrContains(step_status.message(), "non-finite loss")) {
        return absl::FailedPreconditionError(step_status.message());
      }
      return step_status;
    }
    if (state_.step % config_.train.log_every == 0) EmitMetrics();
    if (state_.step % config_.train.checkpoint_every == 0) {
      const bool final = state_.step == config_.train.max_steps;
      RETURN_IF_ERROR(checkpoint_guard.Check(state_.step, final, SaveCheckpoint(final).status()));
    }
    // After the step's checkpoint, so a failing evaluation loses no training.
    if (config_.eval.every > 0 && state_.step % config_.eval.every == 0 &&
        state_.step < config_.train.max_steps) {
      RETURN_IF_ERROR(Evaluate());
    }
  }
  EmitMetrics();
  if (last_saved_step_ != state_.step) {
    RETURN_IF_ERROR(SaveCheckpoint(/*final=*/!result.stopped_by_signal).status());
  }
  // After the final checkpoint: a failing evaluation loses no training.
  if (!result.stopped_by_signal) RETURN_IF_ERROR(Evaluate());
  result.final_step = state_.step;
  result.last_checkpoint = last_checkpoint_;
  JsonWriter done;
  done.Add("event", result.stopped_by_signal ? "stopped" : "completed")
      .Add("step", state_.step)
      .Add("checkpoint", last_checkpoint_);
  progress_.Emit(done);
  progress_.Log(absl::StrCat(result.stopped_by_signal ? "stopped by signal" : "completed",
                             " at step ", state_.step, "; checkpoint: ", last_checkpoint_));
  return result;
}

}  // namespace

absl::StatusOr<TokenizerRunResult> RunTokenizerJob(const TokenizerJobConfig& config,
                                                   const TokenizerRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  TokenizerTrainer trainer(config, options);
  RETURN_IF_ERROR(trainer.Setup());
  return trainer.Train();
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
  RETURN_IF_ERROR(TorchCall(absl::StrCat("loading ", dir), [&] {
    loaded.model = VqTokenizer(loaded.config.model);
    DeserializeModule(*model_bytes, *loaded.model);
    loaded.model->eval();
  }));
  return loaded;
}

}  // namespace peco::trainer
