#!/usr/bin/python3
"""A standalone peco-train run's record, read back by an independent reader.

Trains a tiny tokenizer for 20 steps (a checkpoint with its preview grid every 10 steps, the
held-out evaluation at the end), then resumes it to step 30, and reads the run directory with
tests/scripts/tensorboard_reader.py (its own record framing, CRC-32C and protobuf decoding of
TensorBoard's schema). Checks: every record's CRCs; each event file opens with the file
version; every numeric field of every `step` and `eval` event in metrics.jsonl is a scalar of the
same step and value (train/<name>, eval/<name>); the config is the text "config"; each
checkpoint's preview.png is an image of its step, byte for byte; metrics.jsonl has an RFC 3339
time on every line and no heartbeats; the resumed run appends to metrics.jsonl and writes a
second event file; a run that fails on a NaN loss ends its metrics.jsonl with the error event.

Usage: run_record_test.py SOURCE_DIR PECO_TRAIN. Prints "N passed, N failed"; exit 1 on a failure.
"""

import datetime
import json
import os
import struct
import subprocess
import sys
import tempfile

SOURCE = sys.argv[1]
PECO_TRAIN = sys.argv[2]
sys.path.insert(0, os.path.join(SOURCE, "tests", "scripts"))
import tensorboard_reader  # noqa: E402

passed = failed = 0


def check(condition, what):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAILED: {what}", file=sys.stderr)


def float32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


CONFIG = """kind: tokenizer
seed: 3
threads: 2
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 8, num_workers: 1, prefetch: 2}
transform: {scale_min: 0.7}
model: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [], z_channels: 32,
        n_embed: 64, embed_dim: 16}
loss: {perceptual_weight: 0}
optim: {lr: 2.0e-3, warmup_steps: 2}
eval: {max_images: 32}
train: {max_steps: 20, log_every: 5, checkpoint_every: 10, keep_checkpoints: 5,
        preview_images: 4, output_dir: %s}
"""


def run(args):
    result = subprocess.run([PECO_TRAIN, "tokenizer"] + args, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, timeout=600)
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
    return result.returncode


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def check_scalars(lines, scalars, label):
    """Every numeric field of every step and eval event is the scalar of its tag and step."""
    count = 0
    for line in lines:
        if line["event"] not in ("step", "eval"):
            continue
        for name, value in line.items():
            if name in ("event", "step", "time") or isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)):
                continue
            tag = "eval/" + name[5:] if name.startswith("eval_") else "train/" + name
            got = scalars.get((tag, line["step"]))
            count += 1
            if got is None or abs(got - float32(value)) > 1e-6 * max(1.0, abs(value)):
                check(False, f"{label}: {tag} at step {line['step']}: {got} != {value}")
                return
    check(count > 10, f"{label}: {count} scalars compared")


