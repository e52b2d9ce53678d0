#include "trainer/tasks/readout_task.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_writer.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/trainer_protocol.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/checkpoint_lookup.h"
#include "trainer/engine/distributed.h"
#include "trainer/engine/distributed_module.h"
#include "trainer/engine/runtime.h"
#include "trainer/engine/training_loop.h"
#include "trainer/io/torch_file.h"
#include "trainer/tasks/eval_backbone.h"
#include "trainer/tasks/eval_splits.h"
#include "trainer/tasks/model_section.h"
#include "trainer/tasks/readout_features.h"
#include "trainer/tasks/run_setup.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kReadoutFile[] = "readout.pt";
constexpr char kKind[] = "linear_probe";

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::StatusOr<std::string> SerializeReadout(const LinearReadout& readout) {
  return EncodeTensorDict({{"mean", readout.mean},
                           {"std", readout.std},
                           {"weight", readout.weight},
                           {"bias", readout.bias}},
                          kReadoutFile);
}

// The readout of `bytes` (a checkpoint's readout.pt, `what`): its four tensors, consistent with
// each other (DataLoss naming the file otherwise).
absl::StatusOr<LinearReadout> DeserializeReadout(const std::string& bytes,
                                                 const std::string& what) {
  ASSIGN_OR_RETURN(NamedTensors tensors, DecodeTensorDict(bytes, what));
  LinearReadout readout;
  std::map<std::string, torch::Tensor*> slots = {{"mean", &readout.mean},
                                                 {"std", &readout.std},
                                                 {"weight", &readout.weight},
                                                 {"bias", &readout.bias}};
  for (auto& [name, tensor] : tensors) {
    auto it = slots.find(name);
    if (it == slots.end() || it->second->defined()) {
      return absl::DataLossError(absl::StrCat(what, ": unexpected tensor '", name, "'"));
    }
    *it->second = tensor;
  }
  for (const auto& [name, slot] : slots) {
    if (!slot->defined())
      return absl::DataLossError(absl::StrCat(what, ": no tensor '", name, "'"));
  }
  const int64_t dim = readout.weight.dim() == 2 ? readout.weight.size(1) : -1;
  if (dim < 0 || readout.bias.dim() != 1 || readout.bias.size(0) != readout.weight.size(0) ||
      readout.mean.numel() != dim || readout.std.numel() != dim) {
    return absl::DataLossError(
        absl::StrCat(what, ": the readout's weight, bias, mean and std do not fit together"));
  }
  return readout;
}

class ReadoutTask : public TrainingTask {
 public:
  ReadoutTask(const EvalJobConfig& config, ProgressSink* progress)
      : config_(config), progress_(*progress) {}

  absl::Status Build(const RunContext& run) override;
  absl::Status Restore(const RestoredCheckpoint& checkpoint) override;
  absl::Status Connect(DistributedContext* group) override;
  DataLoader* loader() override { return nullptr; }  // the feature pass reads the images
  int64_t step() const override { return state_.step; }
  std::string DescribeStart(JsonWriter* start) override;
  absl::StatusOr<double> ForwardLoss(const Batch& batch) override;
  absl::Status Update() override;
  absl::StatusOr<std::string> Metrics(const MetricWindow& window, JsonWriter* event) override;
  absl::StatusOr<CheckpointFiles> CheckpointContents(bool final) override;
  EvaluationPolicy evaluation() const override { return {EvalOrder::kBeforeCheckpoint, 0}; }
  absl::Status Evaluate() override;
  int64_t evaluated_step() const override { return state_.eval.step; }
  void AddResult(JsonWriter* done) override;

  const EvalState& state() const { return state_; }

 private:
  // What the features of `split` depend on, hashed: the cache's key.
  std::string FeatureKey(const std::string& split, const Dataset& dataset, int64_t n) const;
  // The features of images [0, n) of `dataset`, from the cache when every rank has it for this
  // key, else computed over the ranks (rank 0 then writes the cache). Collective.
  absl::StatusOr<FeatureSet> Features(const std::string& split, const Dataset& dataset, int64_t n,
                                      const TransformOptions& view, bool* cached);
  void AddEvalFields(JsonWriter* event) const;

