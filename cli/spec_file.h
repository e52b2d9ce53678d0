// Job spec files: the YAML a user passes to `peco submit` (docs/SERVICE.md, "Job spec files").
//
// A spec file is a trainer config with a top-level `kind` and an optional `job:` section that
// describes how to run it:
//
//   kind: tokenizer                 # contrastive | tokenizer | pretrain | finetune | linear_probe
//   ...                             # the trainer config, sent unchanged in meaning
//   job:
//     name: small-tokenizer         # default: the file name without extension
//     world_size: 1                 # >= 1
//     devices_per_rank: {gpus: 0, cpu_slots: 1}
//     priority: 0
//     max_restarts: 5               # >= 0; absent = the coordinator's default
//     depends_on: {job_id: job-000001}   # or {checkpoint_id: ...}, exactly one
//     labels: {team: vision}        # string -> string
//
// The `job:` section fills the JobSpec fields and is removed from `config_yaml`. When the file
// has neither a `job:` section nor overrides its text is sent byte for byte (comments kept);
// otherwise the document is re-emitted from the parsed tree (same meaning, comments dropped).
//
// Errors: InvalidArgument whose message starts with the file path and names the dotted field
// ("spec.yaml: job.world_size: expected an integer >= 1, got 0"); for text that is not YAML or
// not a mapping it names the file; for text or an override that is not UTF-8 (a JobSpec's strings
// must be) or holds a NUL byte it names the file and the offset of the first bad byte. NotFound
// when the file does not exist.
//
// Thread-safety: pure functions.
#ifndef PECO_CLI_SPEC_FILE_H_
#define PECO_CLI_SPEC_FILE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "peco/v1/job.pb.h"

namespace peco::cli {

// Parses spec text. `source` names it in errors (the file path); `default_name` becomes the job
// name when the spec gives none. `overrides` are `a.b=value` items (as for `--set`), applied to
// the whole document, `job:` section included, before anything is read.
absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, const std::string& source,
                                         const std::string& default_name,
                                         const std::vector<std::string>& overrides);

// Reads and parses the spec file at `path`; the default job name is the file's stem
// ("configs/tokenizer_small.yaml" -> "tokenizer_small").
absl::StatusOr<v1::JobSpec> ReadJobSpecFile(const std::string& path,
                                            const std::vector<std::string>& overrides);

// Returns the lower-case spec name of a kind ("tokenizer"), or "unspecified".
std::string JobKindName(v1::JobKind kind);

}  // namespace peco::cli

#endif  // PECO_CLI_SPEC_FILE_H_
