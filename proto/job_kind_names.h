// The lower-case names of job kinds ("contrastive", "tokenizer", "pretrain", "finetune",
// "linear_probe"): the
// trainer's subcommands and config `kind:` values, the CLI's spec files and the worker's
// command lines all use them. Pure functions over the generated enum; thread-safe.
#ifndef PECO_PROTO_JOB_KIND_NAMES_H_
#define PECO_PROTO_JOB_KIND_NAMES_H_

#include <optional>
#include <string>

#include "peco/v1/job.pb.h"

namespace peco::v1 {

// Returns the kind's name, or "" for JOB_KIND_UNSPECIFIED and values outside the enum.
std::string JobKindName(JobKind kind);

// Returns the kind with that name, or std::nullopt for an unknown name.
std::optional<JobKind> JobKindFromName(const std::string& name);

// "tokenizer, pretrain, finetune, linear_probe, contrastive" (enum order), for error messages.
std::string KnownJobKindNames();

}  // namespace peco::v1

#endif  // PECO_PROTO_JOB_KIND_NAMES_H_
