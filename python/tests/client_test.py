#!/usr/bin/python3
"""End-to-end test of peco_client against a real peco-coordinator and peco-worker on loopback.

It generates the peco.v1 modules into a temporary directory (so a fresh clone with only the
build works), starts a coordinator over a temporary data directory and one worker with one CPU
slot, and drives them through the client: a tiny synthetic-data tokenizer job submitted,
watched to SUCCEEDED with a callback, listed, read back and its final checkpoint downloaded and
verified; a second job cancelled from a watch callback; a third cancelled, resumed with a new
train.max_steps and forked, and jobs listed by labels and dependency; dry runs; refused requests
(unknown job, bad fields, wrong token, unreachable address); discovery through the data
directory and the environment; TLS against a second coordinator; and the request the client
builds from spec files compared with the one the `peco` CLI builds.

Usage:
    /usr/bin/python3 python/tests/client_test.py [--bin-dir build] [--keep] [-v] [unittest args]

The binaries are looked up under --bin-dir (default $PECO_BIN_DIR, else <repo>/build) as
coordinator/peco-coordinator, worker/peco-worker, trainer/peco-train and cli/peco; each may be
given on its own (--coordinator-bin, ...). Prints "N passed, N failed, N skipped" last and exits
non-zero when a test failed.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock
from pathlib import Path
from typing import Any, List, Optional

import yaml  # Debian's python3-yaml

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
REPO = PYTHON_DIR.parent

# Filled in by main(): the options and the modules imported after the stubs were generated.
OPTIONS: argparse.Namespace
peco_client: Any = None
job_service_pb2: Any = None
json_format: Any = None
grpc: Any = None

TINY_SPEC = """\
# A tokenizer small enough to train a few steps in seconds on one core, on synthetic images.
kind: tokenizer
seed: 5
threads: 1
data: {source: synthetic, image_size: 16, batch_size: 4, num_workers: 1, prefetch: 2,
       synthetic_size: 64}
model: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], z_channels: 8,
        n_embed: 16, embed_dim: 8}
loss: {perceptual_weight: 0}
optim: {lr: 1.0e-3, warmup_steps: 1}
eval: {max_images: 16}
train: {max_steps: 6, log_every: 1, checkpoint_every: 3, keep_checkpoints: 2}
job:
  name: py-client-tiny
  max_restarts: 0
  labels: {suite: python-client}
