#include "trainer/tasks/eval_task.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "trainer/data/random.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/distributed_module.h"
#include "trainer/engine/foreach_optim.h"
#include "trainer/engine/module_state.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/training_loop.h"
#include "trainer/tasks/eval_backbone.h"
#include "trainer/tasks/eval_splits.h"
#include "trainer/tasks/eval_state.h"
#include "trainer/tasks/readout_task.h"
#include "trainer/tasks/run_setup.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace fs = std::filesystem;
namespace {

constexpr uint64_t kDropPathStream = 0x44525054;  // "DRPT"

// Images [begin, end) of another dataset.
class RangeDataset : public Dataset {
 public:
  RangeDataset(std::shared_ptr<const Dataset> base, int64_t begin, int64_t end)
      : base_(std::move(base)), begin_(begin), end_(end) {}
  int64_t size() const override { return end_ - begin_; }
  int64_t num_classes() const override { return base_->num_classes(); }
  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(absl::StrCat("index ", index, " of ", size()));
    }
    return base_->Get(begin_ + index);
  }
  std::string name() const override {
    return absl::StrCat(base_->name(), "[", begin_, ":", end_, "]");
  }

 private:
  std::shared_ptr<const Dataset> base_;
  int64_t begin_, end_;
};

struct EvalWindow {
  double loss = 0, top1 = 0, grad_norm = 0;
};

class FinetuneTask : public TrainingTask {
 public:
  FinetuneTask(const EvalJobConfig& config, ProgressSink* progress)
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
    return {EvalOrder::kBeforeCheckpoint, config_.eval.every};
  }
  absl::Status Evaluate() override;
  int64_t evaluated_step() const override { return state_.eval.step; }
  void AddResult(JsonWriter* done) override;

  const EvalResult& last_eval() const { return state_.eval; }

 private:
  absl::Status BuildModel(int64_t classes);
  absl::Status EvaluateRange(int64_t begin, int64_t end, double sums[4]);
  torch::Tensor Logits(const torch::Tensor& images);

  EvalJobConfig config_;  // a copy: the backbone resolves the model into it
  ProgressSink& progress_;
  bool resuming_ = false;

  torch::Device device_{torch::kCPU};
  bool bf16_ = false;
  DistributedContext* group_ = nullptr;
  BeitClassifier model_{nullptr};
  std::vector<torch::Tensor> trainable_;
  std::vector<BeitParamGroup> groups_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<GradientAllReducer> reducer_;
  std::shared_ptr<const Dataset> dataset_, eval_dataset_;
  std::unique_ptr<DataLoader> loader_;
  EvalState state_;
  EvalWindow window_;
  // Between ForwardLoss and Update.
  torch::Tensor loss_, logits_, labels_;
  double loss_value_ = 0;
};

absl::Status FinetuneTask::BuildModel(int64_t classes) {
  state_.num_classes = classes;
  state_.input_mean = config_.mean;
  state_.input_std = config_.std;
  state_.model = FinetuneConfigFrom(config_.model, classes);
  RETURN_IF_ERROR(state_.model.Validate("model."));
  // Seeded construction: the same config gives the same initial weights on every rank.
  torch::manual_seed(config_.seed);
  model_ = BeitClassifier(state_.model);
  // A resumed run takes every weight from its checkpoint.
  if (!resuming_) RETURN_IF_ERROR(LoadBackboneInto(state_.backbone, model_));
  model_->to(device_);
  trainable_ = model_->parameters();
  groups_ = FinetuneParamGroups(model_, config_);
  const auto options = torch::optim::AdamWOptions(config_.optim.schedule.base_lr)
                           .betas(std::make_tuple(config_.optim.betas[0], config_.optim.betas[1]))
                           .eps(config_.optim.eps);
  optimizer_ = std::make_unique<ForeachAdamW>(ToAdamWParamGroups(groups_, options), options);
  return absl::OkStatus();
}

absl::Status FinetuneTask::Build(const RunContext& run) {
  resuming_ = run.resuming;
  ASSIGN_OR_RETURN(state_.backbone, ResolveEvalBackbone(&config_, &progress_));
  state_.kind = config_.kind;
  device_ = run.device;
  bf16_ = run.bf16;
  state_.world_size = run.distributed.world_size;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  ASSIGN_OR_RETURN(EvalSplits splits, OpenEvalSplits(config_.data, config_));
  dataset_ = splits.train;
  eval_dataset_ = splits.held_out;
  const int64_t classes = splits.classes;
  RETURN_IF_ERROR(BuildModel(classes));
  model_->train();
  return absl::OkStatus();
}

