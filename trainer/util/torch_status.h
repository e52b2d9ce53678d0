// The one place where LibTorch exceptions become absl::Status.
//
// LibTorch reports errors by throwing c10::Error (and std::exception subclasses). Code at the
// trainer's boundaries (task entry points, file readers, model loading) wraps calls into
// LibTorch with TorchCall so that callers above see only Status. `context` prefixes the message
// (for example the file or parameter being processed).
#ifndef PECO_TRAINER_UTIL_TORCH_STATUS_H_
#define PECO_TRAINER_UTIL_TORCH_STATUS_H_

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace peco::trainer {

// Converts the exception currently being handled into a Status. Call only inside a catch block.
absl::Status StatusFromCurrentException(absl::string_view context);

// Runs `fn` and converts a thrown exception into a Status. `fn` may return void, absl::Status,
// a value T (wrapped in StatusOr<T>) or absl::StatusOr<T>.
template <typename Fn>
auto TorchCall(absl::string_view context, Fn&& fn) {
  using R = std::invoke_result_t<Fn>;
  if constexpr (std::is_void_v<R>) {
    try {
      fn();
      return absl::OkStatus();
    } catch (...) {
      return StatusFromCurrentException(context);
    }
  } else if constexpr (std::is_same_v<R, absl::Status>) {
    try {
      return fn();
    } catch (...) {
      return StatusFromCurrentException(context);
    }
  } else {
    using Out = std::conditional_t<std::is_convertible_v<absl::Status, R>, R, absl::StatusOr<R>>;
    try {
      return Out(fn());
    } catch (...) {
      return Out(StatusFromCurrentException(context));
    }
  }
}

}  // namespace peco::trainer

#endif  // PECO_TRAINER_UTIL_TORCH_STATUS_H_