  EvalJobConfig config_;  // a copy: the backbone resolves the model into it
  ProgressSink& progress_;
  torch::Device device_{torch::kCPU};
  bool bf16_ = false;  // the feature pass under bf16 autocast (train.precision)
  DistributedContext* group_ = nullptr;
  EvalSplits splits_;
  // The evaluation view every image is read through (the pixel backbone keeps greyscale images
  // one channel: replicated channels would only triple its features).
  TransformOptions view_;
  BeitClassifier model_{nullptr};  // null for the pixel backbone
  std::unique_ptr<FeatureBackbone> backbone_;
  EvalState state_;

  FeatureSet train_, test_;
  LinearReadout linear_;
  std::string restored_readout_;  // readout.pt of a restored checkpoint
  double feature_seconds_ = 0, fit_seconds_ = 0;
  bool features_cached_ = false;
};

absl::Status ReadoutTask::Build(const RunContext& run) {
  ASSIGN_OR_RETURN(state_.backbone, ResolveEvalBackbone(&config_, &progress_));
  state_.kind = kKind;
  state_.world_size = run.distributed.world_size;
  state_.config_sha256 = Sha256Hex(config_.source_text);
  state_.pooling = config_.readout.pooling;
  state_.feature_norm = config_.readout.feature_norm;
  device_ = run.device;
  bf16_ = run.bf16 && state_.backbone.kind != "pixels";
  // The training images are read once, through the evaluation view: their features are cached.
  view_ = config_.eval_data.loader.transform;
  if (state_.backbone.kind == "pixels") view_.to_rgb = false;
  DataConfig train = config_.data;
  train.loader.transform = view_;
  ASSIGN_OR_RETURN(splits_, OpenEvalSplits(train, config_));
  state_.num_classes = splits_.classes;

  const int64_t n = splits_.train->size();
  const ReadoutConfig& r = config_.readout;
  if (r.validation_images >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("readout.validation_images: expected fewer than the ", n, " training images (",
                     splits_.train->name(), "), got ", r.validation_images));
  }
  if (r.knn.k > n - r.validation_images) {
    return absl::InvalidArgumentError(
        absl::StrCat("readout.knn.k: expected at most ", n - r.validation_images,
                     " (the training images less readout.validation_images), got ", r.knn.k));
  }
  state_.model = FinetuneConfigFrom(config_.model, 0);
  RETURN_IF_ERROR(state_.model.Validate("model."));
  if (state_.backbone.kind == "pixels") {
    backbone_ = PixelBackbone();
    return absl::OkStatus();
  }
  torch::manual_seed(config_.seed);  // the same random backbone on every rank and every attempt
  model_ = BeitClassifier(state_.model);
  RETURN_IF_ERROR(LoadBackboneInto(state_.backbone, model_));
  model_->to(device_);
  state_.readout.blocks = config_.ReadoutBlocks();
  ASSIGN_OR_RETURN(FeaturePooling pooling,
                   ParseFeaturePooling(config_.readout.pooling, "readout.pooling"));
  ASSIGN_OR_RETURN(backbone_, BeitBackbone(model_, state_.readout.blocks, pooling));
  return absl::OkStatus();
}

absl::Status ReadoutTask::Restore(const RestoredCheckpoint& checkpoint) {
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(EvalState stored, ReadResumedEvalState(checkpoint, state_));
  if (stored.pooling != state_.pooling || stored.feature_norm != state_.feature_norm ||
      stored.readout.blocks != state_.readout.blocks ||
      !SameClassifier(stored.model, state_.model) || stored.num_classes != state_.num_classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--resume: checkpoint ", dir,
        " read out other blocks, pooling, feature_norm, model or classes than this config; resume "
        "with the checkpoint's config.yaml and data"));
  }
  RETURN_IF_ERROR(CheckResumeWorldSize(stored, state_.world_size, dir));
  ASSIGN_OR_RETURN(const std::string* readout, CheckpointFile(checkpoint.files, kReadoutFile, dir));
  restored_readout_ = *readout;
  ASSIGN_OR_RETURN(linear_,
                   DeserializeReadout(restored_readout_, absl::StrCat(dir, "/", kReadoutFile)));
  const EvalBackboneSource backbone = state_.backbone;
  state_ = stored;
  state_.backbone = backbone;
  return absl::OkStatus();
}

absl::Status ReadoutTask::Connect(DistributedContext* group) {
  group_ = group;
  if (model_) RETURN_IF_ERROR(BroadcastModuleState(*group_, *model_));
  return absl::OkStatus();
}

