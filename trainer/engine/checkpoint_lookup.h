// Finding a job's checkpoint and the files in it, for resume, export and loading a frozen model.
//
// Every job kind writes `<output_dir>/checkpoints/step-N` directories (engine/checkpoint.h) with
// a `trainer_state.json` whose "kind" names the job kind. Free functions; thread-compatible.
#ifndef PECO_TRAINER_ENGINE_CHECKPOINT_LOOKUP_H_
#define PECO_TRAINER_ENGINE_CHECKPOINT_LOOKUP_H_

#include <string>

#include "absl/status/statusor.h"
#include "trainer/engine/checkpoint.h"
#include "trainer/engine/progress.h"

namespace peco::trainer {

// The files every job kind's checkpoint holds (kind-specific files sit beside them): the run's
// state (step, loader position, kind), the config it ran with, and for trained kinds the model
// and its optimizer (module_state.h writes and restores those two).
inline constexpr char kTrainerStateFile[] = "trainer_state.json";
inline constexpr char kConfigFile[] = "config.yaml";
inline constexpr char kModelFile[] = "model.pt";
inline constexpr char kOptimizerFile[] = "optimizer.pt";

// Returns the checkpoint `path` names: `path` itself when it holds a MANIFEST, otherwise the
// newest verified checkpoint of the run directory `path` (or of `path`/checkpoints). Damaged
// newer checkpoints that were skipped are logged to `progress` when it is not null.
// Errors: DataLoss (damaged), NotFound (no checkpoint).
absl::StatusOr<RestoredCheckpoint> ResolveCheckpoint(const std::string& path,
                                                     ProgressSink* progress);

// Returns the bytes of file `name` of the checkpoint `dir`; DataLoss naming both when absent.
absl::StatusOr<const std::string*> CheckpointFile(const CheckpointFiles& files,
                                                  const std::string& name, const std::string& dir);

// Returns the job kind recorded in the checkpoint's trainer_state.json ("tokenizer", "pretrain").
absl::StatusOr<std::string> CheckpointKind(const CheckpointFiles& files, const std::string& dir);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_CHECKPOINT_LOOKUP_H_
