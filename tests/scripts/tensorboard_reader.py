#!/usr/bin/python3
"""An independent reader of TensorBoard event files, for the test suite.

It shares nothing with peco's writer (common/tensorboard_events.cc): the record framing is
parsed here, each length and payload is checked against its masked CRC-32C computed with the
crc32c module (Debian's python3-crc32c; a bitwise CRC here when that is missing), and each
payload is decoded by the protobuf runtime with TensorBoard's schema
(tests/data/tensorboard/event.proto, compiled with protoc at load time).

Usage as a program: tensorboard_reader.py DIR prints every event of DIR's event files, one a
line: "<step> <kind> <tag> <value>".
"""

import glob
import importlib
import os
import struct
import subprocess
import sys
import tempfile

_SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tensorboard")

try:
    import crc32c as _crc32c_module

    def crc32c(data):
        return _crc32c_module.crc32c(data)
except ImportError:  # pragma: no cover - python3-crc32c is in scripts/setup
    def crc32c(data):
        crc = 0xFFFFFFFF
        for byte in data:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_event_pb2 = None


def event_pb2():
    """The generated module of event.proto (compiled once per process into a temp dir)."""
    global _event_pb2
    if _event_pb2 is None:
        out = tempfile.mkdtemp(prefix="tensorboard_schema_")
        subprocess.run(["protoc", f"--python_out={out}", f"-I{os.path.abspath(_SCHEMA)}",
                        "event.proto"], check=True, cwd=os.path.abspath(_SCHEMA))
        sys.path.insert(0, out)
        _event_pb2 = importlib.import_module("event_pb2")
    return _event_pb2


class CorruptRecord(Exception):
    pass


def read_records(path):
    """The payloads of the records of one event file; CorruptRecord on a bad length or CRC."""
    with open(path, "rb") as f:
        data = f.read()
    records, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 12:
            raise CorruptRecord(f"{path}: truncated header at byte {offset}")
        header = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if length_crc != masked_crc32c(header):
            raise CorruptRecord(f"{path}: length CRC mismatch at byte {offset}")
        start = offset + 12
        if start + length + 4 > len(data):
            raise CorruptRecord(f"{path}: truncated record at byte {offset}")
        payload = data[start:start + length]
        (payload_crc,) = struct.unpack("<I", data[start + length:start + length + 4])
        if payload_crc != masked_crc32c(payload):
            raise CorruptRecord(f"{path}: payload CRC mismatch at byte {offset}")
        records.append(payload)
        offset = start + length + 4
    return records


def read_events(path):
    """The decoded Event messages of one event file."""
    pb = event_pb2()
    events = []
    for payload in read_records(path):
        event = pb.Event()
        event.ParseFromString(payload)
        events.append(event)
    return events


def event_files(directory):
    return sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*")))


def summaries(directory):
    """Every summary value in DIR's event files, in order, as dicts:
    {"file", "step", "wall_time", "tag", "kind": scalar|image|text, "value"} where value is the
    float, the (width, height, colorspace, png bytes) or the text."""
    out = []
    for path in event_files(directory):
        for event in read_events(path):
            if event.WhichOneof("what") != "summary":
                continue
            for value in event.summary.value:
                kind = value.WhichOneof("value")
                item = {"file": path, "step": event.step, "wall_time": event.wall_time,
                        "tag": value.tag}
                if kind == "simple_value":
                    item.update(kind="scalar", value=value.simple_value)
                elif kind == "image":
                    image = value.image
                    item.update(kind="image", value=(image.width, image.height, image.colorspace,
                                                     image.encoded_image_string))
                elif kind == "tensor" and value.metadata.plugin_data.plugin_name == "text":
                    item.update(kind="text", value=value.tensor.string_val[0].decode())
                else:
                    item.update(kind=kind, value=None)
                out.append(item)
    return out


if __name__ == "__main__":
    for item in summaries(sys.argv[1]):
        value = item["value"]
        if item["kind"] == "image":
            value = f"{value[0]}x{value[1]} png {len(value[3])} bytes"
        elif item["kind"] == "text":
            value = f"{len(value)} characters"
        print(item["step"], item["kind"], item["tag"], value)
