"""Errors of the peco client: one class per gRPC status code, all subclasses of PecoError.

Every failure the client reports is a PecoError carrying the canonical gRPC status code and a
message that starts with the call and its subject ("GetJob job-000042: ...") followed by the
coordinator's own message, which names the offending field ("spec.world_size: ..."). Local
failures use the code the coordinator would have used: a spec file that does not parse is
INVALID_ARGUMENT (SpecError), a checkpoint that fails verification DATA_LOSS, a destination that
is not empty ALREADY_EXISTS.

    try:
        client.get("job-000042")
    except NotFoundError as error:
        print(error.code, error.server_message)
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class PecoError(Exception):
    """A failed peco call or local check.

    Attributes:
        code: the gRPC status code (grpc.StatusCode).
        message: the whole message (what was called, then why).
        server_message: the coordinator's own message, or "" for a local failure.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        code: Optional[grpc.StatusCode] = None,
        server_message: str = "",
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.server_message = server_message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class CancelledError(PecoError):
    code = grpc.StatusCode.CANCELLED


class InvalidArgumentError(PecoError):
    """A request (or a spec file) the coordinator refuses; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class SpecError(InvalidArgumentError):
    """A spec file that does not parse or has a bad `job:` field, found before any call.

    The message starts with the file (or the source given) and names the dotted field:
    "spec.yaml: job.world_size: expected an integer >= 1, got 0".
    """


class DeadlineExceededError(PecoError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(PecoError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(PecoError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(PecoError):
    """A valid token of another role, or a job that belongs to another user."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(PecoError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(PecoError):
    """No coordinator address or token could be found, or the cluster cannot run the job."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(PecoError):
    code = grpc.StatusCode.ABORTED


class OutOfRangeError(PecoError):
    code = grpc.StatusCode.OUT_OF_RANGE


class UnimplementedError(PecoError):
    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(PecoError):
    code = grpc.StatusCode.INTERNAL


class UnavailableError(PecoError):
    """The coordinator could not be reached (wrong address, not running, TLS mismatch)."""

    code = grpc.StatusCode.UNAVAILABLE


class DataLossError(PecoError):
    """A checkpoint whose bytes do not match its manifest, or a broken stream."""

    code = grpc.StatusCode.DATA_LOSS


class UnauthenticatedError(PecoError):
    """A missing, unknown, revoked or expired token."""

    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[PecoError]] = {
    cls.code: cls
    for cls in (
        CancelledError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        UnimplementedError,
        InternalError,
        UnavailableError,
        DataLossError,
        UnauthenticatedError,
    )
}


def error_class(code: grpc.StatusCode) -> Type[PecoError]:
    """Returns the PecoError subclass for `code` (PecoError itself for UNKNOWN and others)."""
    return _BY_CODE.get(code, PecoError)


def make_error(code: grpc.StatusCode, message: str, server_message: str = "") -> PecoError:
    """Returns an instance of the subclass for `code` with `message`."""
    return error_class(code)(message, code=code, server_message=server_message)
