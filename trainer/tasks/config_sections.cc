#include "trainer/tasks/config_sections.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"

namespace peco::trainer {
namespace {

// A preview row wider than this is unreadable and slows every checkpoint.
constexpr int kMaxPreviewImages = 64;

}  // namespace

absl::Status ReadDataSection(ConfigReader& r, DataConfig* data) {
  RETURN_IF_ERROR(
      r.ReadEnum("source", {"fashion_mnist", "image_folder", "synthetic"}, &data->source));
  RETURN_IF_ERROR(r.Read("path", &data->path));
  RETURN_IF_ERROR(r.ReadEnum("split", {"train", "test"}, &data->split));
  RETURN_IF_ERROR(r.ReadEnum("labels", {"auto", "folders", "none"}, &data->labels));
  RETURN_IF_ERROR(r.Read("image_size", &data->image_size));
  RETURN_IF_ERROR(r.Read("synthetic_size", &data->synthetic_size));
  RETURN_IF_ERROR(r.Read("labels_per_class", &data->labels_per_class));
  RETURN_IF_ERROR(r.Read("batch_size", &data->loader.batch_size));
  RETURN_IF_ERROR(r.Read("num_workers", &data->loader.num_threads));
  RETURN_IF_ERROR(r.Read("prefetch", &data->loader.prefetch_batches));
  return r.Finish();
}

absl::Status ReadTransformSection(ConfigReader& r, TransformOptions* t) {
  RETURN_IF_ERROR(r.Read("scale_min", &t->scale_min));
  RETURN_IF_ERROR(r.Read("scale_max", &t->scale_max));
  RETURN_IF_ERROR(r.Read("ratio_min", &t->ratio_min));
  RETURN_IF_ERROR(r.Read("ratio_max", &t->ratio_max));
  RETURN_IF_ERROR(r.Read("horizontal_flip", &t->horizontal_flip));
  RETURN_IF_ERROR(r.Read("brightness", &t->brightness));
  RETURN_IF_ERROR(r.Read("contrast", &t->contrast));
  RETURN_IF_ERROR(r.Read("saturation", &t->saturation));
  RETURN_IF_ERROR(r.Read("hue", &t->hue));
  RETURN_IF_ERROR(r.Read("jitter_probability", &t->jitter_probability));
  RETURN_IF_ERROR(r.Read("grayscale_probability", &t->grayscale_probability));
  RETURN_IF_ERROR(r.Read("blur_probability", &t->blur_probability));
  RETURN_IF_ERROR(r.Read("blur_sigma_min", &t->blur_sigma_min));
  RETURN_IF_ERROR(r.Read("blur_sigma_max", &t->blur_sigma_max));
  RETURN_IF_ERROR(r.Read("solarize_probability", &t->solarize_probability));
  return r.Finish();
}

bool IsDatasetPath(const std::string& source, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return true;
  return source == "image_folder" && std::filesystem::is_regular_file(path, ec);
}

absl::Status ValidateDataSection(const DataConfig& data, bool check_paths) {
  if (check_paths && data.source != "synthetic") {
    if (!IsDatasetPath(data.source, data.path)) {
      return absl::InvalidArgumentError(
          absl::StrCat("data.path: expected a readable directory for the ", data.source,
                       " dataset, got '", data.path, "'"));
    }
  }
  if (data.image_size < 8 || data.image_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.image_size: expected a value in [8, 4096], got ", data.image_size));
  }
  if (data.labels_per_class < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.labels_per_class: expected a value >= 0 (0 = every image), got ",
                     data.labels_per_class));
  }
  if (data.synthetic_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.synthetic_size: expected a value > 0, got ", data.synthetic_size));
  }
  if (absl::Status status = data.loader.Validate(); !status.ok()) {
    // LoaderOptions names its own fields; report the YAML keys they were read from.
    return absl::Status(
        status.code(),
        absl::StrReplaceAll(status.message(), {{"data.num_threads:", "data.num_workers:"},
                                               {"data.prefetch_batches:", "data.prefetch:"}}));
  }
  return absl::OkStatus();
}

absl::Status ReadTrainFields(ConfigReader& r, TrainConfig* t) {
  RETURN_IF_ERROR(r.Read("max_steps", &t->max_steps));
  RETURN_IF_ERROR(r.ReadEnum("precision", {"fp32", "bf16", "auto"}, &t->precision));
  RETURN_IF_ERROR(r.ReadEnum("device", {"cpu", "cuda"}, &t->device));
  RETURN_IF_ERROR(r.Read("log_every", &t->log_every));
  RETURN_IF_ERROR(r.Read("checkpoint_every", &t->checkpoint_every));
  RETURN_IF_ERROR(r.Read("keep_checkpoints", &t->keep_checkpoints));
  RETURN_IF_ERROR(r.Read("output_dir", &t->output_dir));
  std::string on_failure = "fail";
  RETURN_IF_ERROR(r.ReadEnum("on_checkpoint_failure", {"fail", "skip"}, &on_failure));
  RETURN_IF_ERROR(ParseCheckpointFailurePolicy(on_failure, &t->on_checkpoint_failure));
  RETURN_IF_ERROR(r.Read("max_skipped_checkpoints", &t->max_skipped_checkpoints));
  RETURN_IF_ERROR(r.Read("preview_images", &t->preview_images));
  RETURN_IF_ERROR(r.Read("collective_timeout", &t->collective_timeout));
  return absl::OkStatus();
}

absl::Status ValidateTrainSection(const TrainConfig& train) {
  if (train.max_steps <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_steps: expected a value > 0, got ", train.max_steps));
  }
  if (train.log_every <= 0)
    return absl::InvalidArgumentError("train.log_every: expected a value > 0");
  if (train.checkpoint_every <= 0) {
    return absl::InvalidArgumentError("train.checkpoint_every: expected a value > 0");
  }
  if (train.keep_checkpoints < 1) {
    return absl::InvalidArgumentError("train.keep_checkpoints: expected a value >= 1");
  }
  if (train.output_dir.empty())
    return absl::InvalidArgumentError("train.output_dir: expected a path");
  if (train.max_skipped_checkpoints < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("train.max_skipped_checkpoints: expected a value >= 0, got ",
                     train.max_skipped_checkpoints));
  }
  if (!(train.collective_timeout > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "train.collective_timeout: expected seconds > 0, got ", train.collective_timeout));
  }
  if (train.preview_images < 0 || train.preview_images > kMaxPreviewImages) {
    return absl::InvalidArgumentError(absl::StrCat("train.preview_images: expected a value in [0, ",
                                                   kMaxPreviewImages, "] (0 = no preview), got ",
                                                   train.preview_images));
  }
  return absl::OkStatus();
}

absl::Status ValidateNormalisation(const char* field, const std::vector<double>& values,
                                   bool positive) {
  if (values.size() != 1 && values.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": expected 1 or 3 values, got ", values.size()));
  }
  for (double v : values) {
    if (positive && !(v > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": expected values > 0, got ", v));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadRunFields(ConfigReader& root, uint64_t* seed, int* threads, DataConfig* data,
                           FaultPlan* faults) {
  int64_t value = 0;
  RETURN_IF_ERROR(root.Read("seed", &value));
  *seed = static_cast<uint64_t>(value);
  RETURN_IF_ERROR(root.Read("threads", threads));
  {
    ASSIGN_OR_RETURN(ConfigReader r, root.Child("faults"));
    RETURN_IF_ERROR(ReadFaultsSection(r, faults));
  }
  ASSIGN_OR_RETURN(ConfigReader r, root.Child("data"));
  return ReadDataSection(r, data);
}

}  // namespace peco::trainer
