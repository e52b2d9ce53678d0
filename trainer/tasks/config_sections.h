// YAML sections that several job kinds share: `data:`, `transform:`, `train:` and `faults:`.
//
// The readers consume their keys from a ConfigReader positioned at the section; ReadDataSection
// and ReadTransformSection then call Finish() (unknown keys are errors), ReadTrainFields does not,
// so a job kind can read its own extra `train:` keys before finishing. Errors are InvalidArgument
// naming the dotted field ("data.batch_size: expected > 0").
//
// Value types and free functions; thread-compatible.
#ifndef PECO_TRAINER_TASKS_CONFIG_SECTIONS_H_
#define PECO_TRAINER_TASKS_CONFIG_SECTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/config_reader.h"
#include "trainer/engine/checkpoint_policy.h"
#include "trainer/engine/fault_injection.h"
#include "trainer/tasks/data_config.h"

namespace peco::trainer {

struct TrainConfig {
  int64_t max_steps = 1000;
  std::string precision = "fp32";  // fp32 | bf16
  std::string device = "cpu";      // cpu | cuda
  int64_t log_every = 10;
  int64_t checkpoint_every = 200;
  int keep_checkpoints = 3;
  std::string output_dir = "runs/tokenizer";
  // A periodic checkpoint that cannot be written: fail the attempt, or skip it and train on, up
  // to max_skipped_checkpoints in a row (trainer/engine/checkpoint_policy.h).
  CheckpointFailurePolicy on_checkpoint_failure = CheckpointFailurePolicy::kFail;
  int max_skipped_checkpoints = 3;
  // Seconds a collective may wait for its peers (data parallel) before the job fails.
  double collective_timeout = 30;
  // Dataset images shown in each checkpoint's preview.png (tokenizer and pretrain jobs); 0 = none.
  int preview_images = 8;
};

// The top-level fields every job kind has: `seed`, `threads`, the `faults:` section
// (trainer/engine/fault_injection.h; off unless set) and the `data:` section.
absl::Status ReadRunFields(ConfigReader& root, uint64_t* seed, int* threads, DataConfig* data,
                           FaultPlan* faults);

// `data:` -> source, path, split, image_size, synthetic_size, labels_per_class, batch_size,
// num_workers, prefetch.
absl::Status ReadDataSection(ConfigReader& r, DataConfig* data);

// `transform:` -> the crop, flip and colour-jitter fields of TransformOptions.
absl::Status ReadTransformSection(ConfigReader& r, TransformOptions* transform);

// Whether `path` can hold a dataset of `source`: a directory, or for image_folder also a list
// file (data/image_folder.h).
bool IsDatasetPath(const std::string& source, const std::string& path);

// Checks `data` (with `check_paths`, also that data.path is a directory, or an image list,
// unless synthetic).
absl::Status ValidateDataSection(const DataConfig& data, bool check_paths);

// Reads the TrainConfig fields of `train:` without finishing the reader.
absl::Status ReadTrainFields(ConfigReader& r, TrainConfig* train);

// Checks per-channel normalisation values `field` (mean or std): 1 or 3 values, all > 0 when
// `positive`. InvalidArgument naming `field`.
absl::Status ValidateNormalisation(const char* field, const std::vector<double>& values,
                                   bool positive);

// Checks the TrainConfig fields.
absl::Status ValidateTrainSection(const TrainConfig& train);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_TASKS_CONFIG_SECTIONS_H_
