#!/usr/bin/python3
"""Summarises a chrome trace from LibTorch's profiler (peco-bench-mim-step --profile) or from
torch.profiler (bench/baseline/*.py --profile): self time per operator, largest first, and the
share of matrix products, so a step's time can be split into GEMM and everything else.

Usage: bench/trace_summary.py TRACE.json [--top 25]
"""

import argparse
import collections
import json

GEMM = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
        "aten::_slow_conv2d_forward", "aten::convolution_backward", "aten::_convolution",
        "aten::mkldnn_convolution_backward"}


def self_times(events):
    """Self microseconds per operator name: each complete event's duration minus the durations
    of the events nested directly inside it on the same thread."""
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[(e.get("pid"), e.get("tid"))].append(e)
    totals = collections.Counter()
    counts = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, child time]
        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, child = stack.pop()
                totals[done["name"]] += done["dur"] - child
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
            counts[e["name"]] += 1
        while stack:
            done, child = stack.pop()
            totals[done["name"]] += done["dur"] - child
    return totals, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    data = json.load(open(args.trace))
    events = data["traceEvents"] if isinstance(data, dict) else data
    totals, counts = self_times(events)
    total = sum(totals.values())
    gemm = sum(v for k, v in totals.items() if k in GEMM)
    print(f"{args.trace}: {total / 1e6:.3f} s of operator self time, matrix products and "
          f"convolutions {100 * gemm / max(total, 1):.1f}%")
    print(f"{'operator':<48} {'self s':>9} {'share':>7} {'calls':>7}")
    for name, us in totals.most_common(args.top):
        print(f"{name[:48]:<48} {us / 1e6:>9.3f} {100 * us / total:>6.1f}% {counts[name]:>7}")


if __name__ == "__main__":
    main()
