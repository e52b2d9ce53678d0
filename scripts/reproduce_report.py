#!/usr/bin/python3
"""Writes the report of a scripts/reproduce run: report.md, results.json and figures/.

Reads what the script collected in DIR: jobs.tsv (name, job id, arm, stage, seed), and per job
jobs/NAME.json (`peco get -o json`) and jobs/NAME.ndjson (`peco watch -o json`: the job's state
changes and metric points, every attempt). After a restart the points of the newest attempt win
for the steps it trained again, as the service's own curves do.

Usage: reproduce_report.py --dir DIR [--wall_seconds S] [--commit REV] [--mode full|quick]
"""

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys

import yaml

ARMS = {
    "a": "(a) no pre-training (random init)",
    "b": "(b) MIM, pixel-only VQ tokenizer",
    "c": "(c) MIM, perceptual (PeCo) tokenizer",
}
TRAIN_IMAGES = 60000


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
    replace every older attempt's from the first step that attempt reported there."""
    by_attempt = {}
    for attempt, step, values in points:
        by_attempt.setdefault(attempt, []).append((step, values))
    train, evals = {}, {}
    for attempt in sorted(by_attempt):
        rows = sorted(by_attempt[attempt], key=lambda r: r[0])
        for table, is_eval in ((train, False), (evals, True)):
            mine = [(step, values) for step, values in rows
                    if any(k.startswith("eval_") for k in values) == is_eval]
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


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    if len(values) == 1:
        return values[0], None, 1
    return statistics.mean(values), statistics.stdev(values), len(values)


def fmt(mean, std, digits=2, unit=""):
    if mean is None:
        return "n/a"
    if std is None:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit}"


def minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds is not None else "n/a"


