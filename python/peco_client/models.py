"""Typed views of the coordinator's answers: enums for kinds and states, frozen dataclasses for
jobs, attempts, checkpoints, workers, watch events and log pieces.

Each dataclass is built from its proto message with ``from_proto`` and keeps that message as
``proto`` (left out of repr and equality) for fields this view does not name. Times are
timezone-aware UTC datetimes, None where the coordinator sent 0 (unset).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ._proto import checkpoint_pb2, job_pb2, job_service_pb2, metrics_pb2, worker_pb2


def time_from_us(micros: int) -> Optional[_dt.datetime]:
    """Returns the UTC datetime of `micros` microseconds since the Unix epoch; None for 0."""
    if micros == 0:
        return None
    return _dt.datetime.fromtimestamp(micros / 1e6, tz=_dt.timezone.utc)


class JobKind(enum.IntEnum):
    """What a job trains (peco.v1.JobKind); `spec_name` is the spec file's `kind:` word."""

    UNSPECIFIED = 0
    TOKENIZER = 1
    PRETRAIN = 2
    FINETUNE = 3
    LINEAR_PROBE = 4
    CONTRASTIVE = 5

    @property
    def spec_name(self) -> str:
        """The lower-case name a spec file uses ("tokenizer", "linear_probe")."""
        return self.name.lower()


# The spec file's `kind:` words, in the order the CLI lists them (service/job_kinds.cc).
SPEC_KINDS: Tuple[JobKind, ...] = (
    JobKind.TOKENIZER,
    JobKind.PRETRAIN,
    JobKind.FINETUNE,
    JobKind.LINEAR_PROBE,
    JobKind.CONTRASTIVE,
)


class JobState(enum.IntEnum):
    """A job's life-cycle state (peco.v1.JobState)."""

    UNSPECIFIED = 0
    QUEUED = 1
    WAITING = 2
    ASSIGNED = 3
    RUNNING = 4
    RESTARTING = 5
    SUCCEEDED = 6
    FAILED = 7
    CANCELLED = 8

    @property
    def is_terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED (only a resume moves such a job on)."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def parse(cls, value: Union["JobState", int, str]) -> "JobState":
        """Returns the state named by `value`: a JobState, its number, or a name in any case
        with or without the JOB_STATE_ prefix ("running", "SUCCEEDED", "JOB_STATE_QUEUED").

        Raises ValueError naming the known states for anything else.
        """
        if isinstance(value, JobState):
            return value
        if isinstance(value, int):
            return cls(value)
        name = value.strip().upper()
        if name.startswith("JOB_STATE_"):
            name = name[len("JOB_STATE_") :]
        if name in cls.__members__ and name != "UNSPECIFIED":
            return cls[name]
        known = ", ".join(s.name.lower() for s in cls if s is not JobState.UNSPECIFIED)
        raise ValueError(f"unknown job state '{value}' (one of {known})")


class WorkerState(enum.IntEnum):
    """A worker's state (peco.v1.WorkerState)."""

    UNSPECIFIED = 0
    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    DRAINING = 4


def _enum(cls: Any, value: int) -> Any:
    """`cls(value)`, or the UNSPECIFIED member for a number this client does not know yet."""
    try:
        return cls(value)
    except ValueError:
        return cls.UNSPECIFIED


@dataclass(frozen=True)
class Progress:
    """A job's latest progress as its rank 0 last reported it (peco.v1.JobProgress)."""

    step: int
    max_steps: int  # 0 = not known yet
    loss: float
    images_per_second: float
    time: Optional[_dt.datetime]
    eval: Dict[str, float]

    @classmethod
    def from_proto(cls, message: job_pb2.JobProgress) -> "Progress":
        return cls(
            step=message.step,
            max_steps=message.max_steps,
            loss=message.loss,
            images_per_second=message.images_per_second,
            time=time_from_us(message.time_us),
            eval=dict(message.eval),
        )


