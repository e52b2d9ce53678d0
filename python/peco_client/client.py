"""Client: a typed wrapper of peco's JobService (proto/peco/v1/job_service.proto).

    from peco_client import Client

    with Client() as client:                       # discovery as the `peco` CLI does it
        submission = client.submit("configs/tokenizer_small.yaml",
                                   overrides=["train.max_steps=20"])
        state = client.watch(submission.job.id, callback=print)
        final = [c for c in client.checkpoints(submission.job.id) if c.final][-1]
        client.download(final.id, "tokenizer-final")

Every call sends `authorization: Bearer <token>` metadata; unary calls have a deadline of
`timeout` seconds, streams (watch, download, logs) none. Calls refused with UNAVAILABLE are
retried by gRPC (except ResumeJob), and `submit` and `fork` ask again with the same request id
when an answer may have been lost, so they never create two jobs. Failures raise a PecoError
subclass carrying the gRPC status code and the coordinator's message (peco_client.errors).

Thread-safety: a Client may be shared between threads (the channel and stub are thread-safe);
close it once, when every call has returned.
"""

from __future__ import annotations

import collections.abc
import logging
import os
import time
import uuid
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Union,
)

import grpc

from . import checkpoints as _checkpoints
from ._proto import job_pb2, job_service_pb2, job_service_pb2_grpc
from .connection import Endpoint, create_channel, hint_for, resolve_endpoint
from .errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    PecoError,
    UnavailableError,
    UnimplementedError,
    make_error,
)
from .models import (
    Checkpoint,
    Job,
    JobDetails,
    JobState,
    LogPiece,
    MetricPoint,
    StateChange,
    Submission,
    TrainerEvent,
    WatchEvent,
    Worker,
)
from .spec import apply_config_overrides, read_spec_file

_log = logging.getLogger("peco_client")

SpecSource = Union[str, "os.PathLike[str]", job_pb2.JobSpec]
WatchCallback = Callable[[WatchEvent], None]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CANCEL_REASON = "cancelled with the peco Python client"
# Tries of one SubmitJob whose answer may have been lost (UNAVAILABLE, DEADLINE_EXCEEDED).
SUBMIT_ATTEMPTS = 5
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_PAGE_SIZE = 500


def new_request_id() -> str:
    """A fresh idempotency key for SubmitJob (a random UUID)."""
    return str(uuid.uuid4())


def _require_field(message: Any, field_name: str, what: str) -> None:
    """Raises UnimplementedError when the generated `message` has no `field_name` (modules
    generated from an older proto); `what` names the argument that needs it."""
    if field_name not in message.DESCRIPTOR.fields_by_name:
        raise UnimplementedError(
            f"{what}: the generated peco.v1 has no {message.DESCRIPTOR.name}.{field_name}; "
            "regenerate the modules from a newer proto"
        )


def _items(values: Sequence[str], what: str) -> List[str]:
    """`values` as a list of strings; InvalidArgumentError for a bare string (which would be
    read as one item per character) or an item that is not a string."""
    if isinstance(values, (str, bytes)):
        raise InvalidArgumentError(f"{what}: expected a list of strings, not a string")
    items = list(values)
    for item in items:
        if not isinstance(item, str):
            raise InvalidArgumentError(f"{what}: expected strings, got {item!r}")
    return items


