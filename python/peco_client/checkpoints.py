"""The checkpoint contract on the client side: receiving a DownloadCheckpoint stream into a
directory, and verifying a checkpoint directory against its MANIFEST (docs/ARCHITECTURE.md,
"The checkpoint contract"; the same rules the CLI's `peco download` applies).

A checkpoint is a directory of files plus a MANIFEST listing each file as
`<sha256> <size> <name>` (64 lower-case hex digits, a decimal size), one line per file, sorted by
name. A download is written into a hidden sibling of the destination, `.<name>.partial`, every
byte hashed as it arrives; only when every file matches the manifest's size and SHA-256 is
MANIFEST written and the staging directory renamed onto the destination, so the destination
holds a verified checkpoint or nothing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, List, Optional

from ._proto import checkpoint_pb2, job_service_pb2
from .errors import (
    AlreadyExistsError,
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from .models import ManifestEntry

MANIFEST_FILE_NAME = "MANIFEST"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_LOWER_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_file_name(name: str) -> None:
    """Raises InvalidArgumentError unless `name` may name a checkpoint file: 1..255 bytes, one
    path component (no '/', not "." or ".."), no whitespace, control or DEL characters, not
    MANIFEST, not starting with '.' (reserved for staging directories and temporaries)."""

    def bad(why: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"checkpoint file name {name!r} {why}")

    if not name:
        raise bad("is empty")
    if len(name.encode("utf-8", errors="surrogatepass")) > 255:
        raise bad("is longer than 255 bytes")
    if name == MANIFEST_FILE_NAME:
        raise bad("is reserved for the manifest")
    if name.startswith("."):
        raise bad("starts with '.' (reserved for staging and temporaries)")
    for char in name:
        if char == "/":
            raise bad("contains '/'")
        if ord(char) <= 0x20 or ord(char) == 0x7F:
            raise bad("contains whitespace or a control character")


def validate_manifest(entries: Iterable[ManifestEntry], source: str) -> List[ManifestEntry]:
    """Checks a manifest that came from the coordinator: at least one entry, every name valid,
    none twice, sizes >= 0, digests of 64 hex digits. Returns it sorted by name with lower-case
    digests. Raises InvalidArgumentError naming `source` and the first bad entry."""
    checked: List[ManifestEntry] = []
    for entry in entries:
        try:
            check_file_name(entry.name)
        except InvalidArgumentError as error:
            raise InvalidArgumentError(f"{source}: {error.message}") from error
        if entry.size < 0:
            raise InvalidArgumentError(f"{source}: {entry.name} has a negative size {entry.size}")
        if not _HEX_DIGEST.fullmatch(entry.sha256):
            raise InvalidArgumentError(f"{source}: {entry.name}: sha256 is not 64 hex digits")
        checked.append(ManifestEntry(entry.name, entry.size, entry.sha256.lower()))
    if not checked:
        raise InvalidArgumentError(f"{source}: lists no files")
    checked.sort(key=lambda item: item.name)
    for previous, current in zip(checked, checked[1:]):
        if previous.name == current.name:
            raise InvalidArgumentError(f"{source}: {current.name} is listed twice")
    return checked


def format_manifest(entries: Iterable[ManifestEntry]) -> str:
    """MANIFEST text for `entries`: `<sha256> <size> <name>` lines sorted by name."""
    return "".join(
        f"{entry.sha256} {entry.size} {entry.name}\n"
        for entry in sorted(entries, key=lambda item: item.name)
    )


def parse_manifest(text: str, source: str) -> List[ManifestEntry]:
    """Parses MANIFEST text (empty lines tolerated); returns the entries sorted by name.

    Raises DataLossError naming `source` and the line of the first malformed line, a bad or
    repeated name, or an empty manifest.
    """
    entries: List[ManifestEntry] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        parts = line.split(" ", 2)
        if (
            len(parts) != 3
            or not _LOWER_HEX_DIGEST.fullmatch(parts[0])
            or not parts[1].isdigit()
        ):
            raise DataLossError(f"{source}: line {number} is not '<sha256> <size> <name>'")
        try:
            check_file_name(parts[2])
        except InvalidArgumentError as error:
            raise DataLossError(f"{source}: line {number}: {error.message}") from error
        entries.append(ManifestEntry(parts[2], int(parts[1]), parts[0]))
    if not entries:
        raise DataLossError(f"{source}: lists no files")
    entries.sort(key=lambda item: item.name)
    for previous, current in zip(entries, entries[1:]):
        if previous.name == current.name:
            raise DataLossError(f"{source}: '{current.name}' is listed twice")
    return entries


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def verify_checkpoint_dir(directory: os.PathLike | str) -> List[ManifestEntry]:
    """Verifies a checkpoint directory: reads its MANIFEST, checks every listed file's size and
    SHA-256, and that no regular file besides MANIFEST is unlisted (a MANIFEST that lost lines).
    Returns the manifest.

    Raises NotFoundError when MANIFEST is missing, DataLossError naming the first damaged file.
    """
    root = Path(directory)
    manifest_path = root / MANIFEST_FILE_NAME
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise NotFoundError(f"{manifest_path}: no such file") from error
    entries = parse_manifest(text, str(manifest_path))
    for entry in entries:
        path = root / entry.name
        if not path.is_file():
            raise DataLossError(f"checkpoint file {path} is listed in MANIFEST but missing")
        size = path.stat().st_size
        if size != entry.size:
            raise DataLossError(
                f"checkpoint file {path} has {size} bytes, MANIFEST says {entry.size}"
            )
        if _file_digest(path) != entry.sha256:
            raise DataLossError(f"checkpoint file {path} does not match its SHA-256 in MANIFEST")
    listed = {entry.name for entry in entries} | {MANIFEST_FILE_NAME}
    for child in sorted(root.iterdir()):
        if child.is_file() and child.name not in listed:
            raise DataLossError(
                f"checkpoint file {child} is not listed in {manifest_path} "
                "(MANIFEST damaged or truncated)"
            )
    return entries


def staging_dir_for(dest: os.PathLike | str) -> Path:
    """The staging directory of a download bound for `dest`: its hidden sibling
    `<parent>/.<name>.partial`, on the same file system so that publishing is one rename."""
    path = Path(os.path.normpath(os.fspath(dest)))
    return path.parent / f".{path.name}.partial"


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass
class _IncomingFile:
    entry: ManifestEntry
    handle: BinaryIO
    received: int = 0
    hasher: Any = field(default_factory=hashlib.sha256)


class CheckpointReceiver:
    """Receives one checkpoint whose manifest is known up front into `dest`.

    Life: the constructor validates the manifest, refuses a `dest` that exists and is not an
    empty directory, and creates a fresh staging directory; `append` writes one chunk; `finish`
    checks every file against the manifest, writes MANIFEST and renames the staging directory
    onto `dest`; `abandon` (also called by `finish` on failure) removes the staging directory.
    Not thread-safe.
    """

    def __init__(self, info: checkpoint_pb2.CheckpointInfo, dest: os.PathLike | str) -> None:
        """Raises InvalidArgumentError for a bad manifest (naming the checkpoint and entry) and
        AlreadyExistsError when `dest` exists and is not an empty directory."""
        self.label = f"checkpoint {info.id}"
        self.dest = Path(os.path.normpath(os.fspath(dest)))
        self.manifest = validate_manifest(
            (ManifestEntry(e.name, e.size, e.sha256) for e in info.manifest), self.label
        )
        if self.dest.exists() and (not self.dest.is_dir() or any(self.dest.iterdir())):
            raise AlreadyExistsError(
                f"{self.label}: {self.dest} exists and is not an empty directory"
            )
        self.staging = staging_dir_for(self.dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir()
        self._expected: Dict[str, ManifestEntry] = {e.name: e for e in self.manifest}
        self._files: Dict[str, _IncomingFile] = {}
        self.bytes_received = 0

    def append(self, chunk: checkpoint_pb2.CheckpointChunk) -> None:
        """Writes one chunk. A file's chunks come in order from offset 0.

        Raises InvalidArgumentError for a file the manifest does not list,
        FailedPreconditionError for a chunk out of order, DataLossError for bytes past the
        listed size.
        """
        name = chunk.file_name
        entry = self._expected.get(name)
        if entry is None:
            raise InvalidArgumentError(f"{self.label}: {name!r} is not in the manifest")
        incoming = self._files.get(name)
        if incoming is None:
            incoming = _IncomingFile(entry, (self.staging / name).open("wb"))
            self._files[name] = incoming
        if chunk.offset != incoming.received:
            raise FailedPreconditionError(
                f"{self.label}: chunk of {name} at offset {chunk.offset}, expected "
                f"{incoming.received}"
            )
        if incoming.received + len(chunk.data) > entry.size:
            raise DataLossError(
                f"{self.label}: {name} has more than the {entry.size} bytes the manifest lists"
            )
        incoming.handle.write(chunk.data)
        incoming.hasher.update(chunk.data)
        incoming.received += len(chunk.data)
        self.bytes_received += len(chunk.data)

    def finish(self) -> List[ManifestEntry]:
        """Verifies every file (a listed empty file needs no chunk), fsyncs them, writes MANIFEST
        and publishes the staging directory at `dest`. Returns the manifest.

        Raises DataLossError for a missing, short or corrupt file and AlreadyExistsError when
        `dest` appeared meanwhile; nothing is left at `dest` on failure.
        """
        try:
            for entry in self.manifest:
                incoming = self._files.get(entry.name)
                if incoming is None:
                    if entry.size != 0:
                        raise DataLossError(f"{self.label}: {entry.name} was not received")
                    incoming = _IncomingFile(entry, (self.staging / entry.name).open("wb"))
                    self._files[entry.name] = incoming
                handle = incoming.handle
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()
                if incoming.received != entry.size:
                    raise DataLossError(
                        f"{self.label}: {entry.name} has {incoming.received} bytes, the "
                        f"manifest lists {entry.size}"
                    )
                if incoming.hasher.hexdigest() != entry.sha256:
                    raise DataLossError(
                        f"{self.label}: {entry.name} does not match its SHA-256 in the manifest"
                    )
            manifest_path = self.staging / MANIFEST_FILE_NAME
            with manifest_path.open("w", encoding="utf-8") as handle:
                handle.write(format_manifest(self.manifest))
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_dir(self.staging)
            try:
                os.rename(self.staging, self.dest)  # replaces an empty directory
            except OSError as error:
                if error.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise AlreadyExistsError(
                        f"{self.label}: {self.dest} exists and is not an empty directory"
                    ) from error
                raise
            _fsync_dir(self.dest.parent)
            return self.manifest
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Closes the files and removes the staging directory (nothing reaches `dest`)."""
        for incoming in self._files.values():
            try:
                incoming.handle.close()
            except OSError:
                pass
        shutil.rmtree(self.staging, ignore_errors=True)