"""
TINY_STEPS = 6
# Longest wait for a job to end; the whole run stops after TIME_LIMIT_S (below ctest's TIMEOUT).
WATCH_TIMEOUT_S = 120
TIME_LIMIT_S = 280


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` passes
    (AssertionError naming `what`). Polling a condition, not timing."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """A daemon child process, its stdout and stderr in a log file."""

    def __init__(self, argv: List[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = log_path.open("wb")
        # In the test's process group: an interrupt of the test reaches the daemons too.
        self.process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (the daemon stops its trainers or validators), SIGKILL after `grace`
        seconds; waits for the exit."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    """A coordinator (and optionally workers) over a data directory under `root`."""

    def __init__(self, root: Path, name: str = "coordinator") -> None:
        self.root = root
        self.name = name
        self.data_dir = root / name
        self.coordinators: List[Daemon] = []  # every start, the newest last
        self.workers: List[Daemon] = []
        self.coordinator: Optional[Daemon] = None
        self.address = ""
        self.user_token = ""
        self.worker_token = ""
        self.port = free_port()  # fixed, so that a restarted coordinator is found again
        self.starts = 0

    def start_coordinator(self, extra: List[str] = (), tls_ca: Optional[str] = None) -> None:
        """Starts (or restarts) the coordinator on this cluster's loopback port and waits until
        it answers an authenticated call (through the client, over TLS when `tls_ca` is
        given)."""
        self._extra, self._tls_ca = list(extra), tls_ca
        argv = [
            OPTIONS.coordinator_bin,
            "--data_dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--metrics_listen", "",
            "--trainer", OPTIONS.train_bin,
            "--validators", "1",
            "--heartbeat_interval", "500ms",
            "--worker_timeout", "10s",
            "--cancel_grace", "30s",
            *extra,
        ]  # fmt: skip
        self.coordinator = Daemon(argv, self.root / f"{self.name}-{self.starts}.log")
        self.starts += 1
        self.coordinators.append(self.coordinator)
        address_file = self.data_dir / "coordinator.addr"
        token_file = self.data_dir / "user.token"

        def answers() -> bool:
            if not self.coordinator.running():
                raise AssertionError(
                    f"the coordinator exited:\n{self.coordinator.log_tail()}"
                )
            if not address_file.exists() or not token_file.exists():
                return False
            client = peco_client.Client(
                data_dir=str(self.data_dir), env={}, timeout=2, tls_ca=tls_ca
            )
            try:
                client.workers()
                return True
            except peco_client.UnavailableError:
                return False
            finally:
                client.close()

        wait_for(answers, 60, "the coordinator to answer")
        self.address = address_file.read_text().strip()
        self.user_token = token_file.read_text().strip()
        self.worker_token = (self.data_dir / "worker.token").read_text().strip()

    def restart_coordinator(self) -> None:
        """SIGKILL to the coordinator (a crash), then starts it again on the same port and data
        directory with the same flags."""
        self.coordinator.process.kill()
        self.coordinator.stop()
        self.start_coordinator(self._extra, self._tls_ca)

    def start_worker(self, cpu_slots: int = 1) -> Daemon:
        """Starts a worker with its own work directory; returns it (not waited for)."""
        index = len(self.workers)
        base = 20000 + (os.getpid() % 400) * 100
        argv = [
            OPTIONS.worker_bin,
            "--coordinator_data_dir", str(self.data_dir),
            "--work_dir", str(self.root / f"worker-{index}"),
            "--cpu_slots", str(cpu_slots),
            "--trainer", OPTIONS.train_bin,
            "--ports", f"{base}-{base + 9}",
            "--listen", "127.0.0.1:0",
            "--metrics_listen", "127.0.0.1:0",
            "--shutdown_grace", "5s",
        ]  # fmt: skip
        worker = Daemon(argv, self.root / f"worker-{index}.log")
        self.workers.append(worker)
        return worker

    def client(self, **kwargs: Any):
        """A client of this coordinator through explicit arguments (no environment)."""
        kwargs.setdefault("coordinator", self.address)
        kwargs.setdefault("token", self.user_token)
        return peco_client.Client(env={}, **kwargs)

    def stop(self) -> None:
        """Stops the workers first (they stop their trainers), then the coordinator."""
        for daemon in self.workers + self.coordinators:
            daemon.stop()
        self.workers.clear()
        self.coordinators.clear()

    def logs(self) -> str:
        return "\n".join(
            f"===== {d.log_path.name}\n{d.log_tail()}" for d in self.coordinators + self.workers
        )


_ALL_CLUSTERS: List[Cluster] = []


def _stop_all_clusters() -> None:
    for cluster in _ALL_CLUSTERS:
        cluster.stop()


class ClientTest(unittest.TestCase):
    """One coordinator and worker shared by every test (started once: the daemons' and
    trainers' start-up is most of the cost)."""

    cluster: Cluster
    root: Path

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = Path(OPTIONS.tmp) / "cluster"
        cls.root.mkdir()
        cls.cluster = Cluster(cls.root)
        _ALL_CLUSTERS.append(cls.cluster)
        cls.cluster.start_coordinator()
        cls.worker = cls.cluster.start_worker(cpu_slots=1)
        cls.client = cls.cluster.client()
        wait_for(
            lambda: any(w.state == peco_client.WorkerState.ALIVE for w in cls.client.workers()),
            60,
            "the worker to register",
        )
        cls.spec_path = cls.root / "tiny.yaml"
        cls.spec_path.write_text(TINY_SPEC)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()
        cls.cluster.stop()

    def run(self, result=None):
        """Runs the test; on failure appends the daemons' log tails to the report."""
        before = len(result.failures) + len(result.errors) if result is not None else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            print(f"\n{self.id()} failed; daemon logs:\n{self.cluster.logs()}", file=sys.stderr)
        return outcome

    # -- the whole path of one job -------------------------------------------------------------

    def test_submit_watch_list_get_download(self) -> None:
        client = self.client
        submission = client.submit(self.spec_path)
        job = submission.job
        self.assertTrue(submission.created)
        self.assertTrue(job.id.startswith("job-"), job.id)
        self.assertEqual(job.name, "py-client-tiny")
        self.assertEqual(job.kind, peco_client.JobKind.TOKENIZER)
        self.assertEqual(job.labels, {"suite": "python-client"})
        self.assertEqual(job.owner, "admin")

        # The same request id returns the same job instead of a second one.
        again = client.submit(self.spec_path, request_id=submission.request_id)
        self.assertFalse(again.created)
        self.assertEqual(again.job.id, job.id)

        events: List[Any] = []
        final_state = client.watch(job.id, callback=events.append, timeout=WATCH_TIMEOUT_S)
        self.assertEqual(final_state, peco_client.JobState.SUCCEEDED)
        states = [e.state for e in events if isinstance(e, peco_client.StateChange)]
        points = [e for e in events if isinstance(e, peco_client.MetricPoint)]
        trainer_events = [e for e in events if isinstance(e, peco_client.TrainerEvent)]
        self.assertIn(peco_client.JobState.RUNNING, states)
        self.assertEqual(states[-1], peco_client.JobState.SUCCEEDED)
        self.assertTrue(points, "no metric points were watched")
        self.assertTrue(all("loss" in p.values for p in points if p.rank == 0))
        self.assertEqual(max(p.step for p in points), TINY_STEPS)
        self.assertIn("checkpoint", {e.type for e in trainer_events})
        self.assertEqual(len(events), len({repr(e) for e in events}), "an event came twice")
        # A second watch of the ended job replays the history (the metric points, where the
        # final evaluation joins its step's point, and the state changes as stored) and returns
        # at once.
        replay: List[Any] = []
        self.assertEqual(client.watch(job.id, callback=replay.append), final_state)

        def point_keys(watched: List[Any]) -> List[Any]:
            return sorted(
                (e.attempt, e.rank, e.step, e.values["loss"])
                for e in watched
                if isinstance(e, peco_client.MetricPoint)
            )

        self.assertEqual(point_keys(replay), point_keys(events))
        replayed_states = [e.state for e in replay if isinstance(e, peco_client.StateChange)]
        self.assertEqual(replayed_states[-1], peco_client.JobState.SUCCEEDED)

        listed = client.list()
        self.assertIn(job.id, [j.id for j in listed])
        succeeded = client.list(states=["succeeded"])
        self.assertIn(job.id, [j.id for j in succeeded])
        self.assertTrue(all(j.state == peco_client.JobState.SUCCEEDED for j in succeeded))
        queued = client.list(states=[peco_client.JobState.QUEUED, "waiting"])
        self.assertNotIn(job.id, [j.id for j in queued])
        self.assertEqual(len(client.list(limit=1)), 1)
        with self.assertRaises(peco_client.InvalidArgumentError):
            client.list(states=["sleeping"])

        details = client.get(job.id)
        self.assertEqual(details.job.state, peco_client.JobState.SUCCEEDED)
        self.assertEqual(details.job.progress.step, TINY_STEPS)
        self.assertEqual(len(details.attempts), 1)
        self.assertEqual(details.attempts[0].number, 1)
        self.assertEqual(len(details.attempts[0].workers), 1)
        self.assertIn("submit", [entry.action for entry in details.audit])
        self.assertIsNotNone(details.job.end_time)

        checkpoints = client.checkpoints(job.id)
        finals = [c for c in checkpoints if c.final]
        self.assertEqual(len(finals), 1, checkpoints)
        final = finals[0]
        self.assertEqual(final.step, TINY_STEPS)
        self.assertEqual([c.step for c in checkpoints], sorted(c.step for c in checkpoints))

        dest = Path(OPTIONS.tmp) / "downloads" / "final"
        downloaded = client.download(final.id, dest)
        self.assertEqual(downloaded.id, final.id)
        self.assertEqual(downloaded.manifest, final.manifest)
        self.assertFalse((dest.parent / ".final.partial").exists())
        # Every file matches the manifest, hashed here independently of the client.
        for entry in final.manifest:
            data = (dest / entry.name).read_bytes()
            self.assertEqual(len(data), entry.size, entry.name)
            self.assertEqual(hashlib.sha256(data).hexdigest(), entry.sha256, entry.name)
        self.assertEqual(
            sorted(p.name for p in dest.iterdir()),
            sorted([e.name for e in final.manifest] + ["MANIFEST"]),
        )
        self.assertEqual(peco_client.verify_checkpoint_dir(dest), final.manifest)
        self.assertEqual(sum(e.size for e in final.manifest), final.bytes)
        # The destination must be new or empty: nothing is overwritten.
        with self.assertRaises(peco_client.AlreadyExistsError):
            client.download(final.id, dest)
        with self.assertRaises(peco_client.NotFoundError):
            client.download("job-999999-a1-step-000000000001", dest.parent / "missing")
        self.assertFalse((dest.parent / "missing").exists())

        # The trainer's log reached the coordinator before the job ended.
        pieces = list(client.logs(job.id))
        self.assertTrue(all(piece.attempt == 1 and piece.rank == 0 for piece in pieces))

        workers = client.workers()
        self.assertEqual(len(workers), 1)
        self.assertEqual(workers[0].cpu_slots, 1)
        self.assertEqual(workers[0].state, peco_client.WorkerState.ALIVE)

    def test_cancel_from_a_watch_callback_then_resume(self) -> None:
        client = self.client
        long_spec = self.root / "long.yaml"
        long_spec.write_text(TINY_SPEC)
        job = client.submit(
            long_spec,
            overrides=["train.max_steps=100000", "train.checkpoint_every=100000"],
            name="py-client-cancel",
        ).job
        self.assertEqual(job.name, "py-client-cancel")
        with self.assertRaises(peco_client.DeadlineExceededError):
            client.watch(job.id, timeout=0.5)  # it runs for long
        cancelled: List[Any] = []

        def cancel_on_first_point(event: Any) -> None:
            if isinstance(event, peco_client.MetricPoint) and not cancelled:
                cancelled.append(client.cancel(job.id, reason="enough for the test"))

        state = client.watch(job.id, callback=cancel_on_first_point, timeout=WATCH_TIMEOUT_S)
        self.assertEqual(state, peco_client.JobState.CANCELLED)
        self.assertEqual(len(cancelled), 1)
        self.assertEqual(cancelled[0].cancel_reason, "enough for the test")
        details = client.get(job.id)
        self.assertEqual(details.job.state, peco_client.JobState.CANCELLED)
        self.assertIn(
            ("cancel", "enough for the test"),
            [(entry.action, entry.detail) for entry in details.audit],
        )
        # The trainer wrote a final checkpoint as it stopped: the job resumes from it.
        stopped_at = client.checkpoints(job.id)[-1]
        resumed = client.resume(job.id, checkpoint_id=stopped_at.id)
        self.assertEqual(resumed.id, job.id)
        self.assertFalse(resumed.state.is_terminal)
        resumed_points: List[Any] = []

        def cancel_once_resumed(event: Any) -> None:
            if isinstance(event, peco_client.MetricPoint) and event.attempt == 2:
                if not resumed_points:
                    client.cancel(job.id, reason="the resume was enough")
                resumed_points.append(event)

        # The watch replays attempt 1's CANCELLED and follows the resumed attempt past it.
        self.assertEqual(
            client.watch(job.id, callback=cancel_once_resumed, timeout=WATCH_TIMEOUT_S),
            peco_client.JobState.CANCELLED,
        )
        self.assertGreater(min(p.step for p in resumed_points), stopped_at.step)
        attempts = client.get(job.id).attempts
        self.assertEqual(len(attempts), 2)
        self.assertEqual(attempts[1].resume_checkpoint_id, stopped_at.id)
        self.assertEqual(attempts[1].resume_step, stopped_at.step)

    def test_resume_with_changes_fork_and_filtered_lists(self) -> None:
        client = self.client
        flow = {"flow": "continue"}  # this test's jobs (the fork and the CLI's fork copy it)
        source = client.submit(
            self.spec_path,
            overrides=[
                "train.max_steps=100000",
                "train.checkpoint_every=100000",
                "job.labels.flow=continue",
            ],
            name="py-client-continue",
        ).job
        self.assertEqual(source.labels, {"suite": "python-client", **flow})

        cancelled: List[Any] = []

        def cancel_on_first_point(event: Any) -> None:
            if isinstance(event, peco_client.MetricPoint) and not cancelled:
                cancelled.append(client.cancel(source.id, reason="continue it later"))

        self.assertEqual(
            client.watch(source.id, callback=cancel_on_first_point, timeout=WATCH_TIMEOUT_S),
            peco_client.JobState.CANCELLED,
        )
        stopped_at = client.checkpoints(source.id)[-1]  # written as the trainer stopped
        config_before = client.get(source.id).job.proto.spec.config_yaml

        # Only train.*, optim.* and eval.* may change, not the model, the device or the output.
        for refused in ("model.ch=64", "train.output_dir=/tmp/elsewhere", "kind=pretrain"):
            with self.subTest(refused=refused):
                with self.assertRaises(peco_client.InvalidArgumentError) as bad:
                    client.resume(source.id, config_overrides=[refused])
                self.assertEqual(bad.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertIn(refused, bad.exception.server_message)
        # A changed config is checked as a submission's is, naming the field.
        with self.assertRaises(peco_client.InvalidArgumentError) as wrong_type:
            client.resume(source.id, config_overrides=["train.max_steps=many"])
        self.assertIn("train.max_steps", wrong_type.exception.server_message)
        with self.assertRaises(peco_client.InvalidArgumentError):  # one item per character
            client.resume(source.id, config_overrides="train.max_steps=9")
        unchanged = client.get(source.id)
        self.assertEqual(unchanged.job.state, peco_client.JobState.CANCELLED)
        self.assertEqual(unchanged.job.proto.spec.config_yaml, config_before)
        self.assertEqual(len(unchanged.attempts), 1)

        # Resumed with a new max_steps: the spec keeps it and the job ends there.
        resumed_steps = stopped_at.step + 3
        resumed = client.resume(
            source.id, config_overrides=[f"train.max_steps={resumed_steps}", "optim.lr=2.0e-3"]
        )
        self.assertFalse(resumed.state.is_terminal)
        config = yaml.safe_load(client.get(source.id).job.proto.spec.config_yaml)
        self.assertEqual(config["train"]["max_steps"], resumed_steps)
        self.assertEqual(config["optim"]["lr"], 2.0e-3)
        self.assertEqual(config["train"]["checkpoint_every"], 100000)  # the rest as it was
        self.assertEqual(config["model"]["ch"], 32)
        self.assertEqual(
            client.watch(source.id, timeout=WATCH_TIMEOUT_S), peco_client.JobState.SUCCEEDED
        )
        details = client.get(source.id)
        self.assertEqual(len(details.attempts), 2)
        self.assertEqual(details.attempts[1].resume_checkpoint_id, stopped_at.id)
        resumes = [e.detail for e in details.audit if e.action == "resume" and e.outcome == "OK"]
        self.assertEqual(len(resumes), 1, details.audit)
        self.assertIn(f"train.max_steps={resumed_steps}", resumes[0])
        source_final = client.checkpoints(source.id)[-1]
        self.assertTrue(source_final.final)
        self.assertEqual(source_final.step, resumed_steps)
        self.assertEqual(source_final.attempt, 2)

        # Refused forks store nothing: an unknown job or checkpoint, bad overrides or name.
        before = {job.id for job in client.list(labels=flow)}
        with self.assertRaises(peco_client.NotFoundError):
            client.fork("job-999999")
        with self.assertRaises(peco_client.NotFoundError) as no_checkpoint:
            client.fork(source.id, checkpoint_id="job-999999-a1-step-000000000001")
        self.assertIn("spec.init_from.checkpoint_id", no_checkpoint.exception.server_message)
        with self.assertRaises(peco_client.SpecError) as not_an_override:
            client.fork(source.id, overrides=["train.max_steps"])
        self.assertIn("expected key.path=value", not_an_override.exception.message)
        with self.assertRaises(peco_client.SpecError):
            client.fork(source.id, overrides=["seed.value=1"])  # seed is a number
        with self.assertRaises(peco_client.InvalidArgumentError):
            client.fork(source.id, name="")
        with self.assertRaises(peco_client.InvalidArgumentError) as bad_config:
            client.fork(source.id, overrides=["train.max_steps=many"])
        self.assertIn("train.max_steps", bad_config.exception.server_message)
        self.assertEqual({job.id for job in client.list(labels=flow)}, before)

        # The fork: the source's spec with the changes, from its newest checkpoint, pinned.
        fork_steps = resumed_steps + 3
        forked = client.fork(source.id, overrides=[f"train.max_steps={fork_steps}"])
        fork = forked.job
        self.assertTrue(forked.created)
        self.assertEqual(fork.name, "py-client-continue-fork")
        self.assertEqual(fork.kind, source.kind)
        self.assertEqual(fork.labels, source.labels)
        self.assertEqual(fork.init_from_checkpoint_id, source_final.id)
        self.assertEqual(fork.init_from_job_id, "")
        fork_config = yaml.safe_load(fork.proto.spec.config_yaml)
        self.assertEqual(fork_config["train"]["max_steps"], fork_steps)
        self.assertEqual({**fork_config, "train": config["train"]}, config)
        # The same request id returns the same fork.
        again = client.fork(
            source.id, overrides=[f"train.max_steps={fork_steps}"], request_id=forked.request_id
        )
        self.assertEqual((again.job.id, again.created), (fork.id, False))

        # While the fork holds the worker's only slot, jobs queued behind it: the CLI's fork
        # of the same source (the same spec but for the request id) and two dependent jobs,
        # one on the source, one on a checkpoint of it, with a lower priority.
        queued: List[str] = []
        if OPTIONS.cli_bin and os.access(OPTIONS.cli_bin, os.X_OK):
            result = subprocess.run(
                [OPTIONS.cli_bin, "--coordinator", self.cluster.address,
                 "--token", self.cluster.user_token, "-o", "json",
                 "fork", source.id, "--set", f"train.max_steps={fork_steps}"],
                capture_output=True, text=True, check=False, timeout=30,
            )  # fmt: skip
            self.assertEqual(result.returncode, 0, result.stderr)
            answer = json.loads(result.stdout)
            theirs = json_format.ParseDict(answer["job"]["spec"], type(fork.proto.spec)())
            ours = type(fork.proto.spec)()
            ours.CopyFrom(fork.proto.spec)
            self.assertEqual(
                yaml.safe_load(ours.config_yaml), yaml.safe_load(theirs.config_yaml)
            )
            ours.config_yaml = theirs.config_yaml = ""
            self.assertEqual(ours, theirs)
            queued.append(answer["job"]["id"])
        dependent = ["job.labels.flow=continue", "job.labels.role=dependent"]
        on_job = client.submit(
            self.spec_path, overrides=dependent, after=source.id, priority=-1,
            name="py-client-after-source",
        ).job  # fmt: skip
        on_checkpoint = client.submit(
            self.spec_path,
            overrides=[*dependent, f"job.depends_on={{checkpoint_id: {stopped_at.id}}}"],
            priority=-1,
            name="py-client-after-checkpoint",
        ).job
        self.assertEqual(on_checkpoint.depends_on_checkpoint_id, stopped_at.id)
        dependents = [on_job.id, on_checkpoint.id]
        queued += dependents

        def ids(jobs: List[Any]) -> List[str]:
            return [job.id for job in jobs]

        everything = [source.id, fork.id, *queued]
        self.assertEqual(sorted(ids(client.list(labels=flow))), sorted(everything))
        self.assertEqual(ids(client.list(labels={**flow, "role": "dependent"})), dependents)
        self.assertEqual(client.list(labels={**flow, "role": "nobody"}), [])
        # A dependency on the job or on one of its checkpoints; a fork's init_from is none.
        self.assertEqual(ids(client.list(depends_on=source.id)), dependents)
        self.assertEqual(client.list(depends_on=on_job.id), [])
        self.assertEqual(ids(client.list(depends_on=source.id, limit=1)), dependents[:1])
        self.assertEqual(ids(client.list(states=["succeeded"], labels=flow)), [source.id])
        # Page by page (one job a page), the filters kept on every page.
        in_one_page = ids(client.list(labels=flow))
        with mock.patch.object(peco_client.client, "_PAGE_SIZE", 1):
            self.assertEqual(ids(client.list(labels=flow, limit=100)), in_one_page)
            self.assertEqual(ids(client.list(depends_on=source.id, limit=100)), dependents)
        if OPTIONS.cli_bin and os.access(OPTIONS.cli_bin, os.X_OK):
            cli_listed = subprocess.run(
                [OPTIONS.cli_bin, "--coordinator", self.cluster.address,
                 "--token", self.cluster.user_token, "-o", "name", "list",
                 "--label", "flow=continue", "--label", "role=dependent",
                 "--depends-on", source.id],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout.split()  # fmt: skip
            self.assertEqual(cli_listed, dependents)
        for bad_filter in ({"labels": {"": "x"}}, {"labels": {"flow": 1}}, {"depends_on": ""},
                           {"labels": ["flow=continue"]}):  # fmt: skip
            with self.subTest(bad_filter=bad_filter):
                with self.assertRaises(peco_client.InvalidArgumentError):
                    client.list(**bad_filter)
        for job_id in queued:
            client.cancel(job_id, reason="listed them")
        for job_id in queued:
            self.assertEqual(
                client.watch(job_id, timeout=WATCH_TIMEOUT_S), peco_client.JobState.CANCELLED
            )
        self.assertEqual(
            ids(client.list(states=["cancelled"], labels={**flow, "role": "dependent"})),
            dependents,
        )

        # The fork starts from the source's final checkpoint and ends at its own max_steps.
        self.assertEqual(
            client.watch(fork.id, timeout=WATCH_TIMEOUT_S), peco_client.JobState.SUCCEEDED
        )
        fork_details = client.get(fork.id)
        first = fork_details.attempts[0]
        self.assertEqual(first.number, 1)
        self.assertEqual(first.resume_checkpoint_id, source_final.id)
        self.assertEqual(first.resume_step, resumed_steps)
        fork_final = client.checkpoints(fork.id)[-1]
        self.assertTrue(fork_final.final)
        self.assertEqual(fork_final.step, fork_steps)
        self.assertEqual(fork_final.job_id, fork.id)
        self.assertEqual(fork_details.job.init_from_checkpoint_id, source_final.id)

    def test_watch_survives_a_coordinator_restart(self) -> None:
        client = self.client
        job = client.submit(
            self.spec_path,
            overrides=["train.max_steps=100000", "train.checkpoint_every=100000"],
            name="py-client-restart",
        ).job
        events: List[Any] = []
        restarted_after: List[int] = []

        def restart_then_cancel(event: Any) -> None:
            events.append(event)
            if not isinstance(event, peco_client.MetricPoint):
                return
            if not restarted_after:
                restarted_after.append(event.step)
                self.cluster.restart_coordinator()
            elif event.step > restarted_after[0] + 2 and len(restarted_after) == 1:
                restarted_after.append(event.step)
                client.cancel(job.id, reason="seen it reconnect")

        with self.assertLogs("peco_client", "WARNING") as warnings:
            state = client.watch(
                job.id, callback=restart_then_cancel, reconnect_backoff=0.2, timeout=WATCH_TIMEOUT_S
            )
        self.assertEqual(state, peco_client.JobState.CANCELLED)
        self.assertIn("reconnecting", "\n".join(warnings.output))
        self.assertEqual(len(restarted_after), 2, "no new points after the restart")
        steps = [e.step for e in events if isinstance(e, peco_client.MetricPoint)]
        self.assertEqual(len(steps), len(set(steps)), "the replayed history came twice")

    # -- refusals ------------------------------------------------------------------------------

    def test_errors_carry_the_code_and_the_server_message(self) -> None:
        client = self.client
        with self.assertRaises(peco_client.NotFoundError) as unknown:
            client.get("job-999999")
        self.assertEqual(unknown.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("job-999999", unknown.exception.server_message)
        self.assertTrue(unknown.exception.message.startswith("GetJob job-999999: "))
        self.assertIsInstance(unknown.exception, peco_client.PecoError)
        with self.assertRaises(peco_client.NotFoundError):
            client.resume("job-999999")
        with self.assertRaises(peco_client.NotFoundError):
            client.watch("job-999999")
        with self.assertRaises(peco_client.NotFoundError):
            client.checkpoints("job-999999")

        before = len(client.list())
        # A trainer config field of the wrong type: refused by the coordinator's check, naming it.
        with self.assertRaises(peco_client.InvalidArgumentError) as wrong_type:
            client.submit(self.spec_path, overrides=["train.max_steps=many"])
        self.assertEqual(wrong_type.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("train.max_steps", wrong_type.exception.server_message)
        self.assertNotIsInstance(wrong_type.exception, peco_client.SpecError)
        with self.assertRaises(peco_client.InvalidArgumentError) as unknown_field:
            client.submit(self.spec_path, overrides=["surprise=1"])
        self.assertIn("surprise", unknown_field.exception.server_message)
        # A JobSpec field out of range, sent as a JobSpec without a spec file.
        spec = peco_client.parse_spec(TINY_SPEC, "tiny")
        spec.world_size = 100000
        with self.assertRaises(peco_client.InvalidArgumentError) as too_wide:
            client.submit(spec)
        self.assertIn("spec.world_size", too_wide.exception.server_message)
        # A dependency that does not exist.
        with self.assertRaises(peco_client.NotFoundError) as missing:
            client.submit(self.spec_path, after="job-424242")
        self.assertIn("spec.depends_on.job_id", missing.exception.server_message)
        self.assertEqual(len(client.list()), before, "a refused submit stored a job")

        # A bad `job:` field is refused before any call, naming the file and the field.
        with self.assertRaises(peco_client.SpecError) as local:
            client.submit(self.spec_path, overrides=["job.world_size=0"])
        self.assertEqual(local.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn(
            f"{self.spec_path}: job.world_size: expected an integer >= 1, got 0",
            local.exception.message,
        )
        with self.assertRaises(peco_client.SpecError) as unknown_job_field:
            client.submit(self.spec_path, overrides=["job.colour=blue"])
        self.assertIn("job.colour: unknown field", unknown_job_field.exception.message)
        with self.assertRaises(peco_client.NotFoundError):
            client.submit(self.root / "no-such-spec.yaml")

    def test_wrong_token_wrong_role_and_unreachable_address(self) -> None:
        with self.cluster.client(token="not-a-token") as stranger:
            with self.assertRaises(peco_client.UnauthenticatedError) as refused:
                stranger.list()
        self.assertEqual(refused.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        self.assertIn("(token from token argument)", refused.exception.message)
        with self.cluster.client(token=self.cluster.worker_token) as worker_role:
            with self.assertRaises(peco_client.PermissionDeniedError):
                worker_role.workers()
        nowhere = f"127.0.0.1:{free_port()}"
        with peco_client.Client(nowhere, token="t", env={}, timeout=5) as lost:
            with self.assertRaises(peco_client.UnavailableError) as unreachable:
                lost.workers()
        self.assertIn(
            f"coordinator {nowhere} from coordinator argument", unreachable.exception.message
        )

    # -- discovery -----------------------------------------------------------------------------

    def test_discovery_mirrors_the_cli(self) -> None:
        data_dir = str(self.cluster.data_dir)
        # Address and token from the data directory's files.
        with peco_client.Client(data_dir=data_dir, env={}) as from_files:
            self.assertEqual(from_files.endpoint.address, self.cluster.address)
            self.assertEqual(from_files.endpoint.token_source, f"{data_dir}/user.token")
            self.assertTrue(from_files.workers())
        # $PECO_DATA_DIR names the data directory; $HOME is the last resort.
        endpoint = peco_client.resolve_endpoint(env={"PECO_DATA_DIR": data_dir})
        self.assertEqual(endpoint.address_source, f"{data_dir}/coordinator.addr")
        self.assertEqual(
            peco_client.resolve_data_dir(env={"HOME": "/home/u"}), "/home/u/.local/share/peco"
        )
        # The environment beats the files, the arguments beat the environment.
        env = {
            "PECO_DATA_DIR": data_dir,
            "PECO_COORDINATOR": "127.0.0.1:1",
            "PECO_TOKEN": "from-env",
        }
        endpoint = peco_client.resolve_endpoint(env=env)
        self.assertEqual(
            (endpoint.address, endpoint.address_source), ("127.0.0.1:1", "$PECO_COORDINATOR")
        )
        self.assertEqual((endpoint.token, endpoint.token_source), ("from-env", "$PECO_TOKEN"))
        endpoint = peco_client.resolve_endpoint(coordinator="127.0.0.1:2", token="arg", env=env)
        self.assertEqual((endpoint.address, endpoint.token), ("127.0.0.1:2", "arg"))
        with peco_client.Client(env=env, coordinator=self.cluster.address) as mixed:
            with self.assertRaises(peco_client.UnauthenticatedError) as refused:
                mixed.workers()
            self.assertIn("(token from $PECO_TOKEN)", refused.exception.message)
        # Nothing found: FAILED_PRECONDITION naming the file that was tried.
        empty = Path(OPTIONS.tmp) / "empty-data-dir"
        empty.mkdir(exist_ok=True)
        with self.assertRaises(peco_client.FailedPreconditionError) as no_address:
            peco_client.Client(data_dir=str(empty), env={})
        self.assertIn(f"{empty}/coordinator.addr", no_address.exception.message)
        with self.assertRaises(peco_client.FailedPreconditionError) as no_token:
            peco_client.Client(coordinator="127.0.0.1:1", data_dir=str(empty), env={})
        self.assertIn(f"{empty}/user.token", no_token.exception.message)
        # A client certificate needs the CA that verifies the coordinator.
        with self.assertRaises(peco_client.InvalidArgumentError):
            peco_client.resolve_endpoint(coordinator="a:1", token="t", tls_cert="c.pem", env={})

    # -- TLS -----------------------------------------------------------------------------------

    def test_tls_with_a_ca_file(self) -> None:
        if shutil.which("openssl") is None:
            self.skipTest("openssl not installed (scripts/setup installs it)")
        pki = Path(OPTIONS.tmp) / "pki"
        pki.mkdir()
        make_certificates(pki)
        tls = Cluster(Path(OPTIONS.tmp), name="tls-coordinator")
        _ALL_CLUSTERS.append(tls)
        try:
            tls.start_coordinator(
                ["--tls_cert", str(pki / "coordinator.pem"),
                 "--tls_key", str(pki / "coordinator.key")],  # fmt: skip
                tls_ca=str(pki / "ca.pem"),
            )
            with tls.client(tls_ca=str(pki / "ca.pem")) as secure:
                self.assertEqual(secure.workers(), [])
            # The CA from the environment, with a client certificate (optional for users).
            env = {"PECO_TLS_CA": str(pki / "ca.pem")}
            with peco_client.Client(
                coordinator=tls.address,
                token=tls.user_token,
                tls_cert=str(pki / "client.pem"),
                tls_key=str(pki / "client.key"),
                env=env,
            ) as with_identity:
                self.assertTrue(with_identity.endpoint.uses_tls)
                self.assertEqual(with_identity.workers(), [])
            # In clear text the TLS coordinator cannot be reached; the hint names tls_ca.
            with tls.client(timeout=5) as plain:
                with self.assertRaises(peco_client.UnavailableError) as refused:
                    plain.workers()
            self.assertIn("give tls_ca", refused.exception.message)
            # Files that cannot be used are refused before any call, naming the argument.
            with self.assertRaises(peco_client.InvalidArgumentError) as not_pem:
                tls.client(tls_ca=str(pki / "coordinator.key.missing"))
            self.assertIn("tls_ca", not_pem.exception.message)
            with self.assertRaises(peco_client.InvalidArgumentError) as swapped:
                tls.client(
                    tls_ca=str(pki / "ca.pem"),
                    tls_cert=str(pki / "client.pem"),
                    tls_key=str(pki / "coordinator.key"),
                )
            self.assertIn("tls_key", swapped.exception.message)
        finally:
            tls.stop()

    # -- the request matches the CLI's -------------------------------------------------------------

    def test_requests_match_the_cli(self) -> None:
        if not OPTIONS.cli_bin or not os.access(OPTIONS.cli_bin, os.X_OK):
            self.skipTest(f"no peco CLI at {OPTIONS.cli_bin}")
        specs = self.root / "specs"
        specs.mkdir()
        full = TINY_SPEC.replace(
            "job:\n",
            "job:\n  world_size: 1\n  devices_per_rank: {gpus: 0, cpu_slots: 1}\n"
            "  priority: 3\n  depends_on: {checkpoint_id: job-000001-a1-step-000000000003}\n",
        )
        no_job = TINY_SPEC.split("job:\n")[0] + "# a comment: sent as it is\n"
        cases = {
            "tiny": (TINY_SPEC, []),
            "full": (full, ["train.max_steps=9", "job.priority=4", "job.labels.team=vision"]),
            "no_job_section": (no_job, []),
            "no_job_with_overrides": (no_job, ["optim.lr=2.0e-3", "data.extra=[1, 2]"]),
            "edge_values": (
                no_job + "job: {priority: 0x10, world_size: '1', max_restarts: ~, name: 123,\n"
                "      labels: {a: 1, b: true}}\n---\nsecond: document\n",
                ["new.deep.key=v", "a.=1"],
            ),
        }
        for name, (text, overrides) in cases.items():
            with self.subTest(name):
                path = specs / f"{name}.yaml"
                path.write_text(text)
                ours = peco_client.build_submit_request(
                    path, overrides=overrides, request_id="r-1"
                )
                theirs = cli_request(path, overrides, "r-1")
                self.assertEqual(
                    yaml.safe_load(ours.spec.config_yaml), yaml.safe_load(theirs.spec.config_yaml)
                )
                if name == "no_job_section":
                    self.assertEqual(ours.spec.config_yaml, text)
                    self.assertEqual(theirs.spec.config_yaml, text)
                ours.spec.config_yaml = theirs.spec.config_yaml = ""
                self.assertEqual(ours, theirs)

        bad_cases = {
            "world_size_zero": (TINY_SPEC, ["job.world_size=0"]),
            "no_devices": (TINY_SPEC, ["job.devices_per_rank={gpus: 0, cpu_slots: 0}"]),
            "negative_gpus": (TINY_SPEC, ["job.devices_per_rank.gpus=-1"]),
            "unknown_job_field": (TINY_SPEC, ["job.colour=blue"]),
            "unknown_device_field": (TINY_SPEC, ["job.devices_per_rank.tpus=1"]),
            "priority_not_integer": (TINY_SPEC, ["job.priority=high"]),
            "max_restarts_negative": (TINY_SPEC, ["job.max_restarts=-1"]),
            "empty_name": (TINY_SPEC, ["job.name=''"]),
            "two_dependencies": (TINY_SPEC, ["job.depends_on={job_id: a, checkpoint_id: b}"]),
            "label_not_string": (TINY_SPEC, ["job.labels.team=[1]"]),
            "job_not_mapping": (TINY_SPEC, ["job=3"]),
            "unknown_kind": (TINY_SPEC.replace("kind: tokenizer", "kind: painter"), []),
            "no_kind": (TINY_SPEC.replace("kind: tokenizer\n", ""), []),
            "not_a_mapping": ("- kind\n- tokenizer\n", []),
            "two_job_sections": (TINY_SPEC + "job: {}\n", []),
            "path_through_scalar": (TINY_SPEC, ["seed.value=1"]),
        }
        for name, (text, overrides) in bad_cases.items():
            with self.subTest(name):
                path = specs / f"{name}.yaml"
                path.write_text(text)
                with self.assertRaises(peco_client.SpecError) as ours:
                    peco_client.build_submit_request(path, overrides=overrides)
                code, message = cli_error(path, overrides)
                self.assertEqual(code, 2, message)
                if name == "path_through_scalar":  # the CLI names its flag, the client the item
                    self.assertIn("seed is not a mapping", ours.exception.message)
                    self.assertIn("seed is not a mapping", message)
                else:
                    self.assertEqual(ours.exception.message, message)

        # Bytes that are not UTF-8: the same offset.
        path = specs / "latin1.yaml"
        path.write_bytes(TINY_SPEC.encode() + b"note: caf\xe9\n")
        with self.assertRaises(peco_client.SpecError) as ours:
            peco_client.build_submit_request(path)
        self.assertEqual(ours.exception.message, cli_error(path, [])[1])

    def test_dry_run_stores_nothing(self) -> None:
        if "validate_only" not in job_service_pb2.SubmitJobRequest.DESCRIPTOR.fields_by_name:
            self.skipTest("this proto has no SubmitJobRequest.validate_only")
        client = self.client
        before = len(client.list())
        checked = client.submit(self.spec_path, dry_run=True)
        self.assertEqual(checked.job.id, "")
        self.assertFalse(checked.created)
        self.assertEqual(checked.job.name, "py-client-tiny")
        self.assertEqual(checked.job.labels, {"suite": "python-client"})
        self.assertEqual(checked.job.state, peco_client.JobState.QUEUED)
        with self.assertRaises(peco_client.InvalidArgumentError) as refused:
            client.submit(self.spec_path, overrides=["train.max_steps=many"], dry_run=True)
        self.assertIn("train.max_steps", refused.exception.server_message)
        with self.assertRaises(peco_client.NotFoundError) as no_dependency:
            client.submit(self.spec_path, after="job-424242", dry_run=True)
        self.assertIn("spec.depends_on.job_id", no_dependency.exception.server_message)
        # A fork from a checkpoint that does not exist, checked as a submission.
        spec = peco_client.parse_spec(TINY_SPEC, "tiny")
        spec.init_from.checkpoint_id = "job-424242-a1-step-000000000001"
        with self.assertRaises(peco_client.NotFoundError) as no_checkpoint:
            client.submit(spec, dry_run=True)
        self.assertIn("spec.init_from.checkpoint_id", no_checkpoint.exception.server_message)
        self.assertEqual(len(client.list()), before)


def make_certificates(pki: Path) -> None:
    """A CA and two leaf certificates it signs (coordinator, client) for 127.0.0.1/localhost,
    made with the openssl program; unencrypted P-256 keys."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", "/CN=ca", "-keyout", str(pki / "ca.key"),
        "-out", str(pki / "ca.pem"),
    )  # fmt: skip
    for name in ("coordinator", "client"):
        extensions = pki / f"{name}.ext"
        extensions.write_text(
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", f"/CN={name}", "-keyout", str(pki / f"{name}.key"),
            "-out", str(pki / f"{name}.csr"),
        )  # fmt: skip
        openssl(
            "x509", "-req", "-days", "2", "-in", str(pki / f"{name}.csr"),
            "-CA", str(pki / "ca.pem"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial",
            "-extfile", str(extensions), "-out", str(pki / f"{name}.pem"),
        )  # fmt: skip


def _cli_submit_flag() -> str:
    """The CLI flag that prints the request instead of sending it: --print_request where the CLI
    has it (its --dry_run then asks the coordinator), else --dry_run."""
    usage = subprocess.run(
        [OPTIONS.cli_bin, "submit", "--help"], capture_output=True, text=True, check=False
    ).stdout
    has_print_request = "print-request" in usage or "print_request" in usage
    return "--print_request" if has_print_request else "--dry_run"


def _run_cli(path: Path, overrides: List[str], extra: List[str]) -> subprocess.CompletedProcess:
    argv = [OPTIONS.cli_bin, "--coordinator", "127.0.0.1:1", "--token", "unused", "-o", "json",
            "submit", str(path), _cli_submit_flag(), *extra]  # fmt: skip
    for item in overrides:
        argv += ["--set", item]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def cli_request(path: Path, overrides: List[str], request_id: str):
    """The SubmitJobRequest the CLI prints for a spec file."""
    result = _run_cli(path, overrides, ["--request_id", request_id])
    if result.returncode != 0:
        raise AssertionError(f"peco submit failed ({result.returncode}): {result.stderr}")
    return json_format.Parse(result.stdout, job_service_pb2.SubmitJobRequest())


def cli_error(path: Path, overrides: List[str]):
    """(exit code, message) of the CLI refusing a spec file; the message without the
    "peco submit: " prefix and the usage hint."""
    result = _run_cli(path, overrides, [])
    first_line = result.stderr.splitlines()[0] if result.stderr else ""
    return result.returncode, first_line.removeprefix("peco submit: ")


def _time_limit_reached(*_: Any) -> None:
    """Stops the daemons and exits: the run took longer than TIME_LIMIT_S."""
    print(f"client_test: still running after {TIME_LIMIT_S} s; stopping", file=sys.stderr)
    for cluster in _ALL_CLUSTERS:
        print(cluster.logs(), file=sys.stderr)
    _stop_all_clusters()
    print(f"client_test: kept {OPTIONS.tmp}\n0 passed, 1 failed (time limit)", file=sys.stderr)
    os._exit(1)


def parse_options(argv: List[str]) -> List[str]:
    """Parses this script's options into OPTIONS; returns the arguments left for unittest."""
    global OPTIONS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bin-dir",
        default=os.environ.get("PECO_BIN_DIR", str(REPO / "build")),
        help="build directory holding the binaries (default: $PECO_BIN_DIR, else %(default)s)",
    )
    parser.add_argument("--coordinator-bin", help="peco-coordinator (default: in --bin-dir)")
    parser.add_argument("--worker-bin", help="peco-worker (default: in --bin-dir)")
    parser.add_argument("--train-bin", help="peco-train (default: in --bin-dir)")
    parser.add_argument("--cli-bin", help="peco CLI (default: in --bin-dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    options, rest = parser.parse_known_args(argv)
    bin_dir = Path(options.bin_dir).resolve()
    options.coordinator_bin = options.coordinator_bin or str(
        bin_dir / "coordinator/peco-coordinator"
    )
    options.worker_bin = options.worker_bin or str(bin_dir / "worker/peco-worker")
    options.train_bin = options.train_bin or str(bin_dir / "trainer/peco-train")
    options.cli_bin = options.cli_bin or str(bin_dir / "cli/peco")
    OPTIONS = options
    return rest


def main(argv: List[str]) -> int:
    global peco_client, job_service_pb2, json_format, grpc
    rest = parse_options(argv[1:])
    for required in (OPTIONS.coordinator_bin, OPTIONS.worker_bin, OPTIONS.train_bin):
        if not os.access(required, os.X_OK):
            print(f"client_test: {required} is missing (build peco first, or give --bin-dir)",
                  file=sys.stderr)  # fmt: skip
            return 1
    # Discovery must see only what each test gives it.
    for name in [key for key in os.environ if key.startswith("PECO_")]:
        if name != "PECO_SHARED_CORES":
            del os.environ[name]

    OPTIONS.tmp = tempfile.mkdtemp(prefix="peco_client_test_")
    atexit.register(_stop_all_clusters)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGALRM, _time_limit_reached)
    signal.alarm(TIME_LIMIT_S)

    # The generated modules go to the temporary directory, ahead of anything on the path.
    sys.path.insert(0, str(PYTHON_DIR))
    import generate_stubs

    stubs = Path(OPTIONS.tmp) / "stubs"
    generate_stubs.generate(stubs)
    sys.path.insert(0, str(stubs))
    import grpc as grpc_module
    from google.protobuf import json_format as json_format_module

    import peco_client as client_module
    from peco.v1 import job_service_pb2 as job_service_module

    if not client_module.__file__.startswith(str(PYTHON_DIR)):
        print(f"client_test: testing {client_module.__file__}, not this tree", file=sys.stderr)
    peco_client, job_service_pb2 = client_module, job_service_module
    json_format, grpc = json_format_module, grpc_module

    started = time.monotonic()
    program = unittest.main(
        module=sys.modules[__name__], argv=[argv[0], *rest], exit=False, verbosity=2
    )
    result = program.result
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped - len(result.expectedFailures)
    elapsed = time.monotonic() - started
    _stop_all_clusters()
    if result.wasSuccessful() and not OPTIONS.keep:
        shutil.rmtree(OPTIONS.tmp, ignore_errors=True)
    else:
        print(f"client_test: kept {OPTIONS.tmp}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped ({elapsed:.1f} s)")
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
