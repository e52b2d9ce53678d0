#!/usr/bin/python3
"""Checks scripts/reproduce_report.py on a made-up study: per-arm means with t-based 95%
intervals, the seed-paired differences and their intervals, the controls, the sanity gates (pixel
floors, MoCo against the pixels on its split, the from-scratch run read from its checkpoint, the
tokenizers' PSNR), the verdict, the tokenizer rows, and that after a restart the newest
attempt's points replace the older attempt's from the step it resumed at.

Usage: reproduce_report_test.py SOURCE_DIR. Prints "N passed, N failed"; exit 1 on a failure.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

SOURCE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SOURCE, "scripts", "reproduce_report.py")

CONFIG = "train: {max_steps: %d}\ndata: {batch_size: %d, labels_per_class: %d}\n"
SEEDS = ("0", "1", "2")
# k-NN top-1 by (arm, seed); linear = k-NN + 1; fine-tune (100 labels) = k-NN + 10.
KNN = {("a", "0"): 50.0, ("a", "1"): 51.0, ("a", "2"): 52.0,
       ("b", "0"): 70.0, ("b", "1"): 72.0, ("b", "2"): 71.0,
       ("c", "0"): 73.0, ("c", "1"): 74.0, ("c", "2"): 74.5,
       ("c-rand", "0"): 69.0, ("c-sup", "0"): 75.0}
T95_2 = 4.303  # Student's t, 2 degrees of freedom, two-sided 95%

passed = failed = 0


def check(condition, what):
    global passed, failed
    if condition:
        passed += 1
    else:
        failed += 1
        print(f"FAILED: {what}", file=sys.stderr)


def point(attempt, step, **values):
    return {"metric_point": {"job_id": "j", "attempt": str(attempt), "rank": 0,
                             "step": str(step), "values": values,
                             "time": "1970-01-01T00:00:00.000001+00:00"}}


def write_job(directory, name, steps, batch, events, attempts=1, labels_per_class=0):
    record = {"job": {"spec": {"config_yaml": CONFIG % (steps, batch, labels_per_class)},
                      "state": "JOB_STATE_SUCCEEDED",
                      "start_time": "1970-01-01T00:00:01.000000+00:00",
                      "end_time": "1970-01-01T00:01:01.000000+00:00"},
              "attempts": [{"cause": "oom" if a == 0 and attempts > 1 else ""}
                           for a in range(attempts)]}
    with open(os.path.join(directory, "jobs", name + ".json"), "w") as f:
        json.dump(record, f)
    with open(os.path.join(directory, "jobs", name + ".ndjson"), "w") as f:
        f.write(json.dumps({"state_change": {"state": "JOB_STATE_QUEUED"}}) + "\n")
        for event in events:
            f.write(json.dumps(event) + "\n")


def readout(knn):
    return [point(1, 0, loss=0.5, images_per_second=1000.0),
            point(1, 0, eval_top1=knn + 1, eval_linear_top1=knn + 1, eval_knn_top1=knn,
                  eval_images=10000)]


def make_study(directory):
    os.makedirs(os.path.join(directory, "jobs"))
    rows = []
    write_job(directory, "moco", 100, 128,
              [point(1, 50, loss=5.0), point(1, 100, loss=4.0),
               point(1, 0, eval_knn_top1=60.0), point(1, 100, eval_knn_top1=79.0)])
    rows.append(("moco", "job-m", "c", "contrastive", "0"))
    write_job(directory, "supervised", 100, 128,
              [point(1, 100, loss=0.6), point(1, 100, eval_top1=86.0)])
    rows.append(("supervised", "job-s", "c-sup", "supervised", "0"))
    for arm, psnr in (("b", 21.0), ("c", 20.4), ("c-rand", 20.0), ("c-sup", 20.2)):
        final = dict(loss_pixel=0.2, perplexity=120.0, codebook_size=512, codes_restarted=40,
                     perceptual_weight=0.25)
        evaluation = dict(eval_l1=0.1 if arm == "b" else 0.09, eval_psnr=psnr,
                          eval_codes_used=500, eval_perplexity=300.0,
                          eval_token_agreement=0.4 if arm == "b" else 0.5,
                          eval_plain_positions=0.35, eval_plain_codes=50,
                          eval_plain_code_share=0.1, eval_images=100)
        # (c)'s last step and its evaluation arrive as one merged point.
        last_points = ([point(1, 100, **final, **evaluation)] if arm == "c" else
                       [point(1, 100, **final), point(1, 100, **evaluation)])
        write_job(directory, f"tokenizer-{arm}", 100, 32,
                  [point(1, 50, loss_pixel=0.3, perplexity=100.0, codebook_size=512,
                         codes_restarted=40)] + last_points)
        rows.append((f"tokenizer-{arm}", "job-t" + arm, arm, "tokenizer", "0"))
    pairs = [(arm, s) for s in SEEDS for arm in ("b", "c")] + [("c-rand", "0"), ("c-sup", "0")]
    for arm, seed in pairs:
        name = f"{arm}-pretrain-s{seed}"
        if arm == "c" and seed == "0":
            # Attempt 1 reached step 150, died; attempt 2 resumed at 100 and finished.
            events = [point(1, 50, loss=6.0, mlm_acc=0.01), point(1, 100, loss=5.8, mlm_acc=0.02),
                      point(1, 150, loss=99.0, mlm_acc=0.9), point(2, 150, loss=5.6, mlm_acc=0.03),
                      point(2, 200, loss=5.5, mlm_acc=0.04)]
            write_job(directory, name, 200, 64, events, attempts=2)
        else:
            write_job(directory, name, 200, 64,
                      [point(1, 100, loss=5.9, mlm_acc=0.02), point(1, 200, loss=5.4, mlm_acc=0.05)])
        rows.append((name, f"job-p{arm}{seed}", arm, "pretrain", seed))
    for arm, seed in [("a", s) for s in SEEDS] + pairs:
        knn = KNN[(arm, seed)]
        write_job(directory, f"{arm}-linear-probe-s{seed}", 0, 0, readout(knn))
        rows.append((f"{arm}-linear-probe-s{seed}", f"job-l{arm}{seed}", arm, "linear_probe", seed))
        events = [point(1, 300, loss=1.5), point(1, 300, eval_top1=knn + 9, eval_images=10000),
                  # A second attempt that only evaluated again (the run was complete).
                  point(2, 300, eval_top1=knn + 10, eval_images=10000)]
        write_job(directory, f"{arm}-finetune-100-s{seed}", 300, 64, events, attempts=2,
                  labels_per_class=100)
        rows.append((f"{arm}-finetune-100-s{seed}", f"job-f{arm}{seed}", arm, "finetune", seed))
    write_job(directory, "pixels-linear-probe", 0, 0, readout(85.0))
    rows.append(("pixels-linear-probe", "job-x", "pixels", "linear_probe", "0"))
    write_job(directory, "pixels-10k-linear-probe", 0, 0, readout(81.5))
    rows.append(("pixels-10k-linear-probe", "job-y", "pixels-10k", "linear_probe", "0"))
    with open(os.path.join(directory, "jobs.tsv"), "w") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    # A from-scratch finetune run for the gate: its newest checkpoint's trainer_state.json.
    for step, top1 in ((470, 80.0), (4700, 88.4)):
        checkpoint = os.path.join(directory, "scratch", "checkpoints", f"step-{step:012d}")
        os.makedirs(checkpoint)
        with open(os.path.join(checkpoint, "trainer_state.json"), "w") as f:
            json.dump({"kind": "finetune", "step": step, "eval_top1": top1,
                       "backbone": "random"}, f)


def main():
    with tempfile.TemporaryDirectory() as directory:
        make_study(directory)
        run = subprocess.run([sys.executable, SCRIPT, "--dir", directory, "--wall_seconds",
                              "3600", "--commit", "abc1234", "--mode", "full", "--scratch_gate",
                              os.path.join(directory, "scratch")],
                             capture_output=True, text=True)
        check(run.returncode == 0, f"the report exits 0 (stderr: {run.stderr[-800:]})")
        if run.returncode != 0:
            return
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        summary = results["summary"]
        for arm in ("a", "b", "c"):
            values = [KNN[(arm, s)] for s in SEEDS]
            knn = summary[arm]["knn"]
            check(abs(knn["mean"] - statistics.mean(values)) < 1e-9, f"{arm} k-NN mean")
            half = T95_2 * statistics.stdev(values) / math.sqrt(3)
            check(abs(knn["half"] - half) < 1e-9, f"{arm} k-NN t-interval half-width")
            check(knn["n"] == 3, f"{arm} seed count")
            check(abs(summary[arm]["linear"]["mean"] - statistics.mean(values) - 1) < 1e-9,
                  f"{arm} linear mean")
            check(abs(summary[arm]["finetune_100"]["mean"] - statistics.mean(values) - 10) < 1e-9,
                  f"{arm} fine-tune mean: the newest attempt's evaluation wins")
        check(summary["c-sup"]["knn"]["n"] == 1 and summary["c-sup"]["knn"]["half"] is None,
              "a control has one seed and no interval")

        diff = results["paired"]["c-b"]["knn"]
        diffs = [KNN[("c", s)] - KNN[("b", s)] for s in SEEDS]
        check(diff["diffs"] == diffs, f"seed-paired differences, got {diff['diffs']}")
        half = T95_2 * statistics.stdev(diffs) / math.sqrt(3)
        check(abs(diff["lo"] - (statistics.mean(diffs) - half)) < 1e-9 and
              abs(diff["hi"] - (statistics.mean(diffs) + half)) < 1e-9,
              f"the paired t-interval, got [{diff['lo']}, {diff['hi']}]")
        controls = results["controls_minus_b_s0"]
        check(controls["c-rand"]["knn"] == KNN[("c-rand", "0")] - KNN[("b", "0")],
              "negative control against b, seed 0")
        check(controls["c-sup"]["linear"] == KNN[("c-sup", "0")] - KNN[("b", "0")],
              "positive control against b, seed 0")

        gates = results["gates"]
        check(gates["pixels_knn"] == 85.0 and gates["pixels_linear"] == 86.0, "pixel floors")
        check(gates["pixels_10k_knn"] == 81.5 and gates["moco_knn"] == 79.0 and
              gates["moco_knn_start"] == 60.0, "the MoCo gate's numbers")
        check(gates["scratch"]["top1"] == 88.4 and gates["scratch"]["step"] == 4700,
              "the scratch gate reads the newest checkpoint")
        check(gates["supervised_top1"] == 86.0, "the supervised network's top-1")
        # c - b on k-NN: diffs 3, 2, 3.5: mean 2.83, half-width 4.303 * 0.76 / 1.73 = 1.90,
        # interval [0.93, 4.73]; linear the same: both above zero.
        check(results["verdict"].startswith("PeCo's direction was reproduced"),
              f"the verdict, got {results['verdict']}")

        jobs = {j["name"]: j for j in results["jobs"]}
        merged = jobs["tokenizer-c"]
        check(merged["train"]["100"].get("loss_pixel") == 0.2 and
              "eval_psnr" not in merged["train"]["100"] and
              merged["eval"]["100"].get("eval_psnr") == 20.4,
              "a merged point feeds the training curve and the evaluations")
        pretrain = jobs["c-pretrain-s0"]
        check(pretrain["train"]["150"]["loss"] == 5.6,
              f"the resumed attempt's step 150 wins, got {pretrain['train']['150']}")
        check(pretrain["train"]["100"]["loss"] == 5.8, "steps before the resume point stay")
        check(pretrain["attempts"] == 2 and pretrain["causes"] == ["oom"], "attempts and causes")
        check(abs(pretrain["epochs"] - 200 * 64 / 60000) < 1e-9, "epochs from steps and batch")
        check(abs(jobs["b-finetune-100-s0"]["epochs"] - 300 * 64 / 1000) < 1e-9,
              "epochs of a label subset count its images")
        check(abs(summary["c"]["pretrain_loss"]["mean"] - 5.4 - 0.1 / 3) < 1e-9,
              "final MIM loss per arm")

        with open(os.path.join(directory, "report.md")) as f:
            report = f.read()
        check("Commit `abc1234`" in report, "the report names the commit")
        check(report.index("### Sanity gates") < report.index("### Primary endpoint"),
              "the gates come first")
        check("| tokenizers (b) and (c): held-out PSNR | 21.00 / 20.40 dB | within 1 dB | yes |"
              in report, "the PSNR gate row")
        check("88.40% | >= 88% | yes |" in report, "the scratch gate row")
        check("| tokenizer-c | 100 (0.05) | 0.0900 | 20.40 | 500/512 | 300.0 | 50.00% | 35.0% | "
              "50 (10.0%) | 40 | 0.250 |" in report, "the tokenizer row")
        check(f"| (a) no pre-training (random backbone) | {statistics.mean([50, 51, 52]):.2f} ± "
              f"{T95_2 * 1 / math.sqrt(3):.2f} |" in report, "the arm row of (a)")


main()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
