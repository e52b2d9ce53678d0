// The job kinds, in one table: each kind's name (the spec's `kind:`, the trainer's subcommand,
// the CLI's and the worker's word for it) and which checkpoint it takes from a job it depends on
// (docs/SERVICE.md, "Pipelines"). The coordinator, the worker and the CLI read kinds only
// through this table; the trainer's own table (trainer/tasks/job_kinds.h) uses the same names.
//
// Dependency hand-over: a job that depends on another may take that job's final checkpoint as
// an input; the coordinator records it in the attempt (Attempt.inputs), the worker fetches it
// and starts the trainer with `--set <field>=<local dir>`:
//   pretrain      after tokenizer -> tokenizer.checkpoint        (the frozen target tokenizer)
//   finetune      after pretrain  -> backbone.checkpoint         (the backbone to evaluate)
//   linear_probe  after pretrain  -> backbone.checkpoint
//   tokenizer     after contrastive, pretrain or finetune -> loss.perceptual.checkpoint (the
//                 perceptual network: MoCo v3 encoder, BEiT trunk, or a supervised classifier's)
// Any other pair only orders the two jobs.
//
// Thread-safety: the table is immutable; every function is pure.
#ifndef PECO_SERVICE_JOB_KINDS_H_
#define PECO_SERVICE_JOB_KINDS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "peco/v1/job.pb.h"

namespace peco::service {

struct JobKindInfo {
  // A checkpoint this kind reads from a dependency of kind `from`, into config field `field`.
  struct Input {
    v1::JobKind from;
    absl::string_view field;
  };

  v1::JobKind kind;
  absl::string_view name;
  absl::string_view summary;  // one line, for help texts
  std::vector<Input> inputs;
};

// Every kind, in enum order (JOB_KIND_UNSPECIFIED excluded).
absl::Span<const JobKindInfo> AllJobKinds();

// The row of `kind`, or null for JOB_KIND_UNSPECIFIED and values outside the enum.
const JobKindInfo* FindJobKind(v1::JobKind kind);

// The kind's name ("linear_probe"), or "" for JOB_KIND_UNSPECIFIED and unknown values.
std::string JobKindName(v1::JobKind kind);

// The kind with that name, or nullopt.
std::optional<v1::JobKind> JobKindFromName(absl::string_view name);

// "tokenizer, pretrain, finetune, linear_probe, contrastive" (enum order), for error messages.
std::string KnownJobKindNames();

// The config field of a `dependent` job that receives the checkpoint of a `dependency` job, or
// nullopt when the pair only orders the jobs.
std::optional<std::string> DependencyInputField(v1::JobKind dependent, v1::JobKind dependency);

}  // namespace peco::service

#endif  // PECO_SERVICE_JOB_KINDS_H_
