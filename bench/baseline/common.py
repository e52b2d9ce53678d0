"""Shared helpers of the baseline benchmarks (eager PyTorch following the official BEiT / VQGAN
recipe): common flags, thread setup, timing, the one-line JSON result, and the fp32 norm layers
that stand in for CUDA autocast's fp32 policy on the CPU.

Every benchmark prints progress to stderr and exactly one JSON line on stdout:
  {"bench", "side": "baseline", "preset", "batch", "precision", "threads", "parameters",
   "seconds", "median_seconds", "images_per_second", ...extras}
"""

import argparse
import contextlib
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# The device the timed work runs on (set_device); bench/gpu/run passes --device cuda.
DEVICE = torch.device("cpu")


def set_device(name):
    """Makes `name` (cpu | cuda) the device of autocast() and time_steps(); returns it."""
    global DEVICE
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: this PyTorch sees no CUDA device")
    DEVICE = torch.device(name)
    return DEVICE


def add_common_flags(parser, warmup=3, steps=5):
    """Adds --threads, --warmup, --steps, --seed and --device to `parser`."""
    parser.add_argument("--threads", type=int, default=2,
                        help="torch.set_num_threads(N); inter-op threads are always 1")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=steps, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser


def add_precision_flag(parser):
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16 = torch.autocast('cpu', dtype=torch.bfloat16) around the "
                             "forward passes and losses")
    return parser


def setup_threads(threads):
    """Sets intra-op threads to `threads` and inter-op threads to 1 (call before any torch work)."""
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set or parallel work already started
        pass
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def autocast(precision):
    """bf16 autocast on DEVICE for 'bf16', a no-op context for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_parameters(*modules):
    """Trainable parameters of `modules`."""
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


def time_steps(step, warmup, steps, label="step"):
    """Runs `step()` warmup + steps times; returns the seconds of each timed call (on CUDA each
    call ends with a device synchronisation inside the timed region)."""
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)
    for i in range(warmup):
        t0 = time.perf_counter()
        step()
        sync()
        log(f"warmup {label} {i + 1}/{warmup}: {time.perf_counter() - t0:.3f} s")
    seconds = []
    for i in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        seconds.append(time.perf_counter() - t0)
        log(f"timed {label} {i + 1}/{steps}: {seconds[-1]:.3f} s")
    return seconds


def emit_result(bench, preset, batch, precision, threads, parameters, seconds, **extras):
    """Prints the single JSON result line on stdout."""
    median = statistics.median(seconds)
    result = {
        "bench": bench,
        "side": "baseline",
        "preset": preset,
        "batch": int(batch),
        "precision": precision,
        "threads": int(threads),
        "parameters": int(parameters),
        "seconds": [round(s, 6) for s in seconds],
        "median_seconds": median,
        "images_per_second": batch / median if median > 0 else 0.0,
    }
    result.update(extras)
    print(json.dumps(result), flush=True)
    return result


def check_keys(module, path):
    """Compares `module.state_dict()` names, order and shapes with a key file of lines
    'name [d0, d1, ...]'. Returns a list of mismatch descriptions (empty when equal)."""
    expected = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            name, shape = line.split(" ", 1)
            dims = shape.strip("[]").replace(" ", "")
            expected.append((name, tuple(int(d) for d in dims.split(",") if d)))
    actual = [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
    problems = []
    exp_map, act_map = dict(expected), dict(actual)
    for name, shape in expected:
        if name not in act_map:
            problems.append(f"missing: {name} {list(shape)}")
        elif act_map[name] != shape:
            problems.append(f"shape: {name} expected {list(shape)}, got {list(act_map[name])}")
    for name, shape in actual:
        if name not in exp_map:
            problems.append(f"unexpected: {name} {list(shape)}")
    if not problems and [n for n, _ in expected] != [n for n, _ in actual]:
        problems.append("same names and shapes, different order")
    return problems


def run_key_check(module, path):
    """Logs the result of check_keys; exits with status 1 on a mismatch."""
    problems = check_keys(module, path)
    if problems:
        for p in problems[:20]:
            log("key check:", p)
        log(f"key check FAILED against {path}: {len(problems)} problems")
        sys.exit(1)
    log(f"key check OK: {len(module.state_dict())} entries equal {path} (names, order, shapes)")


class Fp32LayerNorm(nn.LayerNorm):
    """nn.LayerNorm computed in fp32. CUDA autocast (where the official code runs) keeps
    layer_norm in fp32; CPU autocast in PyTorch 1.13 has no such rule and fails on a bf16 input
    with fp32 weights, so the cast is explicit. Same parameters and state_dict names."""

    def forward(self, x):
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


class Fp32GroupNorm(nn.GroupNorm):
    """nn.GroupNorm computed in fp32 (as CUDA autocast does); see Fp32LayerNorm."""

    def forward(self, x):
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


def make_parser(description):
    return argparse.ArgumentParser(description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