def receive(
    responses: Iterable[job_service_pb2.DownloadCheckpointResponse],
    dest: os.PathLike | str,
    what: str,
) -> checkpoint_pb2.CheckpointInfo:
    """Receives a DownloadCheckpoint stream (the info first, then chunks) into `dest`; returns
    the info once the checkpoint is published. `what` names the call in errors.

    Raises DataLossError for a stream that does not start with the info, has a second info or
    ends early, plus CheckpointReceiver's errors; gRPC errors of the stream propagate as
    grpc.RpcError for the caller to map.
    """
    iterator = iter(responses)
    first: Optional[job_service_pb2.DownloadCheckpointResponse] = next(iterator, None)
    if first is None:
        raise DataLossError(f"{what}: the stream ended before the checkpoint info")
    if first.WhichOneof("part") != "info":
        raise DataLossError(f"{what}: the stream did not start with the checkpoint info")
    info = first.info
    receiver = CheckpointReceiver(info, dest)
    try:
        for message in iterator:
            if message.WhichOneof("part") != "chunk":
                raise DataLossError(f"{what}: a second checkpoint info")
            receiver.append(message.chunk)
    except BaseException:
        receiver.abandon()
        raise
    try:
        receiver.finish()
    except DataLossError as error:
        raise DataLossError(f"{what}: {error.message} (nothing was written to {dest})") from error
    return info


__all__ = [
    "MANIFEST_FILE_NAME",
    "CheckpointReceiver",
    "check_file_name",
    "format_manifest",
    "parse_manifest",
    "receive",
    "staging_dir_for",
    "validate_manifest",
    "verify_checkpoint_dir",
]
