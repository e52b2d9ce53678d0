"""Job spec files: the YAML a user submits, turned into a peco.v1.JobSpec exactly as the `peco`
CLI does (docs/SERVICE.md, "Job spec files"; cli/spec_file.h).

A spec file is a trainer config with a top-level `kind` and an optional `job:` section:

    kind: tokenizer                 # contrastive | tokenizer | pretrain | finetune | linear_probe
    ...                             # the trainer config, sent unchanged in meaning
    job:
      name: small-tokenizer         # default: the file name without extension
      world_size: 1                 # >= 1
      devices_per_rank: {gpus: 0, cpu_slots: 1}
      priority: 0
      max_restarts: 5               # >= 0; absent = the coordinator's default
      depends_on: {job_id: job-000001}   # or {checkpoint_id: ...}, exactly one
      labels: {team: vision}        # string -> string

The `job:` section fills the JobSpec fields and is removed from `config_yaml`. When the text has
neither a `job:` section nor overrides it is sent byte for byte (comments kept); otherwise the
document is written again from its parsed node tree: the same keys in the same order and every
scalar with its original text and quoting, so it means the same to the trainer (comments are
dropped).

Overrides are `a.b=value` items (the CLI's `--set`), the value read as YAML, applied to the whole
document, `job:` section included, before anything is read.

Errors are SpecError (INVALID_ARGUMENT) whose message starts with the source (the file path) and
names the dotted field ("spec.yaml: job.world_size: expected an integer >= 1, got 0"); NotFoundError
when the file does not exist.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence, Set, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from ._proto import job_pb2
from .errors import NotFoundError, PecoError, SpecError
from .models import SPEC_KINDS

_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
# An integer as the trainer's YAML library reads one: decimal, 0x hex or 0-prefixed octal.
_INT_PATTERN = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

SpecText = Union[str, bytes]


def _is_null(node: Optional[Node]) -> bool:
    """True for an absent value or a YAML null (`~`, `null`, empty)."""
    return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG)


def _lookup(mapping: MappingNode, key: str) -> Optional[Node]:
    """The value of the first entry of `mapping` whose key is the scalar `key`, else None."""
    for key_node, value_node in mapping.value:
        if isinstance(key_node, ScalarNode) and not _is_null(key_node) and key_node.value == key:
            return value_node
    return None


def _first_non_text_byte(data: bytes) -> Optional[int]:
    """Offset of the first NUL byte or byte that is not part of well-formed UTF-8, or None."""
    bad = data.find(b"\0")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = error.start if bad < 0 else min(bad, error.start)
    return None if bad < 0 else bad


def _as_bytes(text: SpecText) -> bytes:
    if isinstance(text, bytes):
        return text
    return text.encode("utf-8", errors="surrogatepass")


class _Section:
    """One mapping of the spec read strictly, as the CLI's config reader does: each read marks
    its key as known; `finish` reports the first key nothing read (a misspelled field)."""

    def __init__(self, node: Optional[Node], source: str, path: str) -> None:
        self.node = node if isinstance(node, MappingNode) else None
        self.source = source
        self.path = path
        self.known: Set[str] = set()

    def path_of(self, key: str) -> str:
        """The dotted path of `key` in this mapping ("job.devices_per_rank.gpus")."""
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> SpecError:
        return SpecError(f"{self.source}: {self.path_of(key)}: {message}")

    def has(self, key: str) -> bool:
        return self.node is not None and _lookup(self.node, key) is not None

    def take(self, key: str) -> Optional[Node]:
        """The value under `key` (None when absent or null); marks the key known."""
        self.known.add(key)
        if self.node is None:
            return None
        value = _lookup(self.node, key)
        return None if _is_null(value) else value

    def read_int(self, key: str, default: int) -> int:
        """An int32 field; `default` when absent or null."""
        node = self.take(key)
        if node is None:
            return default
        value = _parse_int(node.value) if isinstance(node, ScalarNode) else None
        if value is None or not _INT32_MIN <= value <= _INT32_MAX:
            raise self.error(key, "expected an integer")
        return value

    def read_str(self, key: str, default: str) -> str:
        """A string field (any scalar without control characters); `default` when absent."""
        node = self.take(key)
        if node is None:
            return default
        if isinstance(node, ScalarNode) and not any(
            ord(c) < 0x20 or ord(c) == 0x7F for c in node.value
        ):
            return node.value
        raise self.error(key, "expected a string without control characters")

    def child(self, key: str) -> "_Section":
        """The nested mapping under `key` (empty when absent or null)."""
        node = self.take(key)
        if node is not None and not isinstance(node, MappingNode):
            raise self.error(key, "expected a mapping")
        return _Section(node, self.source, self.path_of(key))

    def finish(self) -> None:
        """Raises SpecError naming the first key of this mapping that no read consumed."""
        if self.node is None:
            return
        known = ", ".join(sorted(self.known))
        for key_node, _ in self.node.value:
            if not isinstance(key_node, ScalarNode) or _is_null(key_node):
                where = f"{self.path}: " if self.path else ""
                raise SpecError(
                    f"{self.source}: {where}unknown field whose key is not a string "
                    f"(known fields here: {known})"
                )
            if key_node.value not in self.known:
                raise SpecError(
                    f"{self.source}: {self.path_of(key_node.value)}: unknown field "
                    f"(known fields here: {known})"
                )


def _parse_int(text: str) -> Optional[int]:
    """The integer `text` spells as the trainer's YAML library reads it (decimal, 0x hex,
    0-prefixed octal, trailing spaces allowed), or None."""
    if not _INT_PATTERN.fullmatch(text):
        return None
    digits = text.strip().lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits, 8)
    return sign * int(digits)


def _read_devices(job: _Section, spec: job_pb2.JobSpec) -> None:
    devices = job.child("devices_per_rank")
    gpus = devices.read_int("gpus", 0)
    cpu_slots = devices.read_int("cpu_slots", 1)
    devices.finish()
    if gpus < 0:
        raise devices.error("gpus", f"expected an integer >= 0, got {gpus}")
    if cpu_slots < 0:
        raise devices.error("cpu_slots", f"expected an integer >= 0, got {cpu_slots}")
    if gpus == 0 and cpu_slots == 0:
        raise SpecError(
            f"{job.source}: job.devices_per_rank: a rank needs gpus >= 1 or cpu_slots >= 1, "
            "got neither"
        )
    spec.devices_per_rank.gpus = gpus
    spec.devices_per_rank.cpu_slots = cpu_slots


def _read_dependency(job: _Section, spec: job_pb2.JobSpec) -> None:
    present = job.node is not None and not _is_null(_lookup(job.node, "depends_on"))
    depends = job.child("depends_on")
    job_id = depends.read_str("job_id", "")
    checkpoint_id = depends.read_str("checkpoint_id", "")
    depends.finish()
    if not present:
        return  # no dependency: depends_on stays unset rather than an empty message
    if bool(job_id) == bool(checkpoint_id):
        raise SpecError(
            f"{job.source}: job.depends_on: expected exactly one of job_id, checkpoint_id "
            "(a non-empty string)"
        )
    if job_id:
        spec.depends_on.job_id = job_id
    else:
        spec.depends_on.checkpoint_id = checkpoint_id


def _read_labels(job: _Section, spec: job_pb2.JobSpec) -> None:
    labels = job.child("labels")
    if labels.node is None:
        return
    for key_node, value_node in labels.node.value:
        if not isinstance(key_node, ScalarNode) or _is_null(key_node):
            raise SpecError(f"{job.source}: job.labels: expected string keys")
        if not key_node.value:
            raise SpecError(f"{job.source}: job.labels: expected non-empty keys")
        if not isinstance(value_node, ScalarNode) or _is_null(value_node):
            raise SpecError(f"{job.source}: job.labels.{key_node.value}: expected a string")
        spec.labels[key_node.value] = value_node.value


def _read_job_section(root: _Section, spec: job_pb2.JobSpec) -> None:
    job = root.child("job")
    name = job.read_str("name", spec.name)
    if not name:
        raise job.error("name", "expected a non-empty string")
    spec.name = name
    world_size = job.read_int("world_size", 1)
    if world_size < 1:
        raise job.error("world_size", f"expected an integer >= 1, got {world_size}")
    spec.world_size = world_size
    _read_devices(job, spec)
    spec.priority = job.read_int("priority", 0)
    if job.has("max_restarts"):
        max_restarts = job.read_int("max_restarts", 0)
        if max_restarts < 0:
            raise job.error("max_restarts", f"expected an integer >= 0, got {max_restarts}")
        spec.max_restarts = max_restarts
    _read_dependency(job, spec)
    _read_labels(job, spec)
    job.finish()


def _first_document(text: str) -> Optional[Node]:
    """The node tree of the first YAML document in `text` (None when there is none); later
    documents are not read, as the trainer's YAML library reads only the first. Raises
    yaml.YAMLError."""
    return next(iter(yaml.compose_all(text, Loader=yaml.SafeLoader)), None)


def _compose(text: str, what: str) -> Optional[Node]:
    """The node tree of `text`; raises SpecError starting with `what` when it is not YAML."""
    try:
        return _first_document(text)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise SpecError(f"{what}: not valid YAML: {detail}") from error


def _key_node(key: str) -> ScalarNode:
    """A new mapping key: a string whatever it looks like (written quoted when it would read
    as another type), since the trainer looks keys up by their text."""
    return ScalarNode(_STR_TAG, key)


def apply_overrides(root: MappingNode, overrides: Sequence[str], source: str) -> None:
    """Applies `a.b=value` items to the mapping `root` in place, creating missing mappings.

    Raises SpecError naming the item when it is not `path=value`, holds a NUL byte or is not
    UTF-8, when its value is not YAML, or when its path runs through a value that is not a
    mapping.
    """
    for item in overrides:
        bad = _first_non_text_byte(_as_bytes(item))
        if bad is not None:
            raise SpecError(
                f"{source}: override {item!r}: not UTF-8 text (byte {bad} is a NUL or not part "
                "of a UTF-8 character)"
            )
        path_text, equals, value_text = item.partition("=")
        if not equals or not path_text:
            raise SpecError(f"{source}: override {item}: expected key.path=value")
        try:
            value = _first_document(value_text)
        except yaml.YAMLError as error:
            raise SpecError(f"{source}: override {item}: value is not YAML") from error
        if value is None:
            value = ScalarNode(_NULL_TAG, "")
        path = path_text.split(".")
        node = root
        for component in path[:-1]:
            child = _lookup(node, component)
            if child is None or _is_null(child):
                child = MappingNode(_MAP_TAG, [], flow_style=False)
                _set(node, component, child)
            elif not isinstance(child, MappingNode):
                raise SpecError(f"{source}: override {item}: {component} is not a mapping")
            node = child
        _set(node, path[-1], value)


def apply_config_overrides(config_yaml: str, overrides: Sequence[str], source: str) -> str:
    """Returns the trainer config `config_yaml` with `a.b=value` items applied (see
    apply_overrides), as the CLI's `peco fork --set` changes a copied job's config; with no
    overrides `config_yaml` itself, unchanged. An empty document counts as an empty mapping.
    The result is written again from the parsed node tree (the same keys in the same order,
    every scalar with its original text; comments dropped).

    Raises SpecError starting with `source`: a bare string given as `overrides`, a config that
    is not YAML or whose top is not a mapping, and apply_overrides' errors.
    """
    if isinstance(overrides, (str, bytes)):
        raise SpecError(
            f"{source}: overrides: expected a list of key.path=value items, not a string"
        )
    if not overrides:
        return config_yaml
    root = _compose(config_yaml, source)
    if root is None or _is_null(root):
        root = MappingNode(_MAP_TAG, [], flow_style=False)
    if not isinstance(root, MappingNode):
        raise SpecError(f"{source}: expected a mapping at the top")
    apply_overrides(root, overrides, source)
    return yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True)


def _set(mapping: MappingNode, key: str, value: Node) -> None:
    """Replaces the value of the first entry `key` of `mapping`, or appends the entry."""
    for index, (key_node, _) in enumerate(mapping.value):
        if isinstance(key_node, ScalarNode) and not _is_null(key_node) and key_node.value == key:
            mapping.value[index] = (key_node, value)
            return
    mapping.value.append((_key_node(key), value))


def parse_spec(
    text: SpecText,
    source: str = "spec",
    default_name: str = "job",
    overrides: Sequence[str] = (),
) -> job_pb2.JobSpec:
    """Parses spec text into a JobSpec, as `peco submit` does.

    `source` names the text in errors (the file path); `default_name` becomes the job name when
    the spec gives none; `overrides` are `a.b=value` items (see apply_overrides).

    Raises SpecError (INVALID_ARGUMENT) naming the source and the dotted field: text that is not
    UTF-8 or holds a NUL byte (with the byte's offset), is not YAML or not a mapping, a missing
    or unknown `kind`, a `job:` section given twice, or a bad `job:` field.
    """
    data = _as_bytes(text)
    bad = _first_non_text_byte(data)
    if bad is not None:
        raise SpecError(
            f"{source}: not UTF-8 text (byte {bad} is a NUL or not part of a UTF-8 character)"
        )
    document = data.decode("utf-8")
    root = _compose(document, source)
    if not isinstance(root, MappingNode):
        raise SpecError(f"{source}: expected a mapping at the top (kind: ..., job: ...)")
    apply_overrides(root, overrides, source)
    job_sections = sum(
        1
        for key_node, _ in root.value
        if isinstance(key_node, ScalarNode) and not _is_null(key_node) and key_node.value == "job"
    )
    if job_sections > 1:
        raise SpecError(f"{source}: job: appears more than once")

    reader = _Section(root, source, "")
    spec = job_pb2.JobSpec()
    if not reader.has("kind"):
        names = ", ".join(kind.spec_name for kind in SPEC_KINDS)
        raise SpecError(f"{source}: kind: missing (one of {names})")
    kind_name = reader.read_str("kind", "")
    kinds = {kind.spec_name: kind for kind in SPEC_KINDS}
    if kind_name not in kinds:
        raise reader.error(
            "kind", f"expected one of {', '.join(kinds)} (got '{kind_name}')"
        )
    spec.kind = int(kinds[kind_name])
    spec.name = default_name
    spec.world_size = 1
    spec.devices_per_rank.gpus = 0
    spec.devices_per_rank.cpu_slots = 1
    has_job = _lookup(root, "job") is not None
    _read_job_section(reader, spec)

    if not has_job and not overrides:
        spec.config_yaml = document
    else:
        root.value = [
            (key_node, value_node)
            for key_node, value_node in root.value
            if not (isinstance(key_node, ScalarNode) and key_node.value == "job")
        ]
        spec.config_yaml = yaml.serialize(root, Dumper=yaml.SafeDumper, allow_unicode=True)
    return spec


def read_spec_file(path: Union[str, os.PathLike], overrides: Sequence[str] = ()) -> job_pb2.JobSpec:
    """Reads and parses the spec file at `path` (see parse_spec); the default job name is the
    file's stem ("configs/tokenizer_small.yaml" -> "tokenizer_small").

    Raises NotFoundError when the file does not exist, PecoError for another read failure, and
    parse_spec's SpecErrors.
    """
    location = os.fspath(path)
    try:
        data = Path(location).read_bytes()
    except FileNotFoundError as error:
        raise NotFoundError(f"reading spec file {location}: no such file") from error
    except OSError as error:
        raise PecoError(f"reading spec file {location}: {error.strerror}") from error
    stem = Path(location).stem
    return parse_spec(data, location, stem or "job", overrides)


__all__ = ["apply_config_overrides", "apply_overrides", "parse_spec", "read_spec_file"]