absl::Status FinetuneTask::Connect(DistributedContext* group) {
  group_ = group;
  RETURN_IF_ERROR(BroadcastModuleState(*group_, *model_));
  ASSIGN_OR_RETURN(GradientAllReducer reducer, GradientAllReducer::Create(group_, trainable_));
  reducer_ = std::make_unique<GradientAllReducer>(std::move(reducer));
  config_.data.loader.rank = group_->rank();
  config_.data.loader.world_size = group_->world_size();
  ASSIGN_OR_RETURN(loader_, DataLoader::Create(dataset_, config_.data.loader, state_.loader));
  return absl::OkStatus();
}

std::string FinetuneTask::DescribeStart(JsonWriter* start) {
  int64_t parameters = 0, trainable = 0;
  for (const auto& p : model_->parameters()) parameters += p.numel();
  for (const auto& p : trainable_) trainable += p.numel();
  const bool random = state_.backbone.kind == "random";
  start->Add("parameters", parameters)
      .Add("trainable_parameters", trainable)
      .Add("dataset", dataset_->name())
      .Add("dataset_size", dataset_->size())
      .Add("eval_dataset", eval_dataset_->name())
      .Add("eval_dataset_size", eval_dataset_->size())
      .Add("num_classes", dataset_->num_classes())
      .Add("backbone", state_.backbone.kind)
      .Add("random_backbone", random)
      .Add("backbone_source", state_.backbone.path)
      .Add("backbone_sha256", state_.backbone.sha256);
  if (random) {
    progress_.Log(absl::StrCat(
        "backbone: RANDOMLY INITIALISED (seed ", config_.seed,
        "), no backbone.checkpoint or backbone.weights given: this run is the random-backbone "
        "baseline, not an evaluation of a pre-trained model"));
    if (config_.optim.layer_decay < 1) {
      progress_.Log(absl::StrCat(
          "warning: optim.layer_decay ", config_.optim.layer_decay,
          " < 1 with a randomly initialised backbone scales the early blocks' learning rate down "
          "to ",
          std::pow(config_.optim.layer_decay, config_.model.depth + 1),
          "x: a from-scratch baseline trains with layer_decay 1.0 (DeiT's recipe)"));
    }
  } else {
    progress_.Log(absl::StrCat("backbone: ", state_.backbone.kind, " ", state_.backbone.path,
                               " (sha256 ", state_.backbone.sha256, ")"));
  }
  return absl::StrFormat(
      "%d parameters (%d trainable), %s (%d images, %d classes), eval on %s (%d images)",
      parameters, trainable, dataset_->name(), dataset_->size(), dataset_->num_classes(),
      eval_dataset_->name(), eval_dataset_->size());
}

absl::Status FinetuneTask::Restore(const RestoredCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(EvalState stored, ReadResumedEvalState(checkpoint, state_));
  if (!SameClassifier(stored.model, state_.model) || stored.num_classes != state_.num_classes) {
    return absl::InvalidArgumentError(
        absl::StrCat("--resume: checkpoint ", dir,
                     " holds a different model or class count than this config; "
                     "resume with the checkpoint's config.yaml and data"));
  }
  RETURN_IF_ERROR(CheckResumeWorldSize(stored, state_.world_size, dir));
  const EvalBackboneSource backbone = state_.backbone;
  state_.step = stored.step;
  state_.loader = stored.loader;
  state_.eval = stored.eval;
  state_.backbone = backbone;
  RETURN_IF_ERROR(RestoreModelAndOptimizer(checkpoint.files, dir, *model_, *optimizer_));
  return absl::OkStatus();
}

absl::StatusOr<CheckpointFiles> FinetuneTask::CheckpointContents(bool final) {
  state_.loader = loader_->position();
  CheckpointFiles files;
  if (!group_->is_main()) return files;
  RETURN_IF_ERROR(AddModelAndOptimizer(*model_, *optimizer_, &files));
  files[kConfigFile] = config_.source_text;
  state_.seed = config_.seed;
  state_.final = final;
  files[kTrainerStateFile] = EvalStateToJson(state_);
  return files;
}