@dataclass(frozen=True)
class Job:
    """A job as the coordinator tracks it (peco.v1.Job)."""

    id: str
    name: str
    kind: JobKind
    state: JobState
    attempt: int
    owner: str
    priority: int
    world_size: int
    labels: Dict[str, str]
    depends_on_job_id: str
    depends_on_checkpoint_id: str
    # A fork's start (JobSpec.init_from): the coordinator pins a job id to that job's newest
    # verified checkpoint at submission, so a stored job names the checkpoint.
    init_from_job_id: str
    init_from_checkpoint_id: str
    submit_time: Optional[_dt.datetime]
    start_time: Optional[_dt.datetime]
    end_time: Optional[_dt.datetime]
    failure_reason: str
    restart_count: int
    cancel_reason: str
    client_request_id: str
    progress: Progress
    proto: job_pb2.Job = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: job_pb2.Job) -> "Job":
        spec = message.spec
        # Modules generated from a proto older than JobSpec.init_from have no such field.
        init_from = spec.init_from if "init_from" in spec.DESCRIPTOR.fields_by_name else None
        return cls(
            id=message.id,
            name=spec.name,
            kind=_enum(JobKind, spec.kind),
            state=_enum(JobState, message.state),
            attempt=message.attempt,
            owner=message.owner,
            priority=spec.priority,
            world_size=spec.world_size,
            labels=dict(spec.labels),
            depends_on_job_id=spec.depends_on.job_id,
            depends_on_checkpoint_id=spec.depends_on.checkpoint_id,
            init_from_job_id=init_from.job_id if init_from is not None else "",
            init_from_checkpoint_id=init_from.checkpoint_id if init_from is not None else "",
            submit_time=time_from_us(message.submit_time_us),
            start_time=time_from_us(message.start_time_us),
            end_time=time_from_us(message.end_time_us),
            failure_reason=message.failure_reason,
            restart_count=message.restart_count,
            cancel_reason=message.cancel_reason,
            client_request_id=message.client_request_id,
            progress=Progress.from_proto(message.progress),
            proto=message,
        )


@dataclass(frozen=True)
class Attempt:
    """One (re)start of a job (peco.v1.Attempt)."""

    number: int
    state: JobState
    resume_checkpoint_id: str  # "" = fresh start
    resume_step: int
    workers: List[str]  # worker ids holding its ranks
    start_time: Optional[_dt.datetime]
    end_time: Optional[_dt.datetime]
    failure_reason: str
    cause: str  # why it ended when it did not succeed ("exit", "worker_lost", ...)
    inputs: Dict[str, str]  # trainer config field -> checkpoint id of a dependency
    proto: job_pb2.Attempt = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: job_pb2.Attempt) -> "Attempt":
        return cls(
            number=message.number,
            state=_enum(JobState, message.state),
            resume_checkpoint_id=message.resume_checkpoint_id,
            resume_step=message.resume_step,
            workers=[placement.worker_id for placement in message.placements],
            start_time=time_from_us(message.start_time_us),
            end_time=time_from_us(message.end_time_us),
            failure_reason=message.failure_reason,
            cause=message.cause,
            inputs={item.config_field: item.checkpoint_id for item in message.inputs},
            proto=message,
        )


@dataclass(frozen=True)
class AuditEntry:
    """One call that changed a job, or was refused (peco.v1.AuditEntry)."""

    time: Optional[_dt.datetime]
    actor: str
    action: str
    job_id: str
    outcome: str  # "OK" or the refusal's status code name
    detail: str

    @classmethod
    def from_proto(cls, message: job_pb2.AuditEntry) -> "AuditEntry":
        return cls(
            time=time_from_us(message.time_us),
            actor=message.actor,
            action=message.action,
            job_id=message.job_id,
            outcome=message.outcome,
            detail=message.detail,
        )


@dataclass(frozen=True)
class JobDetails:
    """What GetJob answers: the job, its attempts (oldest first) and its newest audit entries."""

    job: Job
    attempts: List[Attempt]
    audit: List[AuditEntry]
    proto: job_service_pb2.GetJobResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: job_service_pb2.GetJobResponse) -> "JobDetails":
        return cls(
            job=Job.from_proto(message.job),
            attempts=[Attempt.from_proto(item) for item in message.attempts],
            audit=[AuditEntry.from_proto(item) for item in message.audit],
            proto=message,
        )


@dataclass(frozen=True)
class Submission:
    """The answer to a submit: the job, whether this call created it (False when the request id
    matched an earlier submission, which returns that job), and the request id that was sent."""

    job: Job
    created: bool
    request_id: str


