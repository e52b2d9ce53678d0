#!/usr/bin/python3
"""bench/run's driver: peco against the eager-PyTorch baseline, side by side in one run.

Every case runs both sides `--reps` times, alternating which goes first, so that both see the
same machine load; each side's run reports the median of its timed steps, the case reports the
median over repetitions of each side's rate and the median of the per-repetition ratios
peco / baseline. MFU is each side's achieved model FLOP/s against the dense-matmul peak that
peco-bench-peak measures in the same run (before and after the cases; the higher is used).

The table replaces the part of docs/BENCHMARKS.md between the `bench/run` markers; the raw
result lines go to build/bench/results.jsonl.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The baseline's interpreter: Debian's, whose python3-torch uses the same LibTorch as peco;
# bench/gpu/run points it at the CUDA PyTorch of a GPU machine.
PYTHON = os.environ.get("PECO_BENCH_PYTHON", "/usr/bin/python3")
BEGIN = "<!-- bench/run:begin -->"
END = "<!-- bench/run:end -->"


class BenchError(RuntimeError):
    pass


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(argv, timeout, env=None):
    """Runs argv from the repository root; returns stdout. Raises BenchError with its stderr."""
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    return proc.stdout


def last_json(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise BenchError("no JSON result line on stdout")
    return json.loads(lines[-1])


def trainer_steps(stdout, warmup):
    """A result line from peco-train's NDJSON events (train.log_every=1): the step times after
    `warmup` steps, the parameter count and thread count of its start event."""
    events = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
    start = next((e for e in events if e.get("event") == "start"), None)
    steps = [e for e in events if e.get("event") == "step"]
    if start is None or len(steps) <= warmup:
        raise BenchError(f"peco-train logged {len(steps)} steps, expected > {warmup}")
    timed = steps[warmup:]
    seconds = [e["step_seconds"] for e in timed]
    batch = round(timed[0]["images_per_second"] * timed[0]["step_seconds"])
    median = statistics.median(seconds)
    return {"side": "peco", "parameters": start.get("parameters", 0),
            "threads": start.get("threads", 0), "batch": batch, "seconds": seconds,
            "median_seconds": median, "images_per_second": batch / median,
            "data_wait_share": statistics.median(e.get("data_wait_share", 0) for e in timed)}


class Context:
    """Paths and settings shared by the cases of one run."""

    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.build = os.path.join(ROOT, args.build)
        self.threads = args.threads
        self.jpegs = os.path.join(work, "jpegs")
        self.tokenizers = {}

    def bin(self, name):
        sub = "trainer" if name == "peco-train" else "bench"
        return os.path.join(self.build, sub, name)

    def baseline(self, script, *flags):
        return [PYTHON, os.path.join("bench", "baseline", script), "--threads",
                str(self.threads), "--device", self.args.device, *flags]

    def prepare_jpegs(self):
        if not os.path.isdir(self.jpegs):
            log(f"writing {self.args.jpegs} JPEG photographs to {self.jpegs}")
            run([PYTHON, "bench/baseline/make_jpegs.py", "--out", self.jpegs, "--count",
                 str(self.args.jpegs)], timeout=600)
        return self.jpegs

    def tokenizer(self, preset):
        """A peco tokenizer checkpoint of `preset` (one step; only its shapes matter here)."""
        if preset not in self.tokenizers:
            out = os.path.join(self.work, f"tokenizer_{preset}")
            sets = ["train.max_steps=1", "train.precision=fp32", "train.device=cpu",
                    "train.log_every=1"]
            if preset == "paper":
                sets += ["data.source=synthetic", "data.synthetic_size=8", "data.batch_size=2",
                         "data.num_workers=1"]
            log(f"training a one-step {preset} tokenizer for the end-to-end case")
            argv = [self.bin("peco-train"), "tokenizer", "--config",
                    f"configs/tokenizer_{preset}.yaml", "--output_dir", out,
                    "--set", f"threads={self.threads}"]
            for s in sets:
                argv += ["--set", s]
            run(argv, timeout=1800)
            self.tokenizers[preset] = out
        return self.tokenizers[preset]


def timed_trainer_run(ctx, kind, config, steps, precision, sets):
    """Runs `peco-train KIND` for warm-up + timed steps, logging every step, never checkpointing,
    with `sets` on top; returns the result line of the timed steps."""
    warmup, timed = steps
    argv = [ctx.bin("peco-train"), kind, "--config", config, "--output_dir",
            tempfile.mkdtemp(dir=ctx.work)]
    common = [f"train.max_steps={warmup + timed}", f"train.precision={precision}",
              f"train.device={ctx.args.device}", "train.log_every=1",
              "train.checkpoint_every=1000000000", f"threads={ctx.threads}"]
    for x in common + sets:
        argv += ["--set", x]
    return trainer_steps(run(argv, timeout=3600), warmup)


def mim_step(preset, batch, precision):
    def peco(ctx):
        w, s = ctx.args.mim_steps[preset]
        return last_json(run([ctx.bin("peco-bench-mim-step"), "--preset", preset, "--batch",
                              str(batch), "--precision", precision, "--warmup", str(w),
                              "--steps", str(s), "--threads", str(ctx.threads), "--device",
                              ctx.args.device, "--format", "json"], timeout=3600))

    def baseline(ctx):
        w, s = ctx.args.mim_steps[preset]
        return last_json(run(ctx.baseline("mim_step.py", "--preset", preset, "--batch",
                                          str(batch), "--precision", precision, "--warmup",
                                          str(w), "--steps", str(s)), timeout=3600))
    return peco, baseline


def tokenizer_step(preset, batch, precision):
    def peco(ctx):
        sets = [f"data.batch_size={batch}"]
        if preset == "paper" or ctx.args.device == "cuda":
            sets += ["data.source=synthetic", "data.synthetic_size=64", "data.num_workers=1"]
        return timed_trainer_run(ctx, "tokenizer", f"configs/tokenizer_{preset}.yaml",
                                 ctx.args.tokenizer_steps[preset], precision, sets)

    def baseline(ctx):
        w, s = ctx.args.tokenizer_steps[preset]
        flags = ["--preset", preset, "--batch", str(batch), "--precision", precision,
                 "--warmup", str(w), "--steps", str(s)]
        if ctx.args.device == "cuda":
            flags.append("--synthetic")  # as peco's side: no Fashion-MNIST on a GPU machine
        return last_json(run(ctx.baseline("tokenizer_step.py", *flags), timeout=3600))
    return peco, baseline


def data_pipeline(batch):
    def peco(ctx):
        return last_json(run([ctx.bin("peco-bench-data-pipeline"), "--path",
                              ctx.prepare_jpegs(), "--batch", str(batch), "--threads",
                              str(ctx.threads), "--warmup", "2", "--steps",
                              str(ctx.args.data_steps), "--format", "json"], timeout=1800))

    def baseline(ctx):
        return last_json(run(ctx.baseline("data_pipeline.py", "--root", ctx.prepare_jpegs(),
                                          "--batch", str(batch), "--warmup", "2", "--steps",
                                          str(ctx.args.data_steps)), timeout=1800))
    return peco, baseline


def e2e_pretrain(preset, batch):
    def peco(ctx):
        sets = [f"data.batch_size={batch}", f"data.num_workers={ctx.threads}",
                f"tokenizer.checkpoint={ctx.tokenizer(preset)}"]
        if preset == "paper":
            sets += ["data.source=image_folder", f"data.path={ctx.prepare_jpegs()}"]
        return timed_trainer_run(ctx, "pretrain", f"configs/pretrain_{preset}.yaml",
                                 ctx.args.e2e_steps[preset], "fp32", sets)

    def baseline(ctx):
        w, s = ctx.args.e2e_steps[preset]
        flags = ["--preset", preset, "--batch", str(batch), "--warmup", str(w), "--steps",
                 str(s)]
        if preset == "paper":
            flags += ["--root", ctx.prepare_jpegs()]
        return last_json(run(ctx.baseline("e2e_pretrain.py", *flags), timeout=3600))
    return peco, baseline


# name, precision, batch, target ratio, sides, needs bf16 hardware to run by default
def cases():
    base, small = "beit_base_patch16_224_8k_vocab", "beit_small_fashion_mnist"
    out = []
    for precision in ("fp32", "bf16"):
        out.append(("MIM step, ViT-B/16 224", precision, 8, 1.25,
                    mim_step(base, 8, precision)))
        out.append(("MIM step, small preset", precision, 64, 2.0,
                    mim_step(small, 64, precision)))
        out.append(("tokenizer step, paper preset", precision, 2, 1.25,
                    tokenizer_step("paper", 2, precision)))
        out.append(("tokenizer step, small preset", precision, 32, 2.0,
                    tokenizer_step("small", 32, precision)))
    out.append(("data pipeline, JPEG 224+224", "-", 64, 2.0, data_pipeline(64)))
    out.append(("end-to-end pretraining, ViT-B/16", "fp32", 8, 1.5, e2e_pretrain("paper", 8)))
    out.append(("end-to-end pretraining, small", "fp32", 64, 1.5, e2e_pretrain("small", 64)))
    return out


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def peak(ctx):
    """The dense-matmul peak per precision; empty (no MFU column) if it cannot be measured."""
    try:
        rows = run([ctx.bin("peco-bench-peak"), "--threads", str(ctx.threads), "--device",
                    ctx.args.device, "--format", "json"], timeout=1200)
    except (BenchError, subprocess.TimeoutExpired) as e:
        log(f"FAILED matmul peak: {e}")
        return {}
    return {r["precision"]: r["tflops"]
            for r in (json.loads(l) for l in rows.splitlines() if l.startswith("{"))}


def mfu(result, flops_per_image, peak_tflops):
    if not flops_per_image or not peak_tflops:
        return None
    return result["images_per_second"] * flops_per_image / 1e12 / peak_tflops


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer steps")
    parser.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                        help="run the bf16 cases (auto: only on CPUs with bf16 hardware)")
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--jpegs", type=int, default=256)
    parser.add_argument("--out", default="docs/BENCHMARKS.md")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: the step cases on the GPU (bench/gpu/run)")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    # (warm-up, timed) steps per side and repetition.
    args.mim_steps = {"beit_base_patch16_224_8k_vocab": (1, 3), "beit_small_fashion_mnist": (2, 5)}
    args.tokenizer_steps = {"paper": (1, 3), "small": (3, 10)}
    args.e2e_steps = {"paper": (1, 3), "small": (3, 10)}
    args.data_steps = 15 if args.quick else 30
    if args.quick:
        args.mim_steps = {k: (1, 2) for k in args.mim_steps}
        args.tokenizer_steps = {"paper": (1, 2), "small": (2, 4)}
        args.e2e_steps = {"paper": (1, 2), "small": (2, 4)}
    if args.device == "cuda":
        # A GPU step takes milliseconds: more of them, and warm-up past cuDNN's and cuBLAS's
        # first-call heuristics.
        n = 10 if args.quick else 30
        args.mim_steps = {k: (5, n) for k in args.mim_steps}
        args.tokenizer_steps = {"paper": (3, n // 2), "small": (5, n)}

    flags = cpu_flags()
    bf16_hw = args.device == "cuda" or bool(flags & {"avx512_bf16", "amx_bf16"})
    run_bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and bf16_hw)
    selected = [c for c in cases()
                if not args.only or any(s and s in c[0] for s in args.only.split(","))]

    os.makedirs(os.path.join(ROOT, args.build, "bench"), exist_ok=True)
    results_path = os.path.join(ROOT, args.build, "bench", "results.jsonl")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="peco-bench-") as work, \
            open(results_path, "w") as raw:
        ctx = Context(args, work)
        peaks = [peak(ctx)]
        log(f"matmul peak: {peaks[0]}")
        rows = []
        for name, precision, batch, target, (peco, baseline) in selected:
            if precision == "bf16" and not run_bf16:
                rows.append({"name": name, "precision": precision, "batch": batch,
                             "target": target, "skipped": True})
                continue
            per_side = {"peco": [], "baseline": []}
            ratios = []
            failure = None
            for rep in range(args.reps):
                order = [("peco", peco), ("baseline", baseline)]
                if rep % 2 == 1:
                    order.reverse()
                rep_result = {}
                for side, fn in order:
                    log(f"{name} [{precision}] rep {rep + 1}/{args.reps}: {side}")
                    try:
                        result = fn(ctx)
                    except (BenchError, subprocess.TimeoutExpired) as e:
                        failure = f"{side}: {e}"
                        log(f"FAILED {failure}")
                        break
                    result.update({"case": name, "side": side, "rep": rep})
                    raw.write(json.dumps(result) + "\n")
                    raw.flush()
                    rep_result[side] = result
                    per_side[side].append(result)
                    log(f"  {result['images_per_second']:.3f} images/s")
                if failure:
                    break
                ratios.append(rep_result["peco"]["images_per_second"] /
                              rep_result["baseline"]["images_per_second"])
            rows.append({"name": name, "precision": precision, "batch": batch, "target": target,
                         "per_side": per_side, "ratios": ratios, "failure": failure})
            # The table so far, so that a run cut short still leaves its finished cases.
            publish(args, rows, peaks, flags, bf16_hw, run_bf16, started, load_before)
        peaks.append(peak(ctx))
        log(f"matmul peak after: {peaks[1]}")
    table = publish(args, rows, peaks, flags, bf16_hw, run_bf16, started, load_before)
    print(table)
    log(f"wrote {args.out}")
    return 1 if any(r.get("failure") for r in rows) else 0


def publish(args, rows, peaks, flags, bf16_hw, run_bf16, started, load_before):
    """Renders the table of `rows` and writes it into args.out (if any); returns it."""
    peak_tflops = {p: max(x.get(p, 0) for x in peaks) for p in ("fp32", "bf16")}
    finished = datetime.datetime.now(datetime.timezone.utc)
    table = render(args, rows, peaks, peak_tflops, flags, bf16_hw, run_bf16, started, finished,
                   load_before, os.getloadavg())
    if args.out:
        write_section(os.path.join(ROOT, args.out), table)
    return table


def render(args, rows, peaks, peak_tflops, flags, bf16_hw, run_bf16, started, finished,
           load_before, load_after):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    import torch  # the baseline's PyTorch; peco links the same Debian LibTorch
    def peak_text(precision):
        return " / ".join(f"{p.get(precision, 0):.3f}" for p in peaks)

    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    gpu = ""
    if args.device == "cuda":
        gpu = f" GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}), both sides on it."
    out = [BEGIN, "",
           f"Measured by `bench/run{' --quick' if args.quick else ''}` at commit `{commit}`"
           f"{' (with uncommitted changes)' if dirty else ''}, {started:%Y-%m-%d %H:%M}-"
           f"{finished:%H:%M} UTC. Machine: {cpu_model()}, {os.cpu_count()} cores "
           f"({', '.join(isa) or 'no AVX2'}), {args.threads} threads per side;{gpu} PyTorch "
           f"{torch.__version__} for the baseline, the same LibTorch for peco. Load "
           f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after. Dense-matmul peak "
           f"(peco-bench-peak, before / after): fp32 {peak_text('fp32')} TFLOP/s, bf16 "
           f"{peak_text('bf16')} TFLOP/s; MFU uses the higher.",
           "",
           f"Each case: {args.reps} repetition(s) per side, alternating which side goes first; "
           "images/s are medians over repetitions of each run's median step; the ratio is the "
           "median of the per-repetition ratios peco / baseline.",
           "",
           "| case | precision | batch | peco images/s | baseline images/s | ratio | target "
           "| per-rep ratios | peco MFU | baseline MFU | met |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['name']} | {r['precision']} | {r['batch']} |"
        if r.get("skipped"):
            why = ("not run: this CPU has no bf16 hardware (no AVX512-BF16 / AMX); bf16 "
                   f"matmul peak {peak_tflops['bf16']:.3f} vs fp32 {peak_tflops['fp32']:.3f} "
                   "TFLOP/s; `bench/run --bf16 yes` runs it")
            out.append(f"{head} - | - | - | {r['target']:.2f}x | {why} | - | - | - |")
            continue
        if r.get("failure") and not r["ratios"]:
            out.append(f"{head} - | - | - | {r['target']:.2f}x | failed: "
                       f"{r['failure'].splitlines()[0][:120]} | - | - | no |")
            continue
        ips = {s: statistics.median(x["images_per_second"] for x in r["per_side"][s])
               for s in ("peco", "baseline")}
        ratio = statistics.median(r["ratios"])
        flops = next((x.get("flops_per_image") for s in ("peco", "baseline")
                      for x in r["per_side"][s] if x.get("flops_per_image")), None)
        p = peak_tflops["bf16" if r["precision"] == "bf16" else "fp32"]
        m = {s: mfu({"images_per_second": ips[s]}, flops, p) for s in ips}
        met = "yes" if ratio >= r["target"] else "no"
        out.append(f"{head} {ips['peco']:.3f} | {ips['baseline']:.3f} | {ratio:.2f}x | "
                   f"{r['target']:.2f}x | {', '.join(f'{x:.2f}' for x in r['ratios'])} | "
                   f"{fmt_pct(m['peco'])} | {fmt_pct(m['baseline'])} | {met} |")
    out += ["", END]
    return "\n".join(out)


def write_section(path, table):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + table + tail
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
