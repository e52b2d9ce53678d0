#include "trainer/tasks/contrastive_task.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>

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
#include "trainer/engine/distributed.h"
#include "trainer/engine/distributed_autograd.h"
#include "trainer/engine/distributed_module.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/module_state.h"
#include "trainer/engine/run_state.h"
#include "trainer/engine/runtime.h"
#include "trainer/tasks/readout_features.h"
#include "trainer/tasks/readouts.h"
#include "trainer/tasks/run_setup.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr char kKind[] = "contrastive";

// The k-NN monitor's last readout.
struct MonitorResult {
  int64_t step = -1;  // -1: none yet
  double knn_top1 = 0, knn_top5 = 0;
  int64_t images = 0, train_images = 0;
};

// trainer_state.json of a contrastive checkpoint.
struct ContrastiveState : RunState {
  ContrastiveState() { kind = kKind; }
  MonitorResult monitor;
};

std::string StateToJson(const ContrastiveState& state) {
  JsonWriter w;
  AddRunState(state, &w);
  w.Add("eval_step", state.monitor.step)
      .Add("eval_knn_top1", state.monitor.knn_top1)
      .Add("eval_knn_top5", state.monitor.knn_top5)
      .Add("eval_images", state.monitor.images)
      .Add("eval_train_images", state.monitor.train_images);
  return w.str() + "\n";
}

absl::StatusOr<ContrastiveState> StateFromJson(const std::string& json, const std::string& source) {
  ASSIGN_OR_RETURN(ConfigReader r, ConfigReader::FromString(json, source));
  ContrastiveState state;
  RETURN_IF_ERROR(ReadRunState(r, {kKind}, source, &state));
  RETURN_IF_ERROR(r.Read("eval_step", &state.monitor.step));
  RETURN_IF_ERROR(r.Read("eval_knn_top1", &state.monitor.knn_top1));
  RETURN_IF_ERROR(r.Read("eval_knn_top5", &state.monitor.knn_top5));
  RETURN_IF_ERROR(r.Read("eval_images", &state.monitor.images));
  RETURN_IF_ERROR(r.Read("eval_train_images", &state.monitor.train_images));
  RETURN_IF_ERROR(r.Finish());
  return state;
}

// The first model field in which a checkpoint's model differs from this config's, or "".
std::string DifferentModelField(const MocoV3Config& a, const MocoV3Config& b) {
  if (a.vit.img_size != b.vit.img_size) return "img_size";
  if (a.vit.patch_size != b.vit.patch_size) return "patch_size";
  if (a.vit.embed_dim != b.vit.embed_dim) return "embed_dim";
  if (a.vit.depth != b.vit.depth) return "depth";
  if (a.vit.num_heads != b.vit.num_heads) return "num_heads";
  if (a.vit.mlp_ratio != b.vit.mlp_ratio) return "mlp_ratio";
  if (a.dim != b.dim) return "dim";
  if (a.mlp_dim != b.mlp_dim) return "mlp_dim";
  if (a.stop_grad_conv1 != b.stop_grad_conv1) return "stop_grad_conv1";
  return "";
}

// Sums of the step metrics between two log events.
struct ContrastiveWindow {
  double loss = 0, grad_norm = 0;
};

class ContrastiveTask : public TrainingTask {
 public:
  ContrastiveTask(const ContrastiveJobConfig& config, ProgressSink* progress)
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
  EvaluationPolicy evaluation() const override;
  absl::Status Evaluate() override;
  int64_t evaluated_step() const override { return state_.monitor.step; }
  void AddResult(JsonWriter* done) override;

 private:
  double BaseLr() const;

  ContrastiveJobConfig config_;
  ProgressSink& progress_;
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  DistributedContext* group_ = nullptr;
  MocoV3 model_{nullptr};
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<GradientAllReducer> reducer_;
  std::shared_ptr<const Dataset> dataset_, held_out_;
  std::unique_ptr<DataLoader> loader_;
  ContrastiveState state_;
  ContrastiveWindow window_;
  double flops_per_image_ = 0;  // one image's two views through a step
  torch::Tensor loss_;          // between ForwardLoss and Update
  double loss_value_ = 0;
};

double ContrastiveTask::BaseLr() const {
  if (!config_.optim.scale_lr_by_batch) return config_.optim.lr;
  const double global_batch =
      static_cast<double>(config_.data.loader.batch_size) * state_.world_size;
  return config_.optim.lr * global_batch / 256.0;
}