std::string ReadoutTask::DescribeStart(JsonWriter* start) {
  const bool random = state_.backbone.kind == "random";
  start->Add("dataset", splits_.train->name())
      .Add("dataset_size", splits_.train->size())
      .Add("eval_dataset", splits_.held_out->name())
      .Add("eval_dataset_size", splits_.held_out->size())
      .Add("num_classes", splits_.classes)
      .Add("backbone", state_.backbone.kind)
      .Add("random_backbone", random)
      .Add("backbone_source", state_.backbone.path)
      .Add("backbone_sha256", state_.backbone.sha256)
      .Add("readout_blocks", state_.readout.blocks)
      .Add("pooling", state_.pooling);
  if (random) {
    progress_.Log(absl::StrCat(
        "backbone: RANDOMLY INITIALISED (seed ", config_.seed,
        "): this run is the random-backbone floor, not an evaluation of a pre-trained model"));
  } else if (state_.backbone.kind == "pixels") {
    progress_.Log("backbone: PIXELS, the image itself as the feature vector: the raw-pixel floor");
  } else {
    progress_.Log(absl::StrCat("backbone: ", state_.backbone.kind, " ", state_.backbone.path,
                               " (sha256 ", state_.backbone.sha256, ")"));
  }
  return absl::StrFormat(
      "readouts of %s features (%s), %s (%d images, %d classes), eval on %s (%d images)",
      state_.backbone.kind,
      state_.readout.blocks.empty()
          ? std::string("pixels")
          : absl::StrCat("blocks ", absl::StrJoin(state_.readout.blocks, ","), ", ",
                         state_.pooling),
      splits_.train->name(), splits_.train->size(), splits_.classes, splits_.held_out->name(),
      splits_.held_out->size());
}

std::string ReadoutTask::FeatureKey(const std::string& split, const Dataset& dataset,
                                    int64_t n) const {
  const TransformOptions& view = view_;
  return Sha256Hex(absl::StrCat(
      "peco readout features v1|", split, "|", state_.backbone.kind, "|", state_.backbone.sha256,
      "|seed ", config_.seed, "|", BeitConfigToJson(state_.model), "|blocks ",
      absl::StrJoin(state_.readout.blocks, ","), "|", state_.pooling, "|size ",
      absl::StrJoin(view.output_sizes, ","), "|crop ", view.center_crop_fraction, "|rgb ",
      view.to_rgb, "|bf16 ", bf16_, "|mean ", absl::StrJoin(view.mean, ","), "|std ",
      absl::StrJoin(view.std, ","), "|", dataset.name(), "|", dataset.size(), "|labels_per_class ",
      config_.data.labels_per_class, "|n ", n));
}

absl::StatusOr<FeatureSet> ReadoutTask::Features(const std::string& split, const Dataset& dataset,
                                                 int64_t n, const TransformOptions& view,
                                                 bool* cached) {
  const std::string path =
      (fs::path(config_.train.output_dir) / "features" / absl::StrCat(split, ".pt")).string();
  const std::string key = FeatureKey(split, dataset, n);
  absl::StatusOr<FeatureSet> loaded = LoadFeatureCache(path, key);
  if (!loaded.ok() && loaded.status().code() != absl::StatusCode::kNotFound) {
    progress_.Log(absl::StrCat("features of ", split, ": the cache is unreadable, computing them ",
                               "again: ", loaded.status().message()));
  }
  // Every rank takes the cache, or none does: the computation is collective.
  double have = loaded.ok() ? 1.0 : 0.0;
  if (group_->is_distributed()) {
    ASSIGN_OR_RETURN(std::vector<double> mean, group_->AllReduceMean({have}));
    have = mean[0];
  }
  if (have == 1.0) {
    *cached = true;
    progress_.Log(absl::StrCat("features of ", split, " (", loaded->labels.size(0),
                               " images): from the cache ", path));
    return loaded;
  }
  *cached = false;
  const std::string phase = absl::StrCat("features:", split);
  AutocastGuard autocast(bf16_, device_);
  ASSIGN_OR_RETURN(
      FeatureSet set,
      ExtractFeaturesOverRanks(*backbone_, dataset, n, view, config_.eval.batch_size, device_,
                               group_, [&](int64_t done) { progress_.Heartbeat(phase, done); }));
  if (set.unreadable > 0) {
    progress_.Log(
        absl::StrCat("features of ", split, ": ", set.unreadable, " unreadable images skipped"));
  }
  if (group_->is_main()) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    absl::Status saved = SaveFeatureCache(set, key, path);
    // The cache saves time on a restart; the readouts do not need it.
    if (!saved.ok()) progress_.Log(absl::StrCat("feature cache not written: ", saved.message()));
  }
  return set;
}