torch::Tensor FinetuneTask::Logits(const torch::Tensor& images) {
  AutocastGuard autocast(bf16_, device_);
  return model_->forward(images).to(torch::kFloat32);
}

absl::StatusOr<double> FinetuneTask::ForwardLoss(const Batch& batch) {
  const double lr = config_.optim.schedule.At(state_.step);
  for (size_t g = 0; g < optimizer_->param_groups().size(); ++g) {
    optimizer_->param_groups()[g].options().set_lr(lr * groups_[g].lr_scale);
  }
  torch::manual_seed(MixSeed(config_.seed ^ kDropPathStream, static_cast<uint64_t>(state_.step),
                             static_cast<uint64_t>(group_->rank())));
  torch::Tensor images = batch.views[0].to(device_);
  labels_ = batch.labels.to(device_);
  logits_ = Logits(images);
  loss_ = torch::nn::functional::cross_entropy(
      logits_, labels_,
      torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(
          config_.optim.label_smoothing));
  loss_value_ = loss_.item<double>();
  return loss_value_;
}

absl::Status FinetuneTask::Update() {
  optimizer_->zero_grad();
  loss_.backward();
  RETURN_IF_ERROR(reducer_->AllReduce());
  // Without clipping the norm is still measured (an infinite bound never scales).
  const double bound = config_.optim.grad_clip > 0 ? config_.optim.grad_clip
                                                   : std::numeric_limits<double>::infinity();
  const double grad_norm = ClipGradNorm(trainable_, bound);
  optimizer_->step();

  window_.loss += loss_value_;
  window_.top1 += 100.0 * (logits_.argmax(-1) == labels_).to(torch::kFloat64).mean().item<double>();
  window_.grad_norm += grad_norm;
  loss_ = logits_ = labels_ = torch::Tensor();
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<std::string> FinetuneTask::Metrics(const MetricWindow& window, JsonWriter* event) {
  const double n = static_cast<double>(window.steps);
  ASSIGN_OR_RETURN(std::vector<double> means,
                   group_->AllReduceMean({window_.loss / n, window_.top1 / n}));
  const double lr = config_.optim.schedule.At(state_.step - 1);
  event->Add("loss", means[0])
      .Add("train_top1", means[1])
      .Add("lr", lr)
      .Add("grad_norm", window_.grad_norm / n);
  const std::string summary =
      absl::StrFormat("loss %.4f  train_top1 %.2f%%  lr %.2e  grad_norm %.3f", means[0], means[1],
                      lr, window_.grad_norm / n);
  window_ = EvalWindow();
  return summary;
}

// Adds {top-1 hits, top-k hits, summed loss, images} of images [begin, end) of the held-out set.
absl::Status FinetuneTask::EvaluateRange(int64_t begin, int64_t end, double sums[4]) {
  if (end <= begin) return absl::OkStatus();
  LoaderOptions options = config_.eval_data.loader;
  options.rank = 0;
  options.world_size = 1;
  ASSIGN_OR_RETURN(
      std::unique_ptr<DataLoader> loader,
      DataLoader::Create(std::make_shared<RangeDataset>(eval_dataset_, begin, end), options));
  const int64_t k = std::min<int64_t>(5, eval_dataset_->num_classes());
  const int64_t batches = (end - begin + options.batch_size - 1) / options.batch_size;
  for (int64_t b = 0; b < batches; ++b) {
    ASSIGN_OR_RETURN(Batch batch, loader->Next());
    {
      torch::NoGradGuard no_grad;
      torch::Tensor labels = batch.labels.to(device_);
      torch::Tensor logits = Logits(batch.views[0].to(device_));
      torch::Tensor topk = std::get<1>(logits.topk(k, -1));
      torch::Tensor hits = topk == labels.unsqueeze(1);
      sums[0] += hits.select(1, 0).sum().item<double>();
      sums[1] += hits.any(1).sum().item<double>();
      sums[2] += torch::nn::functional::cross_entropy(
                     logits, labels,
                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                     .item<double>();
      sums[3] += static_cast<double>(labels.size(0));
    }
    progress_.Heartbeat("eval", std::min(end - begin, (b + 1) * options.batch_size));
  }
  return absl::OkStatus();
}

absl::Status FinetuneTask::Evaluate() {
  int64_t n = eval_dataset_->size();
  if (config_.eval.max_images > 0) n = std::min(n, config_.eval.max_images);
  const int64_t world = group_->world_size(), rank = group_->rank();
  const int64_t shard = n / world;
  double sums[4] = {0, 0, 0, 0};
  model_->eval();
  absl::Status status = EvaluateRange(rank * shard, (rank + 1) * shard, sums);
  if (status.ok() && group_->is_main()) status = EvaluateRange(world * shard, n, sums);
  model_->train();
  RETURN_IF_ERROR(status);
  std::vector<double> totals(sums, sums + 4);
  if (group_->is_distributed()) {
    ASSIGN_OR_RETURN(std::vector<double> means, group_->AllReduceMean(totals));
    for (double& v : means) v *= static_cast<double>(world);
    totals = means;
  }
  const double images = std::max(totals[3], 1.0);
  state_.eval.step = state_.step;
  state_.eval.top1 = 100.0 * totals[0] / images;
  state_.eval.top5 = 100.0 * totals[1] / images;
  state_.eval.loss = totals[2] / images;
  state_.eval.images = static_cast<int64_t>(std::llround(totals[3]));
  JsonWriter event;
  event.Add("event", trainer_protocol::kEventEval)
      .Add("step", state_.step)
      .Add("eval_top1", state_.eval.top1)
      .Add("eval_top5", state_.eval.top5)
      .Add("eval_loss", state_.eval.loss)
      .Add("eval_images", state_.eval.images);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "eval at step %d: top-1 %.2f%%  top-5 %.2f%%  loss %.4f  (%d images)", state_.step,
      state_.eval.top1, state_.eval.top5, state_.eval.loss, state_.eval.images));
  return absl::OkStatus();
}