absl::Status ContrastiveTask::Build(const RunContext& run) {
  device_ = run.device;
  bf16_ = run.bf16;
  state_.world_size = run.distributed.world_size;
  state_.seed = config_.seed;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  config_.optim.schedule.base_lr = BaseLr();
  // Seeded construction (the heads draw from the global generator), then MoCo v3's ViT
  // initialisation: the same config gives the same initial weights on every rank.
  torch::manual_seed(config_.seed);
  model_ = MocoV3(config_.model);
  model_->InitializeMocoV3(config_.seed);
  model_->to(device_);
  model_->train();
  trainable_ = model_->TrainableParameters();
  const auto options = torch::optim::AdamWOptions(config_.optim.schedule.base_lr)
                           .betas(std::make_tuple(config_.optim.betas[0], config_.optim.betas[1]))
                           .eps(config_.optim.eps)
                           .weight_decay(config_.optim.weight_decay);
  optimizer_ = std::make_unique<ForeachAdamW>(trainable_, options);
  // Per image: both views through the base encoder (forward and backward) and the momentum
  // encoder (forward), plus the predictor (negligible).
  flops_per_image_ = 2 * 4 * MocoEncoderForwardFlops(config_.model);
  return absl::OkStatus();
}

absl::Status ContrastiveTask::Connect(DistributedContext* group) {
  group_ = group;
  RETURN_IF_ERROR(BroadcastModuleState(*group_, *model_));
  ASSIGN_OR_RETURN(GradientAllReducer reducer, GradientAllReducer::Create(group_, trainable_));
  reducer_ = std::make_unique<GradientAllReducer>(std::move(reducer));
  config_.data.loader.rank = group_->rank();
  config_.data.loader.world_size = group_->world_size();
  ASSIGN_OR_RETURN(dataset_, OpenDataset(config_.data, config_.seed));
  ASSIGN_OR_RETURN(loader_, DataLoader::Create(dataset_, config_.data.loader, state_.loader));
  if (config_.eval.enabled) {
    absl::StatusOr<std::shared_ptr<const Dataset>> held_out =
        OpenDataset(config_.eval_data, MixSeed(config_.seed, kEvalDataStream));
    if (!held_out.ok()) {
      return absl::Status(held_out.status().code(),
                          absl::StrCat("eval.path: ", held_out.status().message()));
    }
    held_out_ = *held_out;
    if (dataset_->num_classes() < 2 || held_out_->num_classes() != dataset_->num_classes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "eval: the k-NN monitor needs labelled data with the same classes in ", dataset_->name(),
          " (", dataset_->num_classes(), " classes) and ", held_out_->name(), " (",
          held_out_->num_classes(), "); set eval.enabled: false for unlabelled data"));
    }
    const int64_t train_images = config_.eval.train_images > 0
                                     ? std::min(config_.eval.train_images, dataset_->size())
                                     : dataset_->size();
    RETURN_IF_ERROR(config_.eval.knn.Validate(train_images));
  }
  return absl::OkStatus();
}

std::string ContrastiveTask::DescribeStart(JsonWriter* start) {
  int64_t parameters = 0, trainable = 0;
  for (const auto& p : model_->base_encoder()->parameters()) parameters += p.numel();
  for (const auto& p : trainable_) trainable += p.numel();
  const MocoV3Config& m = config_.model;
  start->Add("parameters", parameters)
      .Add("trainable_parameters", trainable)
      .Add("dataset", dataset_->name())
      .Add("dataset_size", dataset_->size())
      .Add("global_batch", config_.data.loader.batch_size * state_.world_size)
      .Add("base_lr", config_.optim.schedule.base_lr)
      .Add("batch_norm", config_.moco.batch_norm);
  return absl::StrFormat(
      "MoCo v3 ViT %d px / patch %d, %d wide, %d blocks (%d parameters per encoder, %d trained), "
      "projector %d-%d, %s (%d images), global batch %d, lr %.3g, T %.3g, BatchNorm %s",
      m.vit.img_size, m.vit.patch_size, m.vit.embed_dim, m.vit.depth, parameters, trainable,
      m.mlp_dim, m.dim, dataset_->name(), dataset_->size(),
      config_.data.loader.batch_size * state_.world_size, config_.optim.schedule.base_lr,
      config_.moco.temperature, config_.moco.batch_norm);
}