absl::StatusOr<double> ReadoutTask::ForwardLoss(const Batch&) {
  const auto features_started = Clock::now();
  const TransformOptions& view = view_;
  int64_t held_out = splits_.held_out->size();
  if (config_.eval.max_images > 0) held_out = std::min(held_out, config_.eval.max_images);
  bool train_cached = false, test_cached = false;
  ASSIGN_OR_RETURN(train_,
                   Features("train", *splits_.train, splits_.train->size(), view, &train_cached));
  ASSIGN_OR_RETURN(test_, Features("test", *splits_.held_out, held_out, view, &test_cached));
  features_cached_ = train_cached && test_cached;
  feature_seconds_ = SecondsSince(features_started);
  for (const torch::Tensor& f : train_.features) {
    if (!torch::isfinite(f).all().item<bool>()) {
      return absl::FailedPreconditionError(
          "the backbone's features of the training images are not finite");
    }
  }

  const auto fit_started = Clock::now();
  const ReadoutConfig& r = config_.readout;
  const int64_t n = train_.labels.size(0);
  if (r.validation_images >= n || r.knn.k > n - r.validation_images) {
    return absl::InvalidArgumentError(absl::StrCat(
        "readout.validation_images: ", n, " training images could be read, too few for ",
        r.validation_images, " validation images and readout.knn.k ", r.knn.k));
  }
  ReadoutResult& result = state_.readout;
  result.train_images = n;
  size_t best = 0;
  if (train_.features.size() > 1) {
    progress_.Heartbeat("fit:block", 0);
    ASSIGN_OR_RETURN(FeatureChoice choice,
                     ChooseFeatureSet(train_.features, train_.labels, splits_.classes,
                                      r.validation_images, r.validation_seed, r.knn));
    best = choice.best;
    result.block_validation_top1 = choice.validation_top1;
  } else {
    result.block_validation_top1.clear();
  }
  result.block = result.blocks.empty() ? 0 : result.blocks[best];
  LinearReadoutOptions linear = r.linear;
  int64_t evaluations = 0;  // over every fit: the heartbeat's count only grows
  linear.on_progress = [&](int64_t) { progress_.Heartbeat("fit:linear", evaluations += 20); };
  linear.validation_fraction = static_cast<double>(r.validation_images) / static_cast<double>(n);
  ASSIGN_OR_RETURN(linear_,
                   FitLinearReadout(train_.features[best], train_.labels, splits_.classes, linear));
  result.l2 = linear_.l2;
  // The block read out from here on.
  train_.features = {train_.features[best]};
  test_.features = {test_.features[best]};
  fit_seconds_ = SecondsSince(fit_started);
  return linear_.train_loss;
}