void FinetuneTask::AddResult(JsonWriter* done) {
  if (state_.eval.step < 0) return;
  done->Add("eval_step", state_.eval.step)
      .Add("eval_top1", state_.eval.top1)
      .Add("eval_top5", state_.eval.top5)
      .Add("eval_loss", state_.eval.loss);
}

}  // namespace

std::vector<BeitParamGroup> FinetuneParamGroups(const BeitClassifier& model,
                                                const EvalJobConfig& config) {
  return BeitParamGroups(*model, config.model.depth, config.optim.weight_decay,
                         config.optim.layer_decay);
}

absl::StatusOr<EvalRunResult> RunEvalJob(const EvalJobConfig& config,
                                         const EvalRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  if (config.linear_probe()) return RunReadoutJob(config, options);
  FinetuneTask task(config, options.progress);
  ASSIGN_OR_RETURN(TrainingResult run,
                   RunTrainingLoop(task, LoopOptionsFor(config.kind, config.threads, config.train,
                                                        config.faults, options.resume_from,
                                                        options.progress, config.source_text)));
  EvalRunResult result;
  static_cast<TrainingResult&>(result) = run;
  result.eval = task.last_eval();
  return result;
}

absl::StatusOr<LoadedEval> LoadEvalCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolveCheckpoint(path, nullptr));
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  ASSIGN_OR_RETURN(EvalState state,
                   EvalStateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  if (state.kind != "finetune") {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, " holds a ", state.kind,
        " checkpoint, expected finetune (a linear_probe's is read by LoadReadoutCheckpoint)"));
  }
  ASSIGN_OR_RETURN(const std::string* model_bytes,
                   CheckpointFile(checkpoint.files, kModelFile, dir));
  LoadedEval loaded;
  loaded.kind = state.kind;
  loaded.step = state.step;
  loaded.checkpoint_dir = dir;
  loaded.model_config = state.model;
  loaded.backbone = state.backbone.kind;
  loaded.backbone_source = state.backbone.path;
  loaded.backbone_sha256 = state.backbone.sha256;
  loaded.eval = state.eval;
  loaded.num_classes = state.num_classes;
  loaded.input_mean = state.input_mean;
  loaded.input_std = state.input_std;
  RETURN_IF_ERROR(TorchCall(absl::StrCat("loading ", dir), [&]() -> absl::Status {
    loaded.model = BeitClassifier(state.model);
    RETURN_IF_ERROR(
        DeserializeModule(*model_bytes, *loaded.model, absl::StrCat(dir, "/", kModelFile)));
    loaded.model->eval();
    return absl::OkStatus();
  }));
  return loaded;
}

}  // namespace peco::trainer