def build_submit_request(
    spec: SpecSource,
    *,
    overrides: Sequence[str] = (),
    name: Optional[str] = None,
    priority: Optional[int] = None,
    after: Optional[str] = None,
    request_id: Optional[str] = None,
) -> job_service_pb2.SubmitJobRequest:
    """Builds the SubmitJobRequest `peco submit` would send, without sending it (a dry run).

    `spec` is a spec file path, or a JobSpec (for example from peco_client.parse_spec);
    `overrides` are `a.b=value` items applied to a spec file before it is read (the CLI's
    `--set`); `name`, `priority` and `after` (a job id to depend on) replace the spec's values,
    as the CLI's `--name`, `--priority` and `--after`; `request_id` defaults to a new UUID.

    Raises SpecError and NotFoundError for a spec file (see read_spec_file), and
    InvalidArgumentError for an empty name, request id or `after`, a priority outside int32,
    or overrides given with a JobSpec.
    """
    if isinstance(spec, job_pb2.JobSpec):
        if overrides:
            raise InvalidArgumentError("overrides: apply to spec files, not to a JobSpec")
        job_spec = job_pb2.JobSpec()
        job_spec.CopyFrom(spec)
    else:
        job_spec = read_spec_file(spec, overrides)
    if name is not None:
        if not name:
            raise InvalidArgumentError("name: expected a non-empty name")
        job_spec.name = name
    if after is not None:
        if not after:
            raise InvalidArgumentError("after: expected a job id")
        job_spec.depends_on.job_id = after
    if priority is not None:
        if not _INT32_MIN <= priority <= _INT32_MAX:
            raise InvalidArgumentError(f"priority: expected a 32-bit integer, got {priority}")
        job_spec.priority = priority
    if request_id is None:
        request_id = new_request_id()
    if not request_id:
        raise InvalidArgumentError("request_id: expected a non-empty id")
    return job_service_pb2.SubmitJobRequest(client_request_id=request_id, spec=job_spec)


def _check_filtered(
    job: job_pb2.Job, labels: Mapping[str, str], depends_on: Optional[str]
) -> None:
    """Raises FailedPreconditionError when ListJobs returned `job` although the filters exclude
    it: a coordinator that ignores them (an older one) would list every job."""
    missing = [key for key, value in labels.items() if job.spec.labels.get(key) != value]
    if missing:
        raise FailedPreconditionError(
            f"ListJobs: the coordinator returned {job.id}, which lacks the label "
            f"{missing[0]}={labels[missing[0]]}: it does not filter by labels (an older one)"
        )
    dependency = job.spec.depends_on
    if depends_on and not dependency.checkpoint_id and dependency.job_id != depends_on:
        raise FailedPreconditionError(
            f"ListJobs: the coordinator returned {job.id}, which does not depend on "
            f"{depends_on}: it does not filter by dependency (an older one)"
        )


class _WatchTracker:
    """Follows one job's watch events: drops duplicates (a reconnected watch replays the
    history) and stale state changes, and knows the job's state so far.

    After a terminal state only a resume moves on: RESTARTING of the same attempt or any change
    of a newer attempt; anything else is a replayed, older change.
    """

    def __init__(self) -> None:
        self.state = JobState.UNSPECIFIED
        self.attempt = 0
        self._seen: set = set()

    @property
    def done(self) -> bool:
        return self.state.is_terminal

    def consume(self, event: job_service_pb2.WatchJobEvent) -> Optional[WatchEvent]:
        """Returns the event as a dataclass when it is news, None when it is a duplicate, a stale
        state change or of a kind this client does not know."""
        which = event.WhichOneof("event")
        if which == "state_change":
            change = event.state_change
            key = ("s", change.attempt, change.state, change.time_us)
            if key in self._seen:
                return None
            self._seen.add(key)
            if (
                self.done
                and change.attempt <= self.attempt
                and change.state != JobState.RESTARTING
            ):
                return None
            view = StateChange.from_proto(change)
            self.attempt = max(self.attempt, change.attempt)
            self.state = view.state
            return view
        if which == "metric_point":
            point = event.metric_point
            key = ("p", point.attempt, point.rank, point.step)
            if key in self._seen:
                return None
            self._seen.add(key)
            self.attempt = max(self.attempt, point.attempt)
            return MetricPoint.from_proto(point)
        if which == "trainer_event":
            trainer = event.trainer_event
            key = ("e", trainer.attempt, trainer.rank, trainer.type, trainer.step, trainer.time_us)
            if key in self._seen:
                return None
            self._seen.add(key)
            self.attempt = max(self.attempt, trainer.attempt)
            return TrainerEvent.from_proto(trainer)
        return None


