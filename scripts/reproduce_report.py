#!/usr/bin/python3
"""Writes the report of a scripts/reproduce run: report.md, results.json and figures/.

Reads what the script collected in DIR: jobs.tsv (name, job id, arm, stage, seed), and per job
jobs/NAME.json (`peco get -o json`) and jobs/NAME.ndjson (`peco watch -o json`: the job's state
changes and metric points, every attempt). After a restart the points of the newest attempt win
for the steps it trained again, as the service's own curves do.

The report puts the sanity gates first (raw-pixel floors, the from-scratch fine-tune, the MoCo
network against the pixels, the positive control, the tokenizers' PSNR), then the pre-registered
primary endpoint, c - b on the k-NN and linear readouts of the frozen backbone paired by seed
with a t-based 95% interval, the secondary endpoint (fine-tuning with 100 labels per class), the
controls, the tokenizers, how flat each training curve ended, the step rates and every job.

Usage: reproduce_report.py --dir DIR [--wall_seconds S] [--commit REV] [--mode full|quick]
                           [--scratch_gate RUN_DIR]
"""

import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
import statistics
import sys

import yaml

ARMS = {
    "a": "(a) no pre-training (random backbone)",
    "b": "(b) MIM, pixel-only VQ tokenizer",
    "c": "(c) MIM, perceptual tokenizer, MoCo v3 network (PeCo)",
    "c-rand": "(c-rand) MIM, perceptual tokenizer, random network (negative control)",
    "c-sup": "(c-sup) MIM, perceptual tokenizer, supervised network (positive control)",
}
ENDPOINTS = {
    "knn": ("linear_probe", "eval_knn_top1", "k-NN top-1 (%)"),
    "linear": ("linear_probe", "eval_linear_top1", "linear top-1 (%)"),
    "finetune_100": ("finetune", "eval_top1", "fine-tune, 100 labels/class, top-1 (%)"),
}
PRIMARY = ("knn", "linear")
TRAIN_IMAGES = 60000
SCRATCH_TARGET = 88.0  # the from-scratch fine-tune a working harness reaches on Fashion-MNIST
PSNR_TOLERANCE_DB = 1.0
# Two-sided 95% quantiles of Student's t by degrees of freedom; beyond the table, its last entry
# (a slightly wide interval, never a narrow one).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
       17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df):
    keys = [k for k in sorted(T95) if k <= df]
    return T95[keys[-1]]


def load_job(directory, name):
    with open(os.path.join(directory, "jobs", name + ".json")) as f:
        record = json.load(f)
    points = []
    path = os.path.join(directory, "jobs", name + ".ndjson")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                point = event.get("metric_point")
                if point:
                    points.append((int(point.get("attempt", 0)), int(point.get("step", 0)),
                                   point.get("values", {})))
    return record, points


def newest_attempt_curves(points):
    """{step: values} of training points and of evaluation points; in each, an attempt's points
    replace every older attempt's from the first step that attempt reported there. A point that
    carries both (the service may merge a step's training and evaluation values) feeds both:
    its eval_* values the evaluations, the others the training curve."""
    by_attempt = {}
    for attempt, step, values in points:
        by_attempt.setdefault(attempt, []).append((step, values))
    train, evals = {}, {}
    for attempt in sorted(by_attempt):
        rows = sorted(by_attempt[attempt], key=lambda r: r[0])
        for table, is_eval in ((train, False), (evals, True)):
            mine = []
            for step, values in rows:
                part = {k: v for k, v in values.items() if k.startswith("eval_") == is_eval}
                if part:
                    mine.append((step, part))
            if not mine:
                continue
            for step in [s for s in table if s >= mine[0][0]]:
                del table[step]
            for step, values in mine:
                table.setdefault(step, {}).update(values)
    return train, evals


def last(table, key):
    for step in sorted(table, reverse=True):
        if key in table[step]:
            return table[step][key]
    return None


def stats(values):
    """mean, sample std, n and the half-width of the t-based 95% interval of the mean."""
    values = [v for v in values if v is not None]
    if not values:
        return dict(mean=None, std=None, n=0, half=None, values=values)
    if len(values) == 1:
        return dict(mean=values[0], std=None, n=1, half=None, values=values)
    mean, std = statistics.mean(values), statistics.stdev(values)
    return dict(mean=mean, std=std, n=len(values), half=t95(len(values) - 1) * std /
                math.sqrt(len(values)), values=values)


