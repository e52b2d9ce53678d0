// Status propagation macros in the style of Abseil's internal ones.
//
// RETURN_IF_ERROR(expr): evaluates an absl::Status expression and returns it from the enclosing
// function when it is not OK.
// ASSIGN_OR_RETURN(lhs, expr): evaluates an absl::StatusOr<T> expression; on error returns its
// status, otherwise moves the value into `lhs` (which may be a declaration).
#ifndef PECO_COMMON_STATUS_MACROS_H_
#define PECO_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PECO_CONCAT_INNER_(a, b) a##b
#define PECO_CONCAT_(a, b) PECO_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status peco_status_ = (expr);        \
    if (!peco_status_.ok()) return peco_status_; \
  } while (0)

#define PECO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  PECO_ASSIGN_OR_RETURN_IMPL_(PECO_CONCAT_(peco_statusor_, __LINE__), lhs, expr)

#endif  // PECO_COMMON_STATUS_MACROS_H_
