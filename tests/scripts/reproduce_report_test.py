#!/usr/bin/python3
"""Checks scripts/reproduce_report.py on a made-up study: per-arm means and sample standard
deviations, the seed-paired (c) - (b) differences, the tokenizer rows, and that after a restart
the newest attempt's points replace the older attempt's from the step it resumed at.

Usage: reproduce_report_test.py SOURCE_DIR. Prints "N passed, N failed"; exit 1 on a failure.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

SOURCE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
SCRIPT = os.path.join(SOURCE, "scripts", "reproduce_report.py")

CONFIG = "train: {max_steps: %d}\ndata: {batch_size: %d}\n"
PROBE = {("a", "0"): 20.0, ("a", "1"): 22.0, ("b", "0"): 30.0, ("b", "1"): 34.0,
         ("c", "0"): 33.0, ("c", "1"): 36.0}
TUNE = {key: value + 10 for key, value in PROBE.items()}

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
                             "step": str(step), "values": values, "time_us": "1"}}


def write_job(directory, name, steps, batch, events, attempts=1):
    record = {"job": {"spec": {"config_yaml": CONFIG % (steps, batch)},
                      "state": "JOB_STATE_SUCCEEDED", "start_time_us": "1000000",
                      "end_time_us": "61000000"},
              "attempts": [{"cause": "oom" if a == 0 and attempts > 1 else ""}
                           for a in range(attempts)]}
    with open(os.path.join(directory, "jobs", name + ".json"), "w") as f:
        json.dump(record, f)
    with open(os.path.join(directory, "jobs", name + ".ndjson"), "w") as f:
        f.write(json.dumps({"state_change": {"state": "JOB_STATE_QUEUED"}}) + "\n")
        for event in events:
            f.write(json.dumps(event) + "\n")


def main():
    with tempfile.TemporaryDirectory() as directory:
        os.makedirs(os.path.join(directory, "jobs"))
        rows = []
        for arm in ("b", "c"):
            write_job(directory, f"tokenizer-{arm}", 100, 32,
                      [point(1, 50, loss_pixel=0.3, perplexity=100.0, codebook_size=512),
                       point(1, 100, eval_l1=0.1 if arm == "b" else 0.09, eval_psnr=20.0,
                             eval_codes_used=500, eval_perplexity=300.0,
                             eval_token_agreement=0.4 if arm == "b" else 0.5, eval_images=100)])
            rows.append((f"tokenizer-{arm}", "job-t" + arm, arm, "tokenizer", "0"))
            for seed in ("0", "1"):
                name = f"{arm}-pretrain-s{seed}"
                if arm == "c" and seed == "0":
                    # Attempt 1 reached step 150, died; attempt 2 resumed at 100 and finished.
                    events = [point(1, 50, loss=6.0, mlm_acc=0.01),
                              point(1, 100, loss=5.8, mlm_acc=0.02),
                              point(1, 150, loss=99.0, mlm_acc=0.9),
                              point(2, 150, loss=5.6, mlm_acc=0.03),
                              point(2, 200, loss=5.5, mlm_acc=0.04)]
                    write_job(directory, name, 200, 64, events, attempts=2)
                else:
                    write_job(directory, name, 200, 64,
                              [point(1, 100, loss=5.9, mlm_acc=0.02),
                               point(1, 200, loss=5.4, mlm_acc=0.05)])
                rows.append((name, f"job-p{arm}{seed}", arm, "pretrain", seed))
        for arm in ("a", "b", "c"):
            for seed in ("0", "1"):
                for stage, table in (("linear_probe", PROBE), ("finetune", TUNE)):
                    name = f"{arm}-{stage}-s{seed}"
                    events = [point(1, 150, loss=2.0), point(1, 150, eval_top1=table[(arm, seed)] - 5,
                                                              eval_images=10000),
                              point(1, 300, loss=1.5),
                              point(1, 300, eval_top1=table[(arm, seed)] - 1, eval_images=10000)]
                    # A second attempt that only evaluated again (the run was complete).
                    events.append(point(2, 300, eval_top1=table[(arm, seed)], eval_images=10000))
                    write_job(directory, name, 300, 128, events, attempts=2)
                    rows.append((name, f"job-{stage}{arm}{seed}", arm, stage, seed))
        with open(os.path.join(directory, "jobs.tsv"), "w") as f:
            for row in rows:
                f.write("\t".join(row) + "\n")

        run = subprocess.run([sys.executable, SCRIPT, "--dir", directory, "--wall_seconds",
                              "3600", "--commit", "abc1234", "--mode", "full"],
                             capture_output=True, text=True)
        check(run.returncode == 0, f"the report exits 0 (stderr: {run.stderr[-500:]})")
        if run.returncode != 0:
            return
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        summary = results["summary"]
        for arm in ("a", "b", "c"):
            values = [PROBE[(arm, s)] for s in ("0", "1")]
            probe = summary[arm]["linear_probe"]
            check(abs(probe["mean"] - statistics.mean(values)) < 1e-9, f"{arm} probe mean")
            check(abs(probe["std"] - statistics.stdev(values)) < 1e-9, f"{arm} probe sample std")
            check(probe["n"] == 2, f"{arm} probe seed count")
            tune = summary[arm]["finetune"]
            check(abs(tune["mean"] - statistics.mean(values) - 10) < 1e-9, f"{arm} tune mean")
        diff = results["c_minus_b"]["linear_probe"]
        check(diff["diffs"] == [3.0, 2.0], f"seed-paired differences, got {diff['diffs']}")
        check(abs(diff["mean"] - 2.5) < 1e-9, "mean difference")
        check(abs(diff["seed_spread"] - statistics.stdev([30.0, 34.0])) < 1e-9,
              "the larger arm std is the spread")

        probe_job = {j["name"]: j for j in results["jobs"]}["b-linear_probe-s0"]
        check(probe_job["train"].get("300", {}).get("loss") == 1.5,
              "an attempt that only evaluated keeps the training curve")
        check(probe_job["eval"]["300"]["eval_top1"] == PROBE[("b", "0")],
              "the newest attempt's evaluation wins")
        pretrain = {j["name"]: j for j in results["jobs"]}["c-pretrain-s0"]
        check(pretrain["train"]["150"]["loss"] == 5.6,
              f"the resumed attempt's step 150 wins, got {pretrain['train']['150']}")
        check(pretrain["train"]["100"]["loss"] == 5.8, "steps before the resume point stay")
        check(pretrain["attempts"] == 2 and pretrain["causes"] == ["oom"], "attempts and causes")
        check(abs(summary["c"]["pretrain_loss"]["mean"] - statistics.mean([5.5, 5.4])) < 1e-9,
              "final MIM loss per arm")
        check(abs(pretrain["epochs"] - 200 * 64 / 60000) < 1e-9, "epochs from steps and batch")

        with open(os.path.join(directory, "report.md")) as f:
            report = f.read()
        check("commit `abc1234`" in report, "the report names the commit")
        check("| (c) MIM, perceptual (PeCo) tokenizer | 34.50 ± 2.12 |" in report,
              "the arm table row of (c)")
        check("| tokenizer-c | 100 (0.05) | 0.0900 | 20.00 | 500/512 | 300.0 | 50.00% |" in report,
              "the tokenizer row with agreement in percent")
        # Paired differences 3 and 2: std 0.71, standard error 0.5, so 2.5 is beyond 2 x 0.5.
        check(abs(diff["stderr"] - statistics.stdev([3.0, 2.0]) / 2 ** 0.5) < 1e-9,
              "standard error of the paired differences")
        check("c − b = +2.50 points, paired by seed" in report and
              "beyond two standard errors of zero" in report, "the (c) against (b) sentence")


main()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
