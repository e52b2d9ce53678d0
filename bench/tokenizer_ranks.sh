#!/usr/bin/env bash
# Data-parallel scaling of the tokenizer on this machine: the small preset (configs/
# tokenizer_small.yaml, real Fashion-MNIST, the perceptual term on) with a global batch of 32,
#   - 1 rank x batch 32, 1 intra-op thread   (the baseline: one core)
#   - 2 ranks x batch 16, 1 thread each       (data parallel over Gloo on loopback)
#   - 1 rank x batch 32, 2 threads            (the same cores used by intra-op threads instead)
# Reports the median global images/s over the timed steps (after the first logged window) and the
# speedups against the 1-thread baseline, measured in the same run.
# Usage: bench/tokenizer_ranks.sh [steps (default 40)]
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-40}"
cmake --build build -j2 --target peco-train >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
train=build/trainer/peco-train
common=(--config configs/tokenizer_small.yaml --set train.max_steps="$steps" --set train.log_every=5
        --set train.checkpoint_every=1000000 --set eval.enabled=false --set train.preview_images=0
        --set data.num_workers=1)

median_rate() {  # ndjson files of one run: the median of rank 0's windows after the first
  /usr/bin/python3 - "$1" <<'PY'
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
rates = [e["images_per_second"] for e in steps if e.get("event") == "step"][1:]
print(f"{statistics.median(rates):.2f}")
PY
}

"$train" tokenizer "${common[@]}" --output_dir "$work/one" --set threads=1 --set data.batch_size=32 \
  > "$work/one.ndjson" 2> "$work/one.log"
port=$((29700 + $$ % 200))
for rank in 0 1; do
  env WORLD_SIZE=2 RANK=$rank LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    PECO_JOB_ID=bench PECO_SHARED_CORES=1 \
    "$train" tokenizer "${common[@]}" --output_dir "$work/two" --set threads=1 \
    --set data.batch_size=16 > "$work/two$rank.ndjson" 2> "$work/two$rank.log" &
done
wait
"$train" tokenizer "${common[@]}" --output_dir "$work/threads" --set threads=2 \
  --set data.batch_size=32 > "$work/threads.ndjson" 2> "$work/threads.log"

one=$(median_rate "$work/one.ndjson")
two=$(median_rate "$work/two0.ndjson")
threads=$(median_rate "$work/threads.ndjson")
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "tokenizer small preset, global batch 32, $steps steps, on $(nproc) cores of $cpu"
echo
echo "| layout | images/s (median) | speedup vs 1 rank x 1 thread |"
echo "|---|---|---|"
/usr/bin/python3 - "$one" "$two" "$threads" <<'PY'
import sys
one, two, threads = map(float, sys.argv[1:])
print(f"| 1 rank x batch 32, 1 thread | {one:.1f} | 1.00x |")
print(f"| 2 ranks x batch 16, 1 thread each | {two:.1f} | {two / one:.2f}x |")
print(f"| 1 rank x batch 32, 2 threads | {threads:.1f} | {threads / one:.2f}x |")
PY