class Client:
    """A connection to a peco coordinator's JobService with typed methods.

    Connection arguments follow the CLI's discovery (peco_client.connection): `coordinator`
    (HOST:PORT), else $PECO_COORDINATOR, else `<data_dir>/coordinator.addr`; `token`, else
    $PECO_TOKEN, else `<data_dir>/user.token`; `data_dir`, else $PECO_DATA_DIR, else
    ~/.local/share/peco. `tls_ca` (else $PECO_TLS_CA) turns TLS on; `tls_cert`/`tls_key` (else
    $PECO_TLS_CERT/$PECO_TLS_KEY) add a client certificate; `tls_server_name` is the name to
    expect in the coordinator's certificate. `timeout` is the deadline of each unary call in
    seconds. `env` replaces os.environ for discovery (tests).

    Raises FailedPreconditionError when no address or token can be found, InvalidArgumentError
    for a timeout <= 0 or unusable TLS files. Nothing is sent until the first call.
    """

    def __init__(
        self,
        coordinator: Optional[str] = None,
        *,
        token: Optional[str] = None,
        data_dir: Optional[str] = None,
        tls_ca: Optional[str] = None,
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        tls_server_name: Optional[str] = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        if not timeout > 0:
            raise InvalidArgumentError(f"timeout: expected seconds > 0, got {timeout}")
        self.endpoint: Endpoint = resolve_endpoint(
            coordinator=coordinator,
            token=token,
            data_dir=data_dir,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
            env=env,
        )
        self.timeout = float(timeout)
        self._channel = create_channel(self.endpoint)
        self.stub = job_service_pb2_grpc.JobServiceStub(self._channel)
        # Plain metadata rather than call credentials: those need a secure channel.
        self.metadata = (("authorization", f"Bearer {self.endpoint.token}"),)

    # -- life cycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _error(self, error: grpc.RpcError, what: str) -> PecoError:
        """The PecoError for a failed call: its code, "`what`: <server message>" and the CLI's
        hint naming the address, token or timeout to check."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = (error.details() if hasattr(error, "details") else str(error)) or ""
        message = f"{what}: {details}{hint_for(self.endpoint, code, self.timeout)}"
        return make_error(code, message, details)

    def _unary(self, method: str, request: Any, what: str) -> Any:
        """Calls the unary JobService `method` with the deadline and token; raises the mapped
        PecoError (`what` names the call and its subject)."""
        try:
            return getattr(self.stub, method)(
                request, timeout=self.timeout, metadata=self.metadata
            )
        except grpc.RpcError as error:
            raise self._error(error, what) from None

    # -- jobs -----------------------------------------------------------------------------------

    def submit(
        self,
        spec: SpecSource,
        *,
        overrides: Sequence[str] = (),
        name: Optional[str] = None,
        priority: Optional[int] = None,
        after: Optional[str] = None,
        request_id: Optional[str] = None,
        dry_run: bool = False,
    ) -> Submission:
        """Submits a job from a spec file path (or a JobSpec) and returns the Submission.

        Arguments as for build_submit_request. When the answer may have been lost (UNAVAILABLE,
        DEADLINE_EXCEEDED) it asks again with the same request id, up to SUBMIT_ATTEMPTS times;
        the coordinator returns the job the first call created (`created` is then False).

        With `dry_run` the coordinator checks the request as it would a submission (the spec,
        the trainer's check of its config, the dependency, the quota, whether the gang fits)
        and stores nothing (SubmitJobRequest.validate_only): the Submission's job is the job as
        it would be created, without an id, and `created` is False.

        Raises the errors of build_submit_request; InvalidArgumentError naming the field for a
        spec the coordinator refuses (a trainer config field, `spec.world_size`, ...),
        NotFoundError for a dependency that does not exist, FailedPreconditionError for a gang
        no worker could host; UnavailableError/DeadlineExceededError after the last try, whose
        message gives the request id to submit again with. With `dry_run`,
        UnimplementedError when this client's proto has no validate_only, and
        FailedPreconditionError when the coordinator ignored it (an older one) and created
        the job, which the message names.
        """
        request = build_submit_request(
            spec,
            overrides=overrides,
            name=name,
            priority=priority,
            after=after,
            request_id=request_id,
        )
        if dry_run:
            if "validate_only" not in request.DESCRIPTOR.fields_by_name:
                raise UnimplementedError(
                    "dry_run: the generated peco.v1 has no SubmitJobRequest.validate_only; "
                    "regenerate the modules from a newer proto"
                )
            request.validate_only = True
        subject = spec.name if isinstance(spec, job_pb2.JobSpec) else os.fspath(spec)
        response = self._submit_with_retries(request, f"SubmitJob {subject}")
        if dry_run and response.job.id:
            raise FailedPreconditionError(
                f"SubmitJob {subject}: the coordinator does not support dry runs and created "
                f"{response.job.id}"
            )
        return Submission(
            job=Job.from_proto(response.job),
            created=response.created,
            request_id=request.client_request_id,
        )

    def _submit_with_retries(
        self, request: job_service_pb2.SubmitJobRequest, what: str
    ) -> job_service_pb2.SubmitJobResponse:
        """Sends SubmitJob, asking again with the same request id while the answer may have
        been lost; raises the last error with the request id to submit again with."""
        backoff = 0.25
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                return self._unary("SubmitJob", request, what)
            except (UnavailableError, DeadlineExceededError) as error:
                if attempt == SUBMIT_ATTEMPTS:
                    raise make_error(
                        error.code,
                        f"{error.message}; the job may have been created: submitting again with "
                        f"request_id={request.client_request_id!r} returns it without creating "
                        "a second one",
                        error.server_message,
                    ) from None
                _log.warning(
                    "%s; asking again with the same request id %s",
                    error.message,
                    request.client_request_id,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, 4.0)
        raise AssertionError("unreachable")  # the loop returns or raises

    def get(self, job_id: str) -> JobDetails:
        """Returns the job with its attempts and newest audit entries.

        Raises NotFoundError for an unknown job, PermissionDeniedError for another user's job.
        """
        response = self._unary(
            "GetJob", job_service_pb2.GetJobRequest(job_id=job_id), f"GetJob {job_id}"
        )
        return JobDetails.from_proto(response)

    def list(
        self,
        states: Optional[Iterable[Union[JobState, int, str]]] = None,
        limit: Optional[int] = None,
        *,
        labels: Optional[Mapping[str, str]] = None,
        depends_on: Optional[str] = None,
    ) -> List[Job]:
        """Returns the jobs this token may see (every page of ListJobs), in the coordinator's
        order; only those in `states` when given ("running", JobState.SUCCEEDED, ...); only
        those whose spec has every one of `labels` with its value; only those that depend on
        the job `depends_on`, on it or on one of its checkpoints (a fork's init_from is no
        dependency); at most `limit` when given. The filters combine (`peco list --state
        --label --depends-on --limit`).

        Raises InvalidArgumentError for an unknown state, a limit < 1, an empty label key, a
        label that is not a string, an empty `depends_on` or too many labels (the
        coordinator's limit); InternalError when the coordinator repeats a page token;
        FailedPreconditionError when it returned a job the filters exclude (a coordinator too
        old to know them).
        """
        request = job_service_pb2.ListJobsRequest()
        for state in states or ():
            try:
                request.states.append(int(JobState.parse(state)))
            except ValueError as error:
                raise InvalidArgumentError(f"states: {error}") from None
        if limit is not None and limit < 1:
            raise InvalidArgumentError(f"limit: expected >= 1, got {limit}")
        wanted_labels: Dict[str, str] = {}
        if labels is not None:
            if not isinstance(labels, collections.abc.Mapping):
                raise InvalidArgumentError(
                    f"labels: expected a mapping of key to value, got {type(labels).__name__}"
                )
            for key, value in labels.items():
                if not isinstance(key, str) or not key:
                    raise InvalidArgumentError(
                        f"labels: expected non-empty string keys, got {key!r}"
                    )
                if not isinstance(value, str):
                    raise InvalidArgumentError(f"labels.{key}: expected a string, got {value!r}")
                wanted_labels[key] = value
            if wanted_labels:
                _require_field(request, "labels", "labels")
                request.labels.update(wanted_labels)
        if depends_on is not None:
            if not isinstance(depends_on, str) or not depends_on:
                raise InvalidArgumentError(f"depends_on: expected a job id, got {depends_on!r}")
            _require_field(request, "depends_on_job_id", "depends_on")
            request.depends_on_job_id = depends_on
        jobs: List[Job] = []
        token = ""
        pages = 0
        while True:
            if limit is not None:
                request.page_size = min(limit - len(jobs), _PAGE_SIZE)
            request.page_token = token
            page = self._unary("ListJobs", request, f"ListJobs page {pages + 1}")
            pages += 1
            for job in page.jobs:
                if limit is not None and len(jobs) >= limit:
                    break
                _check_filtered(job, wanted_labels, depends_on)
                jobs.append(Job.from_proto(job))
            if page.next_page_token and page.next_page_token == token:
                raise InternalError(f"ListJobs returned page token '{token}' twice; stopping")
            token = page.next_page_token
            if not token or (limit is not None and len(jobs) >= limit):
                return jobs

    def cancel(self, job_id: str, reason: str = DEFAULT_CANCEL_REASON) -> Job:
        """Cancels a job: its trainers get SIGTERM, write a final checkpoint and stop. Returns
        the job (still cancelling unless it had not started). `reason` is recorded with it.

        Raises NotFoundError for an unknown job, PermissionDeniedError for another user's job,
        FailedPreconditionError when the job has already ended.
        """
        request = job_service_pb2.CancelJobRequest(job_id=job_id, reason=reason)
        response = self._unary("CancelJob", request, f"CancelJob {job_id}")
        return Job.from_proto(response.job)

    def resume(
        self,
        job_id: str,
        checkpoint_id: Optional[str] = None,
        *,
        config_overrides: Sequence[str] = (),
    ) -> Job:
        """Starts a new attempt of a job from a committed checkpoint (its latest one by default)
        and returns the job. Not retried on UNAVAILABLE (a repeat could start a second attempt).

        `config_overrides` are `section.field=value` items that change the trainer config as
        the job continues (`peco resume --set`): under train., optim. or eval. only, except
        train.device and train.output_dir, e.g. ["train.max_steps=2000", "optim.lr=1e-4"]. The
        coordinator checks the changed config as it checks a submission's and keeps it in the
        job's spec for every later attempt.

        Raises NotFoundError for an unknown job or checkpoint, FailedPreconditionError when the
        job cannot be resumed (no checkpoint, or it has not failed or been cancelled),
        InvalidArgumentError for an override outside train/optim/eval (the message names it)
        or a changed config the trainer refuses (naming the field), or for overrides given as
        a bare string.
        """
        overrides = _items(config_overrides, "config_overrides")
        request = job_service_pb2.ResumeJobRequest(job_id=job_id, checkpoint_id=checkpoint_id or "")
        if overrides:
            _require_field(request, "config_overrides", "config_overrides")
            request.config_overrides.extend(overrides)
        response = self._unary("ResumeJob", request, f"ResumeJob {job_id}")
        return Job.from_proto(response.job)

    def fork(
        self,
        job_id: str,
        checkpoint_id: Optional[str] = None,
        overrides: Sequence[str] = (),
        name: Optional[str] = None,
        *,
        request_id: Optional[str] = None,
    ) -> Submission:
        """Submits a new job that continues `job_id` from its checkpoint (JobSpec.init_from),
        as `peco fork JOB [--checkpoint ID] [--set k=v]... [--name N]` does, and returns the
        Submission.

        The new job's spec is a copy of the source job's (GetJob): its kind, devices, labels,
        dependency and priority, its trainer config with `overrides` (`a.b=value` items, the
        CLI's `--set`) applied, named `name` (default "<source name>-fork"), starting from
        `checkpoint_id` when given, else from the source job (the coordinator pins the job's
        newest verified checkpoint at submission: the returned job's init_from_checkpoint_id
        names it). Its first attempt, and every restart before it has a checkpoint of its own,
        starts from that checkpoint as a resume would (weights, optimizer state, step). Sent
        with `request_id` (default a new UUID), asked again with it as `submit` does.

        Raises NotFoundError for an unknown job or checkpoint, PermissionDeniedError for
        another user's job, SpecError for an override that is not `a.b=value` or whose path
        runs through a value that is not a mapping (before submitting), InvalidArgumentError
        for an empty name, checkpoint id or request id, a changed config the coordinator
        refuses (naming the field) or a checkpoint of a job of another kind,
        FailedPreconditionError when the source job has no verified checkpoint yet.
        """
        if not job_id:
            raise InvalidArgumentError("job_id: expected a job id")
        if name is not None and not name:
            raise InvalidArgumentError("name: expected a non-empty name")
        if checkpoint_id is not None and not checkpoint_id:
            raise InvalidArgumentError("checkpoint_id: expected a checkpoint id")
        if request_id is not None and not request_id:
            raise InvalidArgumentError("request_id: expected a non-empty id")
        items = _items(overrides, "overrides")
        spec = job_pb2.JobSpec()
        _require_field(spec, "init_from", "fork")
        spec.CopyFrom(self.get(job_id).job.proto.spec)
        spec.config_yaml = apply_config_overrides(
            spec.config_yaml, items, f"fork of {job_id}: config"
        )
        spec.name = name if name is not None else f"{spec.name}-fork"
        if checkpoint_id is not None:
            spec.init_from.checkpoint_id = checkpoint_id
        else:
            spec.init_from.job_id = job_id
        request = job_service_pb2.SubmitJobRequest(
            client_request_id=request_id or new_request_id(), spec=spec
        )
        response = self._submit_with_retries(request, f"SubmitJob (fork of {job_id})")
        return Submission(
            job=Job.from_proto(response.job),
            created=response.created,
            request_id=request.client_request_id,
        )

    def watch(
        self,
        job_id: str,
        callback: Optional[WatchCallback] = None,
        *,
        max_reconnects: int = 30,
        reconnect_backoff: float = 2.0,
        timeout: Optional[float] = None,
    ) -> JobState:
        """Follows a job until it ends and returns its final state (SUCCEEDED, FAILED or
        CANCELLED); with `timeout`, for at most that many seconds.

        `callback` receives each event once, oldest first: the job's history, then live events
        (StateChange, MetricPoint, TrainerEvent). A terminal state in the history that a resume
        followed does not end the watch. When the stream is lost (UNAVAILABLE) the watch
        reconnects after `reconnect_backoff` seconds, replayed events are not repeated; when it
        ends without a terminal state, GetJob tells whether the job ended meanwhile.
        An exception raised by `callback` cancels the stream and propagates.

        Raises NotFoundError for an unknown job, PermissionDeniedError for another user's job,
        UnavailableError after `max_reconnects` consecutive reconnects that brought nothing new,
        DeadlineExceededError when the job has not ended within `timeout`.
        """
        tracker = _WatchTracker()
        request = job_service_pb2.WatchJobRequest(job_id=job_id, include_history=True)
        failures = 0
        what = f"WatchJob {job_id}"
        deadline = None if timeout is None else time.monotonic() + timeout

        def past_deadline() -> DeadlineExceededError:
            return DeadlineExceededError(f"{what}: the job had not ended within timeout={timeout}s")

        def remaining() -> Optional[float]:
            """Seconds left of `timeout` (None without one); raises once none are left."""
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise past_deadline()
            return left

        while True:
            call = self.stub.WatchJob(request, metadata=self.metadata, timeout=remaining())
            lost: Optional[grpc.RpcError] = None
            try:
                for message in call:
                    event = tracker.consume(message)
                    if event is None:
                        continue
                    failures = 0  # only news counts as a working stream
                    if callback is not None:
                        callback(event)
            except grpc.RpcError as error:
                lost = error
            finally:
                call.cancel()
            if tracker.done:
                return tracker.state
            if lost is None:
                # The stream ended before a terminal state arrived (the coordinator shut down).
                final = self._terminal_state_change(job_id)
                if final is not None:
                    event = tracker.consume(final)
                    if event is not None and callback is not None:
                        callback(event)
                    return tracker.state
            elif lost.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None:
                raise past_deadline() from None
            elif lost.code() != grpc.StatusCode.UNAVAILABLE:
                raise self._error(lost, what) from None
            failures += 1
            if failures > max_reconnects:
                reason = (
                    self._error(lost, what).message if lost is not None else f"{what}: ended early"
                )
                raise UnavailableError(f"{reason} (gave up after {max_reconnects} reconnects)")
            _log.warning(
                "lost the stream of %s (%s); reconnecting",
                job_id,
                lost.details() if lost is not None else "ended early",
            )
            left = remaining()
            time.sleep(reconnect_backoff if left is None else min(reconnect_backoff, left))

    def _terminal_state_change(self, job_id: str) -> Optional[job_service_pb2.WatchJobEvent]:
        """A state-change event of the job's terminal state when GetJob says it has ended;
        None when it has not or the coordinator is unavailable."""
        try:
            job = self.get(job_id).job.proto
        except UnavailableError:
            return None
        if not JobState(job.state).is_terminal:
            return None
        event = job_service_pb2.WatchJobEvent()
        change = event.state_change
        change.job_id = job_id
        change.attempt = job.attempt
        change.state = job.state
        change.reason = job.failure_reason
        change.time_us = job.end_time_us
        return event

    def logs(
        self,
        job_id: str,
        *,
        follow: bool = False,
        attempt: Optional[int] = None,
        ranks: Sequence[int] = (),
    ) -> Iterator[LogPiece]:
        """Yields the trainers' log pieces of a job as the workers forwarded them: every attempt
        (or `attempt`) and rank (or `ranks`); with `follow`, new pieces until the job ends.
        Closing the iterator early cancels the stream.

        Raises NotFoundError for an unknown job, PermissionDeniedError for another user's job.
        """
        request = job_service_pb2.StreamLogsRequest(
            job_id=job_id, follow=follow, attempt=attempt or 0, ranks=list(ranks)
        )
        call = self.stub.StreamLogs(request, metadata=self.metadata)
        try:
            for piece in call:
                yield LogPiece(attempt=piece.attempt, rank=piece.rank, data=piece.data)
        except grpc.RpcError as error:
            raise self._error(error, f"StreamLogs {job_id}") from None
        finally:
            call.cancel()

    # -- checkpoints and workers ------------------------------------------------------------------

    def checkpoints(self, job_id: str) -> List[Checkpoint]:
        """Returns the job's committed checkpoints ordered by step (the last is the newest).

        Raises NotFoundError for an unknown job, PermissionDeniedError for another user's job.
        """
        request = job_service_pb2.ListCheckpointsRequest(job_id=job_id)
        response = self._unary("ListCheckpoints", request, f"ListCheckpoints {job_id}")
        return [Checkpoint.from_proto(info) for info in response.checkpoints]

    def download(self, checkpoint_id: str, dest_dir: Union[str, "os.PathLike[str]"]) -> Checkpoint:
        """Downloads a checkpoint into the new directory `dest_dir` and returns its record.

        The files go to a hidden sibling `.NAME.partial`, hashed as they arrive; every size and
        SHA-256 is checked against the manifest, MANIFEST is written, and only then is the whole
        directory renamed onto `dest_dir` (which must not exist or be empty): `dest_dir` holds a
        verified checkpoint or nothing. Missing parent directories are created.

        Raises NotFoundError for an unknown checkpoint, AlreadyExistsError when `dest_dir`
        exists and is not empty, DataLossError for bytes that do not match the manifest or a
        broken stream, InvalidArgumentError for a manifest with bad file names.
        """
        what = f"DownloadCheckpoint {checkpoint_id}"
        request = job_service_pb2.DownloadCheckpointRequest(checkpoint_id=checkpoint_id)
        call = self.stub.DownloadCheckpoint(request, metadata=self.metadata)
        try:
            info = _checkpoints.receive(call, dest_dir, what)
        except grpc.RpcError as error:
            raise self._error(error, what) from None
        finally:
            call.cancel()  # ends the call early after a local error; no-op once it finished
        return Checkpoint.from_proto(info)

    def workers(self) -> List[Worker]:
        """Returns the registered workers with their devices and free devices."""
        response = self._unary("ListWorkers", job_service_pb2.ListWorkersRequest(), "ListWorkers")
        return [Worker.from_proto(info) for info in response.workers]


__all__ = [
    "Client",
    "DEFAULT_CANCEL_REASON",
    "DEFAULT_TIMEOUT_S",
    "SUBMIT_ATTEMPTS",
    "WatchCallback",
    "build_submit_request",
    "new_request_id",
]
