#include "trainer/util/torch_status.h"

#include <c10/util/Exception.h>

#include <new>
#include <stdexcept>

namespace peco::trainer {

absl::Status StatusFromCurrentException(absl::string_view context) {
  const std::string prefix = context.empty() ? std::string() : absl::StrCat(context, ": ");
  try {
    throw;
  } catch (const c10::Error& e) {
    // what_without_backtrace keeps messages short and readable.
    return absl::InvalidArgumentError(absl::StrCat(prefix, e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(prefix, "out of memory"));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(prefix, e.what()));
  } catch (...) {
    return absl::UnknownError(absl::StrCat(prefix, "unknown exception"));
  }
}

}  // namespace peco::trainer
