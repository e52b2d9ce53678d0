#!/usr/bin/python3
"""Submits a spec file, watches the job with a progress callback, lists the jobs and downloads
the job's final checkpoint: the peco client's whole path in one script.

    /usr/bin/python3 python/examples/pipeline.py [SPEC.yaml] [--set key=value]... [--out DIR]
        [--coordinator ADDR] [--token TOKEN] [--data-dir DIR] [--tls-ca FILE]

The coordinator is found as the `peco` CLI finds it (python/README.md, "Finding the
coordinator"). SPEC.yaml defaults to examples/tiny_tokenizer.yaml beside this script. Exits 0
when the job succeeded and its checkpoint was downloaded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from peco_client import (
    Client,
    JobState,
    MetricPoint,
    PecoError,
    StateChange,
    TrainerEvent,
    WatchEvent,
)

HERE = Path(__file__).resolve().parent


class ProgressPrinter:
    """A watch callback printing state changes, rank 0's metric points and checkpoints."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.max_steps = 0

    def __call__(self, event: WatchEvent) -> None:
        if isinstance(event, StateChange):
            reason = f": {event.reason}" if event.reason else ""
            print(f"  {event.state.name.lower()} (attempt {event.attempt}){reason}")
        elif isinstance(event, TrainerEvent) and event.rank == 0:
            if event.type == "start":
                self.max_steps = int(event.fields.get("max_steps", 0))
            elif event.type == "checkpoint_committed":
                print(f"  checkpoint committed at step {event.step}")
        elif isinstance(event, MetricPoint) and event.rank == 0:
            of = f"/{self.max_steps}" if self.max_steps else ""
            loss = event.values.get("loss")
            rate = event.values.get("images_per_second")
            parts = [f"step {event.step}{of}"]
            if loss is not None:
                parts.append(f"loss {loss:.4f}")
            if rate is not None:
                parts.append(f"{rate:.1f} img/s")
            print("  " + "  ".join(parts))


def run(args: argparse.Namespace) -> int:
    with Client(
        args.coordinator, token=args.token, data_dir=args.data_dir, tls_ca=args.tls_ca
    ) as client:
        print(f"coordinator {client.endpoint.address} ({client.endpoint.address_source})")
        submission = client.submit(args.spec, overrides=args.set)
        job = submission.job
        print(f"submitted {job.id} ({job.name}, {job.kind.spec_name}, {job.state.name.lower()})")

        state = client.watch(job.id, callback=ProgressPrinter(job.id))
        print(f"{job.id} ended {state.name}")

        print("jobs:")
        for listed in client.list():
            progress = listed.progress
            step = f"step {progress.step}/{progress.max_steps}" if progress.max_steps else ""
            print(f"  {listed.id}  {listed.name:<20} {listed.kind.spec_name:<12} "
                  f"{listed.state.name:<10} {step}")
        if state is not JobState.SUCCEEDED:
            print(f"{job.id}: {client.get(job.id).job.failure_reason}", file=sys.stderr)
            return 1

        finals = [checkpoint for checkpoint in client.checkpoints(job.id) if checkpoint.final]
        final = finals[-1]
        dest = Path(args.out or f"{job.id}-final")
        downloaded = client.download(final.id, dest)
        print(f"downloaded {downloaded.id} (step {downloaded.step}, {len(downloaded.manifest)} "
              f"files, {downloaded.bytes} bytes, SHA-256 verified) to {dest}")
        for entry in downloaded.manifest:
            print(f"  {entry.name:<24} {entry.size:>10}  {entry.sha256[:16]}...")
        return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(HERE / "tiny_tokenizer.yaml"),
                        help="job spec file (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec field, e.g. --set train.max_steps=10 (repeatable)")
    parser.add_argument("--out", help="directory for the final checkpoint (default: JOB-final)")
    parser.add_argument("--coordinator", help="HOST:PORT (else $PECO_COORDINATOR, else the "
                        "data directory's coordinator.addr)")
    parser.add_argument("--token", help="user token (else $PECO_TOKEN, else user.token)")
    parser.add_argument("--data-dir", help="coordinator data directory (else $PECO_DATA_DIR, "
                        "else ~/.local/share/peco)")
    parser.add_argument("--tls-ca", help="PEM CA file: connect over TLS (else $PECO_TLS_CA)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PecoError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