absl::Status ReadoutTask::Update() {
  ++state_.step;
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadoutTask::Metrics(const MetricWindow&, JsonWriter* event) {
  event->Add("loss", linear_.train_loss)
      .Add("feature_seconds", feature_seconds_)
      .Add("fit_seconds", fit_seconds_)
      .Add("features_cached", features_cached_ ? 1 : 0)
      .Add("linear_iterations", linear_.iterations);
  std::string blocks;
  for (size_t i = 0; i < state_.readout.block_validation_top1.size(); ++i) {
    absl::StrAppendFormat(&blocks, "%s%d: %.2f%%", i == 0 ? "" : ", ", state_.readout.blocks[i],
                          state_.readout.block_validation_top1[i]);
  }
  return absl::StrFormat("features %.1f s%s, fits %.1f s; %s; linear readout l2 %g, objective %.4f",
                         feature_seconds_, features_cached_ ? " (cached)" : "", fit_seconds_,
                         blocks.empty() ? absl::StrCat("block ", state_.readout.block)
                                        : absl::StrCat("k-NN validation top-1 by block {", blocks,
                                                       "} -> block ", state_.readout.block),
                         linear_.l2, linear_.train_loss);
}

absl::Status ReadoutTask::Evaluate() {
  const torch::Tensor& train = train_.features[0];
  const torch::Tensor& test = test_.features[0];
  ASSIGN_OR_RETURN(ReadoutScore knn, KnnScore(train, train_.labels, test, test_.labels,
                                              splits_.classes, config_.readout.knn));
  torch::Tensor logits = linear_.Logits(test);
  const ReadoutScore linear = ScoreLogits(logits, test_.labels);
  state_.eval.step = state_.step;
  state_.eval.top1 = linear.top1;
  state_.eval.top5 = linear.top5;
  state_.eval.loss = torch::nn::functional::cross_entropy(logits, test_.labels).item<double>();
  state_.eval.images = linear.images;
  state_.readout.knn_top1 = knn.top1;
  state_.readout.knn_top5 = knn.top5;
  JsonWriter event;
  event.Add("event", trainer_protocol::kEventEval).Add("step", state_.step);
  AddEvalFields(&event);
  for (size_t i = 0; i < state_.readout.block_validation_top1.size(); ++i) {
    event.Add(absl::StrCat("validation_knn_top1_block_", state_.readout.blocks[i]),
              state_.readout.block_validation_top1[i]);
  }
  event.Add("backbone", state_.backbone.kind);
  progress_.Emit(event);
  progress_.Log(absl::StrFormat(
      "readouts of %s%s on %d images: linear top-1 %.2f%% top-5 %.2f%% (l2 %g)  k-NN top-1 "
      "%.2f%% top-5 %.2f%% (k %d, T %g)",
      state_.backbone.kind,
      state_.readout.block > 0 ? absl::StrCat(" block ", state_.readout.block) : "", linear.images,
      linear.top1, linear.top5, linear_.l2, knn.top1, knn.top5, config_.readout.knn.k,
      config_.readout.knn.temperature));
  return absl::OkStatus();
}

void ReadoutTask::AddEvalFields(JsonWriter* event) const {
  event->Add("eval_top1", state_.eval.top1)
      .Add("eval_top5", state_.eval.top5)
      .Add("eval_loss", state_.eval.loss)
      .Add("eval_linear_top1", state_.eval.top1)
      .Add("eval_linear_top5", state_.eval.top5)
      .Add("eval_knn_top1", state_.readout.knn_top1)
      .Add("eval_knn_top5", state_.readout.knn_top5)
      .Add("eval_block", state_.readout.block)
      .Add("eval_l2", state_.readout.l2)
      .Add("eval_images", state_.eval.images);
}

absl::StatusOr<CheckpointFiles> ReadoutTask::CheckpointContents(bool final) {
  CheckpointFiles files;
  if (!group_->is_main()) return files;
  if (linear_.weight.defined()) {
    ASSIGN_OR_RETURN(files[kReadoutFile], SerializeReadout(linear_));
  } else {
    files[kReadoutFile] = restored_readout_;
  }
  files[kConfigFile] = config_.source_text;
  state_.seed = config_.seed;
  state_.final = final;
  files[kTrainerStateFile] = EvalStateToJson(state_);
  return files;
}

void ReadoutTask::AddResult(JsonWriter* done) {
  if (state_.eval.step < 0) return;
  done->Add("eval_step", state_.eval.step);
  AddEvalFields(done);
}

}  // namespace

absl::StatusOr<EvalRunResult> RunReadoutJob(const EvalJobConfig& config,
                                            const EvalRunOptions& options) {
  if (options.progress == nullptr) return absl::InvalidArgumentError("progress sink is required");
  ReadoutTask task(config, options.progress);
  ASSIGN_OR_RETURN(TrainingResult run,
                   RunTrainingLoop(task, LoopOptionsFor(config.kind, config.threads, config.train,
                                                        config.faults, options.resume_from,
                                                        options.progress, config.source_text)));
  EvalRunResult result;
  static_cast<TrainingResult&>(result) = run;
  result.eval = task.state().eval;
  result.readout = task.state().readout;
  return result;
}

absl::StatusOr<LoadedReadout> LoadReadoutCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(RestoredCheckpoint checkpoint, ResolveCheckpoint(path, nullptr));
  const std::string& dir = checkpoint.dir;
  ASSIGN_OR_RETURN(const std::string* state_json,
                   CheckpointFile(checkpoint.files, kTrainerStateFile, dir));
  LoadedReadout loaded;
  loaded.checkpoint_dir = dir;
  ASSIGN_OR_RETURN(loaded.state,
                   EvalStateFromJson(*state_json, absl::StrCat(dir, "/", kTrainerStateFile)));
  if (loaded.state.kind != kKind) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, " holds a ", loaded.state.kind, " checkpoint, expected linear_probe"));
  }
  ASSIGN_OR_RETURN(const std::string* bytes, CheckpointFile(checkpoint.files, kReadoutFile, dir));
  ASSIGN_OR_RETURN(loaded.readout,
                   DeserializeReadout(*bytes, absl::StrCat(dir, "/", kReadoutFile)));
  return loaded;
}

}  // namespace peco::trainer
