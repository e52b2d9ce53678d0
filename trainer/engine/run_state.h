// The part of a checkpoint's trainer_state.json that every job kind writes the same way: which
// kind wrote it, where the run is (optimizer steps, the data loader's next batch), how it ran
// (world size, seed, config digest) and whether it is the run's final checkpoint. Each kind's
// state extends RunState with its own fields (tasks/*_task.cc, tasks/eval_state.h).
//
// Value type and free functions; thread-compatible. Errors are InvalidArgument naming the source
// file and the field.
#ifndef PECO_TRAINER_ENGINE_RUN_STATE_H_
#define PECO_TRAINER_ENGINE_RUN_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/config_reader.h"
#include "common/json_writer.h"
#include "trainer/data/loader.h"

namespace peco::trainer {

struct RunState {
  std::string kind;           // the job kind
  int64_t step = 0;           // optimizer steps taken
  LoaderPosition loader;      // the next training batch
  int world_size = 1;         // ranks that wrote it (the data order depends on it)
  uint64_t seed = 0;          // the config's seed
  std::string config_sha256;  // of the config text as given
  bool final = false;         // the run's last checkpoint (max_steps reached)
};

// Adds the RunState fields (kind, step, epoch, batch, world_size, seed, config_sha256, final).
void AddRunState(const RunState& state, JsonWriter* writer);

// Reads the RunState fields from `reader` (positioned at the trainer_state.json object); the kind
// must be one of `kinds`, else InvalidArgument "<source>: holds a 'x' checkpoint, expected a
// tokenizer checkpoint". A missing world_size reads as 1 (checkpoints of single-rank kinds
// written before every kind trained data-parallel).
absl::Status ReadRunState(ConfigReader& reader, const std::vector<std::string>& kinds,
                          const std::string& source, RunState* state);

// InvalidArgument unless a run of `world_size` ranks may resume `stored` (checkpoint `dir`):
// the data order depends on the rank count.
absl::Status CheckResumeWorldSize(const RunState& stored, int world_size, const std::string& dir);

}  // namespace peco::trainer

#endif  // PECO_TRAINER_ENGINE_RUN_STATE_H_
