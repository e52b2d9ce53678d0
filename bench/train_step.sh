#!/usr/bin/env bash
# Step time of `peco-train` on the small presets, through the whole trainer (data loading,
# the training loop, metrics), for the tokenizer (configs/tokenizer_small.yaml, perceptual term
# on) and MIM pre-training (configs/pretrain_small.yaml on a 1-step tokenizer):
#   bench/train_step.sh [--baseline OTHER_PECO_TRAIN] [--steps N] [--rounds R]
# With --baseline, each case runs alternately with this build's peco-train and the other one
# (e.g. a build of an earlier commit) R times, and the table gives both medians and their ratio,
# measured in the same run on the same machine. Timed: the median step_seconds of the logged
# windows after the first. Checkpoints and the held-out evaluation are off.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline="" steps=30 rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --baseline) baseline="$2"; shift 2 ;;
    --steps) steps="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    *) echo "usage: bench/train_step.sh [--baseline PECO_TRAIN] [--steps N] [--rounds R]" >&2; exit 2 ;;
  esac
done
cmake --build build -j2 --target peco-train >/dev/null
current=build/trainer/peco-train
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--set train.log_every=5 --set train.checkpoint_every=1000000 --set train.preview_images=0
        --set threads=2)

# A 1-step tokenizer for the pretrain case, written by the baseline when there is one (an older
# build may not read a newer checkpoint; the newer reads the older).
maker="${baseline:-$current}"
"$maker" tokenizer --config configs/tokenizer_small.yaml --output_dir "$work/tokenizer" \
  --set train.max_steps=1 --set eval.enabled=false "${common[@]}" >/dev/null 2>&1

run() {  # binary, kind, name -> prints the median step_seconds
  local binary="$1" kind="$2" name="$3" out="$work/$3"
  rm -rf "$out"
  if [ "$kind" = tokenizer ]; then
    "$binary" tokenizer --config configs/tokenizer_small.yaml --output_dir "$out" \
      --set train.max_steps="$steps" --set eval.enabled=false "${common[@]}" > "$out.ndjson" 2>/dev/null
  else
    "$binary" pretrain --config configs/pretrain_small.yaml --output_dir "$out" \
      --set tokenizer.checkpoint="$work/tokenizer" --set train.max_steps="$steps" \
      "${common[@]}" > "$out.ndjson" 2>/dev/null
  fi
  /usr/bin/python3 - "$out.ndjson" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
times = [e["step_seconds"] for e in steps if e.get("event") == "step"][1:]
print(statistics.median(times) if times else 0.0)
PY
}

cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "peco-train step time, small presets, $steps steps x $rounds rounds, 2 threads, $(nproc) cores of $cpu"
echo
if [ -n "$baseline" ]; then
  echo "| case | this build s/step | baseline s/step | this / baseline |"
  echo "|---|---|---|---|"
else
  echo "| case | s/step (median of rounds) |"
  echo "|---|---|"
fi
for kind in tokenizer pretrain; do
  mine=() theirs=()
  for ((r = 0; r < rounds; r++)); do
    mine+=("$(run "$current" "$kind" "$kind-new-$r")")
    if [ -n "$baseline" ]; then theirs+=("$(run "$baseline" "$kind" "$kind-base-$r")"); fi
  done
  /usr/bin/python3 - "$kind" "${#theirs[@]}" "${mine[@]}" "${theirs[@]}" <<'PY'
import statistics, sys
kind, n_base = sys.argv[1], int(sys.argv[2])
values = [float(v) for v in sys.argv[3:]]
mine, theirs = values[:len(values) - n_base], values[len(values) - n_base:]
m = statistics.median(mine)
if theirs:
    t = statistics.median(theirs)
    print(f"| {kind} small | {m:.4f} | {t:.4f} | {m / t:.3f} |")
else:
    print(f"| {kind} small | {m:.4f} |")
PY
done
