"""peco_client: a typed Python client of peco's JobService (submit, watch, list, get, cancel,
resume, fork, checkpoints, download, workers, logs).

    from peco_client import Client, JobState

    with Client() as client:
        job = client.submit("configs/tokenizer_small.yaml").job
        if client.watch(job.id, callback=print) is JobState.SUCCEEDED:
            final = [c for c in client.checkpoints(job.id) if c.final][-1]
            client.download(final.id, "tokenizer-final")

It needs the generated modules of the wire contract (package peco.v1): installing with pip
generates them; from the source tree run `/usr/bin/python3 python/generate_stubs.py` first
(python/README.md).
"""

from .checkpoints import verify_checkpoint_dir
from .client import (
    DEFAULT_CANCEL_REASON,
    DEFAULT_TIMEOUT_S,
    Client,
    WatchCallback,
    build_submit_request,
    new_request_id,
)
from .connection import Endpoint, resolve_data_dir, resolve_endpoint
from .errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DataLossError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PecoError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SpecError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from .models import (
    Attempt,
    AuditEntry,
    Checkpoint,
    Job,
    JobDetails,
    JobKind,
    JobState,
    LogPiece,
    ManifestEntry,
    MetricPoint,
    Progress,
    StateChange,
    Submission,
    TrainerEvent,
    WatchEvent,
    Worker,
    WorkerState,
)
from .spec import parse_spec, read_spec_file

__version__ = "0.1.0"

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "Attempt",
    "AuditEntry",
    "CancelledError",
    "Checkpoint",
    "Client",
    "DEFAULT_CANCEL_REASON",
    "DEFAULT_TIMEOUT_S",
    "DataLossError",
    "DeadlineExceededError",
    "Endpoint",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "Job",
    "JobDetails",
    "JobKind",
    "JobState",
    "LogPiece",
    "ManifestEntry",
    "MetricPoint",
    "NotFoundError",
    "OutOfRangeError",
    "PecoError",
    "PermissionDeniedError",
    "Progress",
    "ResourceExhaustedError",
    "SpecError",
    "StateChange",
    "Submission",
    "TrainerEvent",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "WatchCallback",
    "WatchEvent",
    "Worker",
    "WorkerState",
    "build_submit_request",
    "new_request_id",
    "parse_spec",
    "read_spec_file",
    "resolve_data_dir",
    "resolve_endpoint",
    "verify_checkpoint_dir",
]