with tempfile.TemporaryDirectory(prefix="run_record_") as tmp:
    run_dir = os.path.join(tmp, "run")
    config = os.path.join(tmp, "tokenizer.yaml")
    with open(config, "w") as f:
        f.write(CONFIG % run_dir)
    check(run([f"--config={config}"]) == 0, "the 20-step run succeeds")
    if failed:
        print(f"{passed} passed, {failed} failed")
        sys.exit(1)

    files = tensorboard_reader.event_files(run_dir)
    check(len(files) == 1, f"one event file after the first run: {files}")
    events = tensorboard_reader.read_events(files[0])
    check(events[0].file_version == "brain.Event:2", "the first record is the file version")
    items = tensorboard_reader.summaries(run_dir)
    scalars = {(i["tag"], i["step"]): i["value"] for i in items if i["kind"] == "scalar"}
    lines = jsonl(os.path.join(run_dir, "metrics.jsonl"))
    kinds = [line["event"] for line in lines]
    check(kinds[0] == "start" and kinds[-1] == "completed", f"start ... completed: {kinds}")
    check("heartbeat" not in kinds, "no heartbeats in metrics.jsonl")
    check(kinds.count("step") == 4 and kinds.count("eval") == 1 and kinds.count("checkpoint") == 2,
          f"4 step, 1 eval and 2 checkpoint events: {kinds}")
    times = [datetime.datetime.fromisoformat(line["time"]) for line in lines]
    check(all(t.tzinfo is not None for t in times) and times == sorted(times),
          "every line has an RFC 3339 time with its offset, in order")
    check_scalars(lines, scalars, "first run")
    check(("train/loss", 20) in scalars and ("eval/psnr", 20) in scalars,
          "train/loss and eval/psnr at step 20")

    texts = [i for i in items if i["kind"] == "text"]
    checkpoint = os.path.join(run_dir, "checkpoints", "step-%012d" % 20)
    with open(os.path.join(checkpoint, "config.yaml")) as f:
        config_text = f.read()
    check(len(texts) == 1 and texts[0]["tag"] == "config" and texts[0]["value"] == config_text,
          "the config is the text 'config', as the checkpoint keeps it")

    images = {i["step"]: i["value"] for i in items if i["kind"] == "image"}
    check(sorted(images) == [10, 20], f"a preview image at steps 10 and 20: {sorted(images)}")
    for step in (10, 20):
        with open(os.path.join(run_dir, "checkpoints", "step-%012d" % step, "preview.png"),
                  "rb") as f:
            png = f.read()
        width, height, colorspace, data = images.get(step, (0, 0, 0, b""))
        ihdr_width, ihdr_height = struct.unpack(">II", png[16:24])
        check(data == png and (width, height) == (ihdr_width, ihdr_height) and colorspace == 3,
              f"step {step}: the image is the checkpoint's preview.png ({width}x{height})")

    # Resume to step 30: a second event file, metrics.jsonl appended.
    check(run([f"--config={config}", f"--resume={run_dir}", "--set", "train.max_steps=30"]) == 0,
          "the resumed run to step 30 succeeds")
    files = tensorboard_reader.event_files(run_dir)
    check(len(files) == 2, f"a second event file after resuming: {files}")
    if len(files) == 2:
        second = tensorboard_reader.read_events(files[1])
        check(second[0].file_version == "brain.Event:2", "the second file opens with its version")
    resumed = jsonl(os.path.join(run_dir, "metrics.jsonl"))
    check(resumed[:len(lines)] == lines, "the first run's lines are kept")
    new = resumed[len(lines):]
    check(new and new[0]["event"] == "start" and new[0]["step"] == 20 and
          new[-1]["event"] == "completed" and new[-1]["step"] == 30,
          "the resumed run's lines follow, from step 20 to 30")
    items = tensorboard_reader.summaries(run_dir)
    scalars = {(i["tag"], i["step"]): i["value"] for i in items if i["kind"] == "scalar"}
    check_scalars(resumed, scalars, "both runs")

    # A failed run's error event is in its record too (written after the loop, to stdout).
    failed_dir = os.path.join(tmp, "failed")
    check(run([f"--config={config}", f"--output_dir={failed_dir}", "--set",
               "faults.nan_loss_at_step=3"]) == 3, "a NaN loss ends the run with exit code 3")
    failed_lines = jsonl(os.path.join(failed_dir, "metrics.jsonl"))
    check(failed_lines and failed_lines[-1]["event"] == "error" and
          failed_lines[-1]["code"] == "FAILED_PRECONDITION" and
          "non-finite loss" in failed_lines[-1]["message"],
          f"the record ends with the error event: {failed_lines[-1:]}")

    # A damaged record is detected: flip one byte of a payload.
    with open(files[0], "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0x40
    damaged = os.path.join(tmp, "damaged")
    os.makedirs(damaged)
    with open(os.path.join(damaged, "events.out.tfevents.0.host.1.peco"), "wb") as f:
        f.write(data)
    try:
        tensorboard_reader.summaries(damaged)
        check(False, "a flipped byte is detected by the CRC")
    except tensorboard_reader.CorruptRecord:
        check(True, "")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