absl::Status ContrastiveTask::Restore(const RestoredCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(ContrastiveState stored,
                   StateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  RETURN_IF_ERROR(CheckResumeWorldSize(stored, state_.world_size, dir));
  ASSIGN_OR_RETURN(const std::string* stored_config,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  ASSIGN_OR_RETURN(ContrastiveJobConfig previous,
                   ParseContrastiveConfig(*stored_config, dir + "/config.yaml",
                                          /*check_paths=*/false));
  if (const std::string field = DifferentModelField(previous.model, config_.model);
      !field.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.", field, ": checkpoint ", dir, " holds a model with another ", field,
        " than this config's; resume with the checkpoint's config.yaml or start a new run"));
  }
  stored.config_sha256 = state_.config_sha256;
  state_ = stored;
  RETURN_IF_ERROR(RestoreModelAndOptimizer(checkpoint.files, dir, *model_, *optimizer_));
  return absl::OkStatus();
}

absl::StatusOr<CheckpointFiles> ContrastiveTask::CheckpointContents(bool final) {
  state_.loader = loader_->position();
  CheckpointFiles files;
  if (!group_->is_main()) return files;
  RETURN_IF_ERROR(AddModelAndOptimizer(*model_, *optimizer_, &files));
  files[kConfigFile] = config_.source_text;
  state_.final = final;
  files[kTrainerStateFile] = StateToJson(state_);
  return files;
}

absl::StatusOr<double> ContrastiveTask::ForwardLoss(const Batch& batch) {
  const double lr = config_.optim.schedule.At(state_.step);
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  const double m = config_.moco.MomentumAt(state_.step, config_.train.max_steps);
  ContrastiveLossOptions options;
  options.temperature = config_.moco.temperature;
  options.rank = group_->rank();
  options.world_size = group_->world_size();
  options.sync_batch_norm = config_.moco.batch_norm == "sync";
  const torch::Tensor view1 = batch.views[0].to(device_);
  const torch::Tensor view2 = batch.views[1].to(device_);
  {
    AutocastGuard autocast(bf16_, device_);
    loss_ = model_->Loss(view1, view2, m, options,
                         group_->is_distributed() ? SumOverRanks(group_) : RankSum());
  }
  loss_ = loss_.to(torch::kFloat32);
  loss_value_ = loss_.item<double>();
  return loss_value_;
}