def fmt(value, digits=2, unit=""):
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def fmt_ci(s, digits=2):
    if s["mean"] is None:
        return "n/a"
    if s["half"] is None:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['half']:.{digits}f}"


def minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds is not None else "n/a"


def job_time(job, name):
    """A job timestamp in seconds: `peco get -o json` writes RFC 3339 (start_time); records
    written before it did hold microseconds (start_time_us)."""
    if job.get(name):
        return datetime.datetime.fromisoformat(job[name]).timestamp()
    micros = int(job.get(name + "_us", 0) or 0)
    return micros / 1e6 if micros else None


def job_seconds(record):
    job = record["job"]
    start, end = job_time(job, "start_time"), job_time(job, "end_time")
    return end - start if start and end else None


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def endpoint_value(job, key):
    if job is None:
        return None
    value = last(job["eval"], key)
    if value is None and key == "eval_linear_top1":
        value = last(job["eval"], "eval_top1")
    return value


def scratch_gate(run_dir):
    """The final top-1 of a finetune run directory (its newest checkpoint's trainer_state.json),
    with the checkpoint it came from."""
    if not run_dir:
        return None
    states = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*", "trainer_state.json")))
    if not states:
        return dict(error=f"{run_dir} holds no checkpoint")
    with open(states[-1]) as f:
        state = json.load(f)
    if state.get("kind") != "finetune":
        return dict(error=f"{states[-1]} is a {state.get('kind')} checkpoint, not a finetune one")
    return dict(top1=state.get("eval_top1"), step=state.get("step"),
                checkpoint=os.path.dirname(states[-1]), backbone=state.get("backbone"))


def flatness(job):
    """(metric, value at 3/4 of the run, value at the end, change) of a training job's main
    curve: how much it still moved in its last quarter."""
    metric = {"tokenizer": "loss_pixel", "pretrain": "loss", "contrastive": "loss",
              "supervised": "loss"}.get(job["stage"])
    if metric is None or not job["train"]:
        return None
    steps = sorted(s for s in job["train"] if metric in job["train"][s])
    if len(steps) < 4:
        return None
    end = steps[-1]
    quarter = min(steps, key=lambda s: abs(s - 0.75 * end))
    # The mean of three points around each, so one noisy window does not decide.
    def around(step):
        i = steps.index(step)
        window = steps[max(0, i - 1):i + 2]
        return statistics.mean(job["train"][s][metric] for s in window)
    a, b = around(quarter), around(end)
    return dict(metric=metric, at_three_quarters=a, at_end=b, change=(b - a) / abs(a) if a else None)


def plot(results, directory):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("reproduce_report: matplotlib missing (scripts/setup --reproduce); no figures",
              file=sys.stderr)
        return []
    figures = []
    colours = {"a": "tab:grey", "b": "tab:blue", "c": "tab:red", "c-rand": "tab:olive",
               "c-sup": "tab:purple", "pixels": "black", "pixels-10k": "black"}

    def save(fig, name, title):
        fig.tight_layout()
        fig.savefig(os.path.join(directory, "figures", name), dpi=110)
        plt.close(fig)
        figures.append((name, title))

    def style(job):
        return {"0": "-", "1": "--"}.get(job["seed"], ":")

    def curves(jobs, panels, name, title):
        if not jobs:
            return
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6))
        axes = axes if len(panels) > 1 else [axes]
        for ax, (key, label, table, scale) in zip(axes, panels):
            for j in jobs:
                data = j[table]
                steps = [s for s in sorted(data) if data[s].get(key) is not None]
                if steps:
                    ax.plot(steps, [scale * data[s][key] for s in steps], style(j),
                            color=colours.get(j["arm"], "tab:green"), label=j["name"],
                            marker="o" if table == "eval" else None, markersize=3)
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.legend(fontsize=6)
        save(fig, name, title)

    jobs = results["jobs"]
    curves([j for j in jobs if j["stage"] == "contrastive"],
           [("loss", "MoCo v3 contrastive loss", "train", 1),
            ("eval_knn_top1", "k-NN top-1 (%), the job's monitor", "eval", 1)],
           "contrastive-curves.png", "The MoCo v3 perceptual network")
    curves([j for j in jobs if j["stage"] == "tokenizer"],
           [("loss_pixel", "pixel L1 (training)", "train", 1),
            ("loss_perceptual", "perceptual term (weighted)", "train", 1),
            ("perplexity", "codebook perplexity (per log window)", "train", 1)],
           "tokenizer-curves.png", "Tokenizer training curves")
    curves([j for j in jobs if j["stage"] == "pretrain"],
           [("loss", "MIM loss (masked tokens)", "train", 1),
            ("mlm_acc", "masked-token accuracy (%)", "train", 100)],
           "pretrain-curves.png", "Pre-training curves (each arm's own target)")
    curves([j for j in jobs if j["stage"] in ("finetune", "supervised")],
           [("loss", "training loss", "train", 1), ("eval_top1", "test top-1 (%)", "eval", 1)],
           "finetune-curves.png", "Fine-tuning curves (100 labels per class; the supervised network)")
    return figures