def job_seconds(record):
    job = record["job"]
    start, end = int(job.get("start_time_us", 0)), int(job.get("end_time_us", 0))
    return (end - start) / 1e6 if start and end else None


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
    colours = {"a": "tab:grey", "b": "tab:blue", "c": "tab:red"}

    def save(fig, name, title):
        path = os.path.join(directory, "figures", name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append((name, title))

    tokenizers = [j for j in results["jobs"] if j["stage"] == "tokenizer"]
    if tokenizers:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for j in tokenizers:
            steps = sorted(j["train"])
            label = j["name"]
            colour = colours[j["arm"]]
            axes[0].plot(steps, [j["train"][s].get("loss_pixel") for s in steps], color=colour,
                         label=label)
            axes[1].plot(steps, [j["train"][s].get("loss_perceptual") for s in steps],
                         color=colour, label=label)
            axes[2].plot(steps, [j["train"][s].get("perplexity") for s in steps], color=colour,
                         label=label)
        for ax, title in zip(axes, ["pixel L1 (training)", "perceptual term (weighted)",
                                     "codebook perplexity (per log window)"]):
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        save(fig, "tokenizer-curves.png", "Tokenizer training curves")

    pretrains = [j for j in results["jobs"] if j["stage"] == "pretrain"]
    if pretrains:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for j in pretrains:
            steps = sorted(j["train"])
            style = "-" if j["seed"] == "0" else ("--" if j["seed"] == "1" else ":")
            axes[0].plot(steps, [j["train"][s].get("loss") for s in steps], style,
                         color=colours[j["arm"]], label=j["name"])
            axes[1].plot(steps, [100 * (j["train"][s].get("mlm_acc") or 0) for s in steps],
                         style, color=colours[j["arm"]], label=j["name"])
        axes[0].set_title("MIM loss (cross-entropy on masked tokens)")
        axes[1].set_title("masked-token accuracy (%)")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend(fontsize=7)
        save(fig, "pretrain-curves.png", "Pre-training curves (each arm's own target)")

    for stage, title in (("linear_probe", "Linear probe"), ("finetune", "Fine-tuning")):
        jobs = [j for j in results["jobs"] if j["stage"] == stage]
        if not jobs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for j in jobs:
            style = "-" if j["seed"] == "0" else ("--" if j["seed"] == "1" else ":")
            steps = sorted(j["train"])
            axes[0].plot(steps, [j["train"][s].get("loss") for s in steps], style,
                         color=colours[j["arm"]], label=j["name"])
            esteps = sorted(j["eval"])
            axes[1].plot(esteps, [j["eval"][s].get("eval_top1") for s in esteps], style + "o",
                         color=colours[j["arm"]], label=j["name"], markersize=3)
        axes[0].set_title(f"{title}: training loss")
        axes[1].set_title(f"{title}: test top-1 (%)")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend(fontsize=6)
        save(fig, f"{stage.replace('_', '-')}-curves.png", f"{title} curves")
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--wall_seconds", type=float, default=None)
    parser.add_argument("--commit", default="")
    parser.add_argument("--mode", default="full")
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
        config = yaml.safe_load(record["job"]["spec"]["config_yaml"])
        job = dict(row)
        job.update(
            state=record["job"]["state"].replace("JOB_STATE_", ""),
            attempts=len(record.get("attempts", [])),
            causes=[a.get("cause", "") for a in record.get("attempts", []) if a.get("cause")],
            seconds=job_seconds(record),
            steps=config["train"]["max_steps"],
            batch=config["data"]["batch_size"],
            train={int(k): v for k, v in train.items()},
            eval={int(k): v for k, v in evals.items()},
        )
        job["epochs"] = job["steps"] * job["batch"] / TRAIN_IMAGES
        results["jobs"].append(job)

    seeds = sorted({j["seed"] for j in results["jobs"] if j["stage"] != "tokenizer"}, key=int)
    by = {(j["arm"], j["stage"], j["seed"]): j for j in results["jobs"]}

    summary = {}
    for arm in ARMS:
        entry = {}
        for stage in ("linear_probe", "finetune"):
            values = [last(by[(arm, stage, s)]["eval"], "eval_top1")
                      for s in seeds if (arm, stage, s) in by]
            entry[stage] = dict(zip(("mean", "std", "n"), mean_std(values)), values=values)
        pre = [by[(arm, "pretrain", s)] for s in seeds if (arm, "pretrain", s) in by]
        entry["pretrain_loss"] = dict(zip(("mean", "std", "n"),
                                          mean_std([last(p["train"], "loss") for p in pre])))
        entry["mlm_acc"] = dict(zip(("mean", "std", "n"), mean_std(
            [100 * last(p["train"], "mlm_acc") if last(p["train"], "mlm_acc") is not None
             else None for p in pre])))
        summary[arm] = entry
    results["summary"] = summary

    # (c) against (b), seed by seed (the same seeds drive both arms' pre-training and evaluation).
    comparison = {}
    for stage in ("linear_probe", "finetune"):
        diffs = []
        for s in seeds:
            b, c = by.get(("b", stage, s)), by.get(("c", stage, s))
            if b and c and last(b["eval"], "eval_top1") is not None and \
                    last(c["eval"], "eval_top1") is not None:
                diffs.append(last(c["eval"], "eval_top1") - last(b["eval"], "eval_top1"))
        mean, std, n = mean_std(diffs)
        spread = max([v for v in (summary["b"][stage]["std"], summary["c"][stage]["std"])
                      if v is not None], default=None)
        stderr = std / math.sqrt(n) if std is not None else None
        comparison[stage] = dict(diffs=diffs, mean=mean, std=std, n=n, stderr=stderr,
                                 seed_spread=spread)
    results["c_minus_b"] = comparison

    os.makedirs(os.path.join(args.dir, "figures"), exist_ok=True)
    figures = plot(results, args.dir)

    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)

    out = []
    w = out.append
    w(f"Mode: **{args.mode}**, {len(seeds)} seed(s) ({', '.join(seeds)}), commit `{args.commit}`, "
      f"wall time {minutes(args.wall_seconds)} for the whole study on {results['machine']}.")
    w("")
    w("### Arms: same MIM model, recipe and budget; only the target differs")
    w("")
    w("| arm | linear probe top-1 (%) | fine-tune top-1 (%) | MIM loss (end) | "
      "masked-token acc. (%) | seeds |")
    w("|---|---|---|---|---|---|")
    for arm, label in ARMS.items():
        e = summary[arm]
        w(f"| {label} | {fmt(e['linear_probe']['mean'], e['linear_probe']['std'])} | "
          f"{fmt(e['finetune']['mean'], e['finetune']['std'])} | "
          f"{fmt(e['pretrain_loss']['mean'], e['pretrain_loss']['std'], 3) if arm != 'a' else '-'} | "
          f"{fmt(e['mlm_acc']['mean'], e['mlm_acc']['std']) if arm != 'a' else '-'} | "
          f"{e['linear_probe']['n']} |")
    w("")
    w("Mean ± sample standard deviation over seeds. MIM loss and accuracy are each arm's own task "
      "(predicting its own tokenizer's codes), so they do not compare across arms.")
    w("")
    images = sorted({int(last(j["eval"], "eval_images")) for j in results["jobs"]
                     if j["stage"] in ("linear_probe", "finetune") and
                     last(j["eval"], "eval_images") is not None})
    w(f"### Per seed (top-1 %, final evaluation on {' / '.join(f'{n:,}' for n in images)} "
      "test images)")
    w("")
    w("| arm | " + " | ".join(f"probe s{s}" for s in seeds) + " | " +
      " | ".join(f"fine-tune s{s}" for s in seeds) + " |")
    w("|---|" + "---|" * (2 * len(seeds)))
    for arm in ARMS:
        probe = [fmt(v, None) for v in summary[arm]["linear_probe"]["values"]]
        tune = [fmt(v, None) for v in summary[arm]["finetune"]["values"]]
        w(f"| {arm} | " + " | ".join(probe) + " | " + " | ".join(tune) + " |")
    w("")
    w("### Tokenizers (held-out: the tokenizer's `eval:` on the test split)")
    w("")
    w("| tokenizer | steps (epochs) | L1 | PSNR (dB) | codes used | perplexity | "
      "token agreement under jitter | wall |")
    w("|---|---|---|---|---|---|---|---|")
    for j in results["jobs"]:
        if j["stage"] != "tokenizer":
            continue
        e = j["eval"]
        codebook = last(j["train"], "codebook_size")
        agreement = last(e, "eval_token_agreement")
        w(f"| {j['name']} | {j['steps']} ({j['epochs']:.2f}) | {fmt(last(e, 'eval_l1'), None, 4)} | "
          f"{fmt(last(e, 'eval_psnr'), None)} | {fmt(last(e, 'eval_codes_used'), None, 0)}"
          f"/{fmt(codebook, None, 0)} | {fmt(last(e, 'eval_perplexity'), None, 1)} | "
          f"{fmt(100 * agreement if agreement is not None else None, None)}% | "
          f"{minutes(j['seconds'])} |")
    w("")
    w("### (c) against (b)")
    w("")
    for stage, label in (("linear_probe", "Linear probe"), ("finetune", "Fine-tuning")):
        c = comparison[stage]
        if c["mean"] is None:
            w(f"- {label}: no complete pair of runs.")
            continue
        diffs = ", ".join(f"{d:+.2f}" for d in c["diffs"])
        if c["stderr"] is None:
            w(f"- {label}: c − b = {c['mean']:+.2f} points (one seed: no spread to compare the "
              "difference with).")
            continue
        beyond = abs(c["mean"]) > 2 * c["stderr"]
        w(f"- {label}: c − b = {c['mean']:+.2f} points, paired by seed (differences {diffs}; "
          f"their std {c['std']:.2f}, standard error of the mean {c['stderr']:.2f}): "
          f"{'beyond' if beyond else 'within'} two standard errors of zero. The larger "
          f"seed-to-seed std of the two arms is {c['seed_spread']:.2f} points.")
    w("")
    w("### Jobs")
    w("")
    w("| job | id | state | attempts | causes | steps (epochs) | wall |")
    w("|---|---|---|---|---|---|---|")
    for j in results["jobs"]:
        w(f"| {j['name']} | {j['id']} | {j['state']} | {j['attempts']} | "
          f"{', '.join(j['causes']) or '-'} | {j['steps']} ({j['epochs']:.2f}) | "
          f"{minutes(j['seconds'])} |")
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
