#!/usr/bin/env bash
# Second GPU session (issue 16), after the re-layer: the inference path on CUDA with its time split into
# model path and intensity statistics, demo --fast through the new Predictor, and the full 40-epoch schedule.
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
step() { local name=$1 limit=$2; shift 2; echo "== $name ($(date +%T)): $*" | tee -a "$OUT/summary.txt"
  local t0=$(date +%s); timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"; tail -3 "$OUT/$name.log" | sed 's/^/   | /' >> "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$OUT/summary.txt" 2>&1
python3 -m pip install -q --no-deps .gpuwheels/*.whl > /dev/null 2>&1
T=$(mktemp -d)
step infer 90 python3 benchmarks/bench_infer.py --device cuda --precisions fp32,bf16,fp16 --runs 20 --no-cli --json "$OUT/infer.json"
step demo_fast 80 python3 -m blurlatent demo --fast --device cuda --out "$T/demo" --force
step schedule 300 python3 benchmarks/bench_train.py --device cuda --only-converge --schedule --max-seconds 270 --json "$OUT/schedule.json"
echo done >> "$OUT/summary.txt"