def verdict(primary, controls):
    """One sentence from the primary endpoint's intervals (and the positive control)."""
    above = [k for k, d in primary.items() if d["lo"] is not None and d["lo"] > 0]
    below = [k for k, d in primary.items() if d["hi"] is not None and d["hi"] < 0]
    complete = [k for k, d in primary.items() if d["lo"] is not None]
    if not complete:
        text = ("Undecided: fewer than two complete seed pairs of (b) and (c), so no interval on "
                "c − b")
    elif len(above) == len(primary):
        text = ("PeCo's direction was reproduced at this scale: c − b is positive on both "
                "readouts, each 95% interval above zero")
    elif len(below) == len(primary):
        text = ("PeCo's direction was refuted at this scale: c − b is negative on both readouts, "
                "each 95% interval below zero")
    elif above and below:
        text = "Undecided: c − b is above zero on one readout and below on the other"
    else:
        text = ("Undecided at this scale: the 95% interval of c − b includes zero on " +
                " and ".join(k for k in primary if k not in above + below))
    sup = controls.get("c-sup")
    if sup and sup.get("knn") is not None and sup.get("linear") is not None and \
            sup["knn"] <= 0 and sup["linear"] <= 0:
        text += ("; the positive control (a supervised perceptual network) did not beat (b) "
                 "either, so this harness may not detect a target effect of this size")
    return text + "."


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--wall_seconds", type=float, default=None)
    parser.add_argument("--commit", default="")
    parser.add_argument("--mode", default="full")
    parser.add_argument("--scratch_gate", default="")
    args = parser.parse_args()

    rows = []
    with open(os.path.join(args.dir, "jobs.tsv")) as f:
        for name, job_id, arm, stage, seed in csv.reader(f, delimiter="\t"):
            rows.append(dict(name=name, id=job_id, arm=arm, stage=stage, seed=seed))
    if not rows:
        sys.exit(f"reproduce_report: {args.dir}/jobs.tsv lists no jobs")

    results = {"mode": args.mode, "commit": args.commit, "wall_seconds": args.wall_seconds,
               "machine": machine(), "jobs": []}
    for row in rows:
        record, points = load_job(args.dir, row["name"])
        train, evals = newest_attempt_curves(points)
        config = yaml.safe_load(record["job"]["spec"]["config_yaml"]) or {}
        data = config.get("data", {})
        job = dict(row)
        job.update(
            state=record["job"]["state"].replace("JOB_STATE_", ""),
            attempts=len(record.get("attempts", [])),
            causes=[a.get("cause", "") for a in record.get("attempts", []) if a.get("cause")],
            seconds=job_seconds(record),
            steps=config.get("train", {}).get("max_steps"),
            batch=data.get("batch_size"),
            train={int(k): v for k, v in train.items()},
            eval={int(k): v for k, v in evals.items()},
        )
        images = (data.get("labels_per_class") or 0) * 10 or TRAIN_IMAGES
        job["epochs"] = (job["steps"] * job["batch"] / images
                         if job["steps"] and job["batch"] else None)
        rates = [v["images_per_second"] for v in job["train"].values()
                 if v.get("images_per_second")]
        job["images_per_second"] = statistics.median(rates) if rates else None
        job["flatness"] = flatness(job)
        results["jobs"].append(job)

    by = {(j["arm"], j["stage"], j["seed"]): j for j in results["jobs"]}
    by_name = {j["name"]: j for j in results["jobs"]}
    seeds = sorted({j["seed"] for j in results["jobs"] if j["arm"] in ("a", "b", "c")}, key=int)

    def value(arm, endpoint, seed):
        stage, key, _ = ENDPOINTS[endpoint]
        return endpoint_value(by.get((arm, stage, seed)), key)

    summary = {}
    for arm in ARMS:
        arm_seeds = seeds if arm in ("a", "b", "c") else ["0"]
        summary[arm] = {e: stats([value(arm, e, s) for s in arm_seeds]) for e in ENDPOINTS}
        pre = [by[(arm, "pretrain", s)] for s in arm_seeds if (arm, "pretrain", s) in by]
        summary[arm]["pretrain_loss"] = stats([last(p["train"], "loss") for p in pre])
        summary[arm]["mlm_acc"] = stats([100 * last(p["train"], "mlm_acc") for p in pre
                                         if last(p["train"], "mlm_acc") is not None])
    results["summary"] = summary

    def paired(x, y, endpoint):
        diffs = [value(x, endpoint, s) - value(y, endpoint, s) for s in seeds
                 if value(x, endpoint, s) is not None and value(y, endpoint, s) is not None]
        s = stats(diffs)
        lo = s["mean"] - s["half"] if s["half"] is not None else None
        hi = s["mean"] + s["half"] if s["half"] is not None else None
        return dict(diffs=diffs, mean=s["mean"], std=s["std"], n=s["n"], half=s["half"],
                    lo=lo, hi=hi)

    comparisons = {f"{x}-{y}": {e: paired(x, y, e) for e in ENDPOINTS}
                   for x, y in (("c", "b"), ("b", "a"), ("c", "a"))}
    results["paired"] = comparisons
    controls = {}
    for arm in ("c-rand", "c-sup"):
        controls[arm] = {e: (value(arm, e, "0") - value("b", e, "0")
                             if value(arm, e, "0") is not None and value("b", e, "0") is not None
                             else None) for e in ENDPOINTS}
    results["controls_minus_b_s0"] = controls

    # The sanity gates.
    pixels, pixels_10k = by_name.get("pixels-linear-probe"), by_name.get("pixels-10k-linear-probe")
    moco, supervised = by_name.get("moco"), by_name.get("supervised")
    tok = {j["arm"]: j for j in results["jobs"] if j["stage"] == "tokenizer"}
    psnr = {arm: last(j["eval"], "eval_psnr") for arm, j in tok.items()}
    gates = dict(
        pixels_linear=endpoint_value(pixels, "eval_linear_top1"),
        pixels_knn=endpoint_value(pixels, "eval_knn_top1"),
        pixels_10k_knn=endpoint_value(pixels_10k, "eval_knn_top1"),
        moco_knn=last(moco["eval"], "eval_knn_top1") if moco else None,
        moco_knn_start=(moco["eval"][min(moco["eval"])].get("eval_knn_top1")
                        if moco and moco["eval"] else None),
        moco_train_images=last(moco["eval"], "eval_train_images") if moco else None,
        supervised_top1=last(supervised["eval"], "eval_top1") if supervised else None,
        scratch=scratch_gate(args.scratch_gate),
        psnr_b=psnr.get("b"), psnr_c=psnr.get("c"),
    )
    results["gates"] = gates
    results["verdict"] = verdict({e: comparisons["c-b"][e] for e in PRIMARY}, controls)

    os.makedirs(os.path.join(args.dir, "figures"), exist_ok=True)
    figures = plot(results, args.dir)
    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)

    out = []
    w = out.append
    w(f"Mode: **{args.mode}**, {len(seeds)} seed(s) ({', '.join(seeds)}) of arms a, b, c; the "
      f"controls seed 0. Commit `{args.commit}`, wall time {minutes(args.wall_seconds)} for the "
      f"whole study on {results['machine']}.")
    w("")
    w(f"**Verdict.** {results['verdict']}")
    w("")
    w("### Sanity gates")
    w("")
    w("| gate | measured | against | holds |")
    w("|---|---|---|---|")

    def gate_row(name, measured, against, holds):
        mark = "n/a" if holds is None else ("yes" if holds else "**no**")
        w(f"| {name} | {measured} | {against} | {mark} |")

    gate_row("raw-pixel floor, linear (the study's readout split)",
             fmt(gates["pixels_linear"], 2, "%"), "published about 84%",
             None if gates["pixels_linear"] is None else gates["pixels_linear"] >= 80)
    gate_row("raw-pixel floor, k-NN", fmt(gates["pixels_knn"], 2, "%"), "published about 85%",
             None if gates["pixels_knn"] is None else gates["pixels_knn"] >= 82)
    scratch = gates["scratch"]
    if scratch is None:
        gate_row("from-scratch fine-tune (configs/finetune_scratch_small.yaml)",
                 "not given (--scratch-gate RUN_DIR)", f">= {SCRATCH_TARGET:.0f}%", None)
    elif "error" in scratch:
        gate_row("from-scratch fine-tune", scratch["error"], f">= {SCRATCH_TARGET:.0f}%", None)
    else:
        gate_row(f"from-scratch fine-tune (`{scratch['checkpoint']}`, step {scratch['step']})",
                 fmt(scratch["top1"], 2, "%"), f">= {SCRATCH_TARGET:.0f}%",
                 scratch["top1"] is not None and scratch["top1"] >= SCRATCH_TARGET)
    gate_row(f"MoCo v3 network, k-NN (its monitor: {fmt(gates['moco_train_images'], 0)} "
             "training images)",
             f"{fmt(gates['moco_knn'], 2, '%')} (from {fmt(gates['moco_knn_start'], 2, '%')} "
             "at initialisation)",
             f"raw pixels, 10,000 training images {fmt(gates['pixels_10k_knn'], 2, '%')}",
             None if gates["moco_knn"] is None or gates["pixels_10k_knn"] is None
             else gates["moco_knn"] >= gates["pixels_10k_knn"])
    gate_row("supervised network (c-sup's), test top-1", fmt(gates["supervised_top1"], 2, "%"),
             "above the pixel floor", None if gates["supervised_top1"] is None or
             gates["pixels_linear"] is None else gates["supervised_top1"] > gates["pixels_linear"])
    sup = controls["c-sup"]
    gate_row("positive control: c-sup − b (seed 0), k-NN / linear",
             f"{fmt(sup['knn'], 2)} / {fmt(sup['linear'], 2)} points", "> 0 (the harness can "
             "see a target effect)", None if sup["knn"] is None or sup["linear"] is None
             else sup["knn"] > 0 or sup["linear"] > 0)
    gap = (abs(gates["psnr_b"] - gates["psnr_c"])
           if gates["psnr_b"] is not None and gates["psnr_c"] is not None else None)
    gate_row("tokenizers (b) and (c): held-out PSNR", f"{fmt(gates['psnr_b'])} / "
             f"{fmt(gates['psnr_c'])} dB", f"within {PSNR_TOLERANCE_DB:.0f} dB",
             None if gap is None else gap <= PSNR_TOLERANCE_DB)
    w("")
    w("### Primary endpoint: readouts of the frozen backbone")
    w("")
    w("| arm | " + " | ".join(ENDPOINTS[e][2] for e in PRIMARY) + " | seeds |")
    w("|---|" + "---|" * (len(PRIMARY) + 1))
    for arm, label in ARMS.items():
        w(f"| {label} | " + " | ".join(fmt_ci(summary[arm][e]) for e in PRIMARY) +
          f" | {summary[arm][PRIMARY[0]]['n']} |")
    w("")
    w("Mean ± half-width of the t-based 95% interval over seeds (one seed: the value alone).")
    w("")
    w("| paired difference | endpoint | mean (points) | 95% interval | per seed |")
    w("|---|---|---|---|---|")
    for pair, label in (("c-b", "c − b (PeCo against the pixel target)"),
                        ("b-a", "b − a (pre-training, pixel target)"),
                        ("c-a", "c − a (pre-training, perceptual target)")):
        for e in ENDPOINTS:
            d = comparisons[pair][e]
            interval = ("n/a" if d["lo"] is None else f"[{d['lo']:+.2f}, {d['hi']:+.2f}]")
            w(f"| {label} | {ENDPOINTS[e][2]} | {fmt(d['mean'], 2)} | {interval} | "
              f"{', '.join(f'{x:+.2f}' for x in d['diffs']) or 'n/a'} |")
    w("")
    w("### Secondary endpoint and controls")
    w("")
    w("| arm | " + ENDPOINTS["finetune_100"][2] + " | MIM loss (end) | masked-token acc. (%) |")
    w("|---|---|---|---|")
    for arm, label in ARMS.items():
        e = summary[arm]
        w(f"| {label} | {fmt_ci(e['finetune_100'])} | "
          f"{fmt_ci(e['pretrain_loss'], 3) if arm != 'a' else '-'} | "
          f"{fmt_ci(e['mlm_acc']) if arm != 'a' else '-'} |")
    w("")
    for arm in ("c-rand", "c-sup"):
        c = controls[arm]
        w(f"- {arm} − b (seed 0): k-NN {fmt(c['knn'])}, linear {fmt(c['linear'])}, fine-tune "
          f"(100 labels) {fmt(c['finetune_100'])} points.")
    w("")
    w("MIM loss and accuracy are each arm's own task (predicting its own tokenizer's codes), so "
      "they do not compare across arms.")
    w("")
    w("### Per seed")
    w("")
    w("| arm | endpoint | " + " | ".join(f"s{s}" for s in seeds) + " |")
    w("|---|---|" + "---|" * len(seeds))
    for arm in ARMS:
        for e in ENDPOINTS:
            w(f"| {arm} | {ENDPOINTS[e][2]} | " +
              " | ".join(fmt(value(arm, e, s)) for s in seeds) + " |")
    w("")
    w("### Tokenizers (held-out: the tokenizer's `eval:` on the test split)")
    w("")
    w("| tokenizer | steps (epochs) | L1 | PSNR (dB) | codes used | perplexity | token agreement "
      "under jitter | plain cells | codes mostly on plain cells | codes restarted | perceptual "
      "weight | wall |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for j in results["jobs"]:
        if j["stage"] != "tokenizer":
            continue
        e = j["eval"]
        agreement, plain = last(e, "eval_token_agreement"), last(e, "eval_plain_positions")
        share = last(e, "eval_plain_code_share")
        w(f"| {j['name']} | {j['steps']} ({fmt(j['epochs'])}) | {fmt(last(e, 'eval_l1'), 4)} | "
          f"{fmt(last(e, 'eval_psnr'))} | {fmt(last(e, 'eval_codes_used'), 0)}"
          f"/{fmt(last(j['train'], 'codebook_size'), 0)} | "
          f"{fmt(last(e, 'eval_perplexity'), 1)} | "
          f"{fmt(100 * agreement if agreement is not None else None)}% | "
          f"{fmt(100 * plain if plain is not None else None, 1)}% | "
          f"{fmt(last(e, 'eval_plain_codes'), 0)} "
          f"({fmt(100 * share if share is not None else None, 1)}%) | "
          f"{fmt(last(j['train'], 'codes_restarted'), 0)} | "
          f"{fmt(last(j['train'], 'perceptual_weight'), 3)} | {minutes(j['seconds'])} |")
    w("")
    w("### How flat each training curve ended")
    w("")
    w("| job | metric | at 3/4 of the steps | at the end | change in the last quarter |")
    w("|---|---|---|---|---|")
    for j in results["jobs"]:
        f = j["flatness"]
        if f:
            change = "n/a" if f["change"] is None else f"{100 * f['change']:+.1f}%"
            w(f"| {j['name']} | {f['metric']} | {f['at_three_quarters']:.4f} | "
              f"{f['at_end']:.4f} | {change} |")
    w("")
    w("### Jobs")
    w("")
    w("| job | id | state | attempts | causes | steps (epochs) | images/s (median) | wall |")
    w("|---|---|---|---|---|---|---|---|")
    for j in results["jobs"]:
        w(f"| {j['name']} | {j['id']} | {j['state']} | {j['attempts']} | "
          f"{', '.join(j['causes']) or '-'} | {j['steps'] or '-'} ({fmt(j['epochs'])}) | "
          f"{fmt(j['images_per_second'], 1)} | {minutes(j['seconds'])} |")
    w("")
    if figures:
        w("### Figures")
        w("")
        for name, title in figures:
            w(f"- {title}: `figures/{name}`")
        for name in sorted(os.listdir(os.path.join(args.dir, "figures"))):
            if name.startswith(("reconstructions-", "mim-")):
                w(f"- `figures/{name}` (`peco preview`)")
    with open(os.path.join(args.dir, "report.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
