"""Build hook of the peco client: generates the peco.v1 modules before setuptools packages them.

The metadata lives in pyproject.toml. The modules are generated from ../proto (the repository's
wire contract) into ./peco/v1 on every build, so an installed client always matches the protos
it was built from; a source tree without ../proto must already hold them.
"""

import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate_stubs  # noqa: E402  (beside this file)

if (HERE.parent / "proto" / "peco" / "v1").is_dir():
    generate_stubs.generate(HERE, HERE.parent / "proto")
elif not (HERE / "peco" / "v1" / "job_service_pb2_grpc.py").is_file():
    raise SystemExit(
        "peco-client: neither ../proto nor generated modules in peco/v1; build from the "
        "repository's python/ folder"
    )

setup()
