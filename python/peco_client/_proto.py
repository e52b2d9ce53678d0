"""The generated modules of peco's wire contract (package ``peco.v1``).

They are generated, not committed: ``python/generate_stubs.py`` writes them (installing the
package with pip runs it). This module imports them once and turns their absence into an
ImportError that says what to run.
"""

from __future__ import annotations

try:
    from peco.v1 import checkpoint_pb2, job_pb2, job_service_pb2, job_service_pb2_grpc
    from peco.v1 import metrics_pb2, worker_pb2
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        "peco_client needs the generated module package peco.v1: run "
        "'/usr/bin/python3 python/generate_stubs.py' (or install with pip, which generates "
        f"them) and put the directory holding peco/ on PYTHONPATH ({error})"
    ) from error

__all__ = [
    "checkpoint_pb2",
    "job_pb2",
    "job_service_pb2",
    "job_service_pb2_grpc",
    "metrics_pb2",
    "worker_pb2",
]
