#include "trainer/tasks/eval_splits.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"
#include "trainer/data/random.h"

namespace peco::trainer {

absl::StatusOr<EvalSplits> OpenEvalSplits(const DataConfig& train, const EvalJobConfig& config) {
  EvalSplits splits;
  ASSIGN_OR_RETURN(splits.train, OpenDataset(train, config.seed));
  absl::StatusOr<std::shared_ptr<const Dataset>> held_out =
      OpenDataset(config.eval_data, MixSeed(config.seed, kEvalDataStream));
  if (!held_out.ok()) {
    return absl::Status(
        held_out.status().code(),
        absl::StrReplaceAll(held_out.status().message(), {{"data.path:", "eval.path:"}}));
  }
  splits.held_out = *held_out;
  splits.classes = splits.train->num_classes();
  if (splits.classes < 2) {
    return absl::InvalidArgumentError(absl::StrCat("data.path: ", splits.train->name(), " has ",
                                                   splits.classes,
                                                   " classes, expected labelled data"));
  }
  if (splits.held_out->num_classes() != splits.classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "eval.path: ", splits.held_out->name(), " has ", splits.held_out->num_classes(),
        " classes, the training data ", splits.train->name(), " has ", splits.classes));
  }
  return splits;
}

}  // namespace peco::trainer