absl::Status ContrastiveTask::Update() {
  optimizer_->zero_grad();
  loss_.backward();
  RETURN_IF_ERROR(reducer_->AllReduce());
  // Without clipping the norm is still measured (an infinite bound never scales).
  const double bound = config_.optim.grad_clip > 0 ? config_.optim.grad_clip
                                                   : std::numeric_limits<double>::infinity();
  const double grad_norm = ClipGradNorm(trainable_, bound);
  optimizer_->step();
  window_.loss += loss_value_;
  window_.grad_norm += grad_norm;
  loss_ = torch::Tensor();
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ContrastiveTask::Metrics(const MetricWindow& window,
                                                     JsonWriter* event) {
  const double n = static_cast<double>(window.steps);
  ASSIGN_OR_RETURN(std::vector<double> means, group_->AllReduceMean({window_.loss / n}));
  const double images_per_second = window.images / window.seconds;
  const double tflops = images_per_second / group_->world_size() * flops_per_image_ / 1e12;
  const double lr = config_.optim.schedule.At(state_.step - 1);
  const double m = config_.moco.MomentumAt(state_.step - 1, config_.train.max_steps);
  event->Add("loss", means[0])
      .Add("lr", lr)
      .Add("momentum", m)
      .Add("grad_norm", window_.grad_norm / n)
      .Add("tflops_per_device", tflops);
  if (config_.train.peak_tflops > 0) event->Add("mfu", tflops / config_.train.peak_tflops);
  const std::string summary =
      absl::StrFormat("loss %.4f  lr %.2e  momentum %.5f  grad_norm %.3f  %.3f TFLOP/s", means[0],
                      lr, m, window_.grad_norm / n, tflops);
  window_ = ContrastiveWindow();
  return summary;
}

EvaluationPolicy ContrastiveTask::evaluation() const {
  EvaluationPolicy policy;
  if (!config_.eval.enabled) return policy;
  policy.order = EvalOrder::kBeforeCheckpoint;
  policy.every = config_.eval.every;
  policy.at_start = config_.eval.at_start;
  return policy;
}

absl::Status ContrastiveTask::Evaluate() {
  const int64_t train_images = config_.eval.train_images > 0
                                   ? std::min(config_.eval.train_images, dataset_->size())
                                   : dataset_->size();
  const int64_t held_images = config_.eval.max_images > 0
                                  ? std::min(config_.eval.max_images, held_out_->size())
                                  : held_out_->size();
  const TransformOptions& view = config_.eval_data.loader.transform;
  std::unique_ptr<FeatureBackbone> backbone = TimmVitClsBackbone(model_->base_encoder());
  const bool training = model_->is_training();
  model_->eval();
  FeatureSet train, test;
  absl::Status status = [&]() -> absl::Status {
    AutocastGuard autocast(bf16_, device_);
    int64_t done = 0;
    auto heartbeat = [&](int64_t images) { progress_.Heartbeat("eval", done + images); };
    ASSIGN_OR_RETURN(train,
                     ExtractFeaturesOverRanks(*backbone, *dataset_, train_images, view,
                                              config_.eval.batch_size, device_, group_, heartbeat));
    done = train_images;
    ASSIGN_OR_RETURN(test,
                     ExtractFeaturesOverRanks(*backbone, *held_out_, held_images, view,
                                              config_.eval.batch_size, device_, group_, heartbeat));
    return absl::OkStatus();
  }();
  model_->train(training);
  RETURN_IF_ERROR(status);
  ASSIGN_OR_RETURN(ReadoutScore score,
                   KnnScore(train.features[0], train.labels, test.features[0], test.labels,
                            dataset_->num_classes(), config_.eval.knn));
  state_.monitor.step = state_.step;
  state_.monitor.knn_top1 = score.top1;
  state_.monitor.knn_top5 = score.top5;
  state_.monitor.images = score.images;
  state_.monitor.train_images = train.labels.size(0);
  JsonWriter event;
  event.Add("event", trainer_protocol::kEventEval)
      .Add("step", state_.step)
      .Add("eval_top1", score.top1)
      .Add("eval_top5", score.top5)
      .Add("eval_knn_top1", score.top1)
      .Add("eval_knn_top5", score.top5)
      .Add("eval_images", score.images)
      .Add("eval_train_images", state_.monitor.train_images);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "eval at step %d: k-NN top-1 %.2f%%  top-5 %.2f%%  (%d held-out images against %d "
      "training images, k %d, T %.3g)",
      state_.step, score.top1, score.top5, score.images, state_.monitor.train_images,
      config_.eval.knn.k, config_.eval.knn.temperature));
  return absl::OkStatus();
}

void ContrastiveTask::AddResult(JsonWriter* done) {
  if (state_.monitor.step < 0) return;
  done->Add("eval_step", state_.monitor.step)
      .Add("eval_top1", state_.monitor.knn_top1)
      .Add("eval_knn_top1", state_.monitor.knn_top1)
      .Add("eval_knn_top5", state_.monitor.knn_top5);
}

}  // namespace

absl::StatusOr<TrainingResult> RunContrastiveJob(const ContrastiveJobConfig& config,
                                                 const ContrastiveRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  ContrastiveTask task(config, options.progress);
  return RunTrainingLoop(
      task, LoopOptionsFor(kKind, config.threads, config.train, config.faults, options.resume_from,
                           options.progress, config.source_text));
}

absl::StatusOr<LoadedContrastive> LoadContrastiveCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolveCheckpoint(path, nullptr));
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* config_text,
                   CheckpointFile(checkpoint.files, kConfigFile, dir));
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(ContrastiveState state,
                   StateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  ASSIGN_OR_RETURN(const std::string* model_bytes,
                   CheckpointFile(checkpoint.files, kModelFile, dir));
  LoadedContrastive loaded;
  ASSIGN_OR_RETURN(loaded.config, ParseContrastiveConfig(*config_text, dir + "/config.yaml",
                                                         /*check_paths=*/false));
  loaded.step = state.step;
  loaded.checkpoint_dir = dir;
  RETURN_IF_ERROR(TorchCall(absl::StrCat("loading ", dir), [&]() -> absl::Status {
    loaded.model = MocoV3(loaded.config.model);
    RETURN_IF_ERROR(
        DeserializeModule(*model_bytes, *loaded.model, absl::StrCat(dir, "/", kModelFile)));
    loaded.model->eval();
    return absl::OkStatus();
  }));
  return loaded;
}

}  // namespace peco::trainer
