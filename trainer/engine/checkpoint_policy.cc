#include "trainer/engine/checkpoint_policy.h"

#include "absl/strings/str_cat.h"
#include "common/json_writer.h"

namespace peco::trainer {

absl::Status ParseCheckpointFailurePolicy(const std::string& name,
                                          CheckpointFailurePolicy* policy) {
  if (name == "fail") {
    *policy = CheckpointFailurePolicy::kFail;
  } else if (name == "skip") {
    *policy = CheckpointFailurePolicy::kSkip;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("train.on_checkpoint_failure: expected fail or skip, got '", name, "'"));
  }
  return absl::OkStatus();
}

absl::Status CheckpointFailureGuard::Check(int64_t step, bool final, const absl::Status& written) {
  if (written.ok()) {
    skipped_in_a_row_ = 0;
    return written;
  }
  if (policy_ == CheckpointFailurePolicy::kFail || final ||
      skipped_in_a_row_ >= max_skipped_in_a_row_) {
    return written;
  }
  ++skipped_in_a_row_;
  JsonWriter event;
  event.Add("event", "checkpoint_failed")
      .Add("step", step)
      .Add("error", std::string(written.message()))
      .Add("skipped_in_a_row", static_cast<int64_t>(skipped_in_a_row_));
  progress_->Emit(event);
  progress_->Log(absl::StrCat(
      "checkpoint of step ", step, " skipped (", skipped_in_a_row_, " of ", max_skipped_in_a_row_,
      " in a row allowed by train.on_checkpoint_failure: skip): ", written.ToString()));
  return absl::OkStatus();
}

}  // namespace peco::trainer