@dataclass(frozen=True)
class ManifestEntry:
    """One file of a checkpoint: its name, size and SHA-256 (64 lower-case hex digits)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint (peco.v1.CheckpointInfo)."""

    id: str
    job_id: str
    attempt: int
    step: int
    bytes: int
    final: bool  # written when the job finished
    committed_time: Optional[_dt.datetime]
    manifest: List[ManifestEntry]
    proto: checkpoint_pb2.CheckpointInfo = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: checkpoint_pb2.CheckpointInfo) -> "Checkpoint":
        return cls(
            id=message.id,
            job_id=message.job_id,
            attempt=message.attempt,
            step=message.step,
            bytes=message.bytes,
            final=message.final,
            committed_time=time_from_us(message.committed_time_us),
            manifest=[ManifestEntry(e.name, e.size, e.sha256) for e in message.manifest],
            proto=message,
        )


@dataclass(frozen=True)
class Worker:
    """A registered worker and its devices (peco.v1.WorkerInfo)."""

    id: str
    host: str
    state: WorkerState
    gpus: int
    cpu_slots: int
    free_gpus: int
    free_cpu_slots: int
    last_heartbeat: Optional[_dt.datetime]
    proto: worker_pb2.WorkerInfo = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: worker_pb2.WorkerInfo) -> "Worker":
        return cls(
            id=message.id,
            host=message.host,
            state=_enum(WorkerState, message.state),
            gpus=message.devices.gpus,
            cpu_slots=message.devices.cpu_slots,
            free_gpus=message.free_devices.gpus,
            free_cpu_slots=message.free_devices.cpu_slots,
            last_heartbeat=time_from_us(message.last_heartbeat_us),
            proto=message,
        )


@dataclass(frozen=True)
class StateChange:
    """A watch event: the job moved to `state` (in `attempt`), with the reason if any."""

    job_id: str
    attempt: int
    state: JobState
    reason: str
    time: Optional[_dt.datetime]
    time_us: int = field(repr=False)

    @classmethod
    def from_proto(cls, message: job_service_pb2.JobStateChange) -> "StateChange":
        return cls(
            job_id=message.job_id,
            attempt=message.attempt,
            state=_enum(JobState, message.state),
            reason=message.reason,
            time=time_from_us(message.time_us),
            time_us=message.time_us,
        )


@dataclass(frozen=True)
class MetricPoint:
    """A watch event: the metric values one rank reported at one step ("loss", "lr", ...)."""

    job_id: str
    attempt: int
    rank: int
    step: int
    values: Dict[str, float]
    time: Optional[_dt.datetime]

    @classmethod
    def from_proto(cls, message: metrics_pb2.MetricPoint) -> "MetricPoint":
        return cls(
            job_id=message.job_id,
            attempt=message.attempt,
            rank=message.rank,
            step=message.step,
            values=dict(message.values),
            time=time_from_us(message.time_us),
        )


@dataclass(frozen=True)
class TrainerEvent:
    """A watch event: a trainer's non-metric event ("start", "checkpoint", "eval", "error",
    ...); `message` is the trainer's JSON line, `fields` that line parsed."""

    job_id: str
    attempt: int
    rank: int
    type: str
    message: str
    step: int
    time: Optional[_dt.datetime]
    time_us: int = field(repr=False)

    @property
    def fields(self) -> Dict[str, Any]:
        """The JSON object of `message`; {} when it is not a JSON object."""
        try:
            parsed = json.loads(self.message)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @classmethod
    def from_proto(cls, message: metrics_pb2.TrainerEvent) -> "TrainerEvent":
        return cls(
            job_id=message.job_id,
            attempt=message.attempt,
            rank=message.rank,
            type=message.type,
            message=message.message,
            step=message.step,
            time=time_from_us(message.time_us),
            time_us=message.time_us,
        )


WatchEvent = Union[StateChange, MetricPoint, TrainerEvent]


@dataclass(frozen=True)
class LogPiece:
    """The next bytes of one attempt's and rank's trainer log (whole lines, as a rule)."""

    attempt: int
    rank: int
    data: bytes

    @property
    def text(self) -> str:
        """`data` decoded as UTF-8, undecodable bytes replaced."""
        return self.data.decode("utf-8", errors="replace")
