#include "trainer/engine/run_state.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace peco::trainer {

void AddRunState(const RunState& state, JsonWriter* writer) {
  writer->Add("kind", state.kind)
      .Add("step", state.step)
      .Add("epoch", state.loader.epoch)
      .Add("batch", state.loader.batch)
      .Add("world_size", static_cast<int64_t>(state.world_size))
      .Add("seed", state.seed)
      .Add("config_sha256", state.config_sha256)
      .Add("final", state.final);
}

absl::Status ReadRunState(ConfigReader& reader, const std::vector<std::string>& kinds,
                          const std::string& source, RunState* state) {
  RETURN_IF_ERROR(reader.Read("kind", &state->kind));
  bool known = false;
  for (const std::string& kind : kinds) known |= kind == state->kind;
  if (!known) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": holds a '", state->kind,
                                                   "' checkpoint, expected a ",
                                                   absl::StrJoin(kinds, " or "), " checkpoint"));
  }
  int64_t seed = 0;
  RETURN_IF_ERROR(reader.Read("step", &state->step));
  RETURN_IF_ERROR(reader.Read("epoch", &state->loader.epoch));
  RETURN_IF_ERROR(reader.Read("batch", &state->loader.batch));
  RETURN_IF_ERROR(reader.Read("world_size", &state->world_size));
  RETURN_IF_ERROR(reader.Read("seed", &seed));
  state->seed = static_cast<uint64_t>(seed);
  RETURN_IF_ERROR(reader.Read("config_sha256", &state->config_sha256));
  return reader.Read("final", &state->final);
}

absl::Status CheckResumeWorldSize(const RunState& stored, int world_size, const std::string& dir) {
  if (stored.world_size == world_size) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "--resume: checkpoint ", dir, " was written by a run of ", stored.world_size,
      " ranks, this run has ", world_size,
      "; the data order depends on the rank count, so resume with the same world size"));
}

}  // namespace peco::trainer
