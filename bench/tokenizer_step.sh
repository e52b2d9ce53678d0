#!/usr/bin/env bash
# Tokenizer training-step throughput (images/s) of peco-train on this machine:
#   - the paper preset (224x224 f16 VQGAN, 8192 codes, ViT-B/16 perceptual loss) at batch 2 on
#     synthetic images, fp32 (bf16 with PECO_BENCH_BF16=1);
#   - the small preset on its real Fashion-MNIST data.
# Reports the median of the per-step rates after the first (warm-up) step.
# Usage: bench/tokenizer_step.sh [paper_steps] [small_steps]
set -euo pipefail
cd "$(dirname "$0")/.."
paper_steps="${1:-4}"
small_steps="${2:-40}"
cmake --build build -j2 --target peco-train >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() {  # name, config, extra --set args...
  local name="$1" config="$2"
  shift 2
  build/trainer/peco-train tokenizer --config "$config" --output_dir "$work/$name" \
    --set train.log_every=1 --set train.checkpoint_every=1000000000 --set eval.enabled=false "$@" \
    > "$work/$name.ndjson" 2> "$work/$name.log"
  /usr/bin/python3 - "$name" "$work/$name.ndjson" <<'PY'
import json, statistics, sys
name, path = sys.argv[1], sys.argv[2]
events = [json.loads(l) for l in open(path)]
start = next(e for e in events if e["event"] == "start")
steps = [e for e in events if e["event"] == "step"][1:]
rates = [e["images_per_second"] for e in steps]
secs = [e["step_seconds"] for e in steps]
print(f"| {name} | {start['parameters']:,} | {start['threads']} | {len(rates)} | "
      f"{statistics.median(secs):.3f} | {statistics.median(rates):.2f} |")
PY
  rm -rf "$work/$name"
}

echo "| case | parameters | threads | steps timed | median s/step | median images/s |"
echo "|---|---|---|---|---|---|"
paper=(--set data.source=synthetic --set data.synthetic_size=64 --set data.batch_size=2
       --set data.num_workers=1 --set train.max_steps=$((paper_steps + 1)))
measure "paper preset, batch 2, fp32" configs/tokenizer_paper.yaml "${paper[@]}" --set train.precision=fp32
# bf16 on CPU is far slower for this convolutional model with LibTorch 1.13 (docs/TRAINER.md);
# pass PECO_BENCH_BF16=1 to time it anyway.
if [ "${PECO_BENCH_BF16:-0}" = 1 ]; then
  measure "paper preset, batch 2, bf16" configs/tokenizer_paper.yaml "${paper[@]}" --set train.precision=bf16
fi
measure "small preset, batch 32, fp32" configs/tokenizer_small.yaml --set train.max_steps=$((small_steps + 1))
