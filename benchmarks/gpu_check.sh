#!/usr/bin/env bash
# One prepared GPU session (issue 16): every GPU path once, each under its own time limit, logs in $OUT.
#   run from the repository root on a CUDA machine; wheels for packages its image lacks in .gpuwheels/
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=python3
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME SECONDS CMD...: run CMD under a limit, keep its output and exit status
  local name=$1 limit=$2; shift 2
  log "$name: $*"
  local t0=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"
  tail -4 "$OUT/$name.log" | sed 's/^/   | /' | tee -a "$OUT/summary.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  $PY -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))'; } \
  2>&1 | tee -a "$OUT/summary.txt"
[ -d .gpuwheels ] && $PY -m pip install -q --no-deps .gpuwheels/*.whl > "$OUT/pip.log" 2>&1
T=$(mktemp -d)
step infer 100 $PY benchmarks/bench_infer.py --device cuda --precisions fp32,bf16,fp16 --runs 20 --no-cli --json "$OUT/infer.json"
step bench_train 200 $PY benchmarks/bench_train.py --device cuda --converge 300 --schedule --max-seconds 90 --json "$OUT/train.json"
step demo 120 $PY -m blurlatent demo --device cuda --out "$T/demo" --force
step synth 60 $PY -m blurlatent synth "$T/syn" --fields 12 --channels w1 --planes 0:16:2 --size 256x192 --seed 0
step prepare 60 $PY -m blurlatent prepare "$T/syn" "$T/store" --channels w1 --crop 64
step train_gpus1 60 $PY -m blurlatent train "$T/store" --widths 16,32,64,128 --epochs 2 --gpus 1 --sync-bn --out "$T/run-spawn"
step train_torchrun 60 torchrun --standalone --nproc-per-node 1 -m blurlatent train "$T/store" --widths 16,32,64,128 --epochs 2 --device cuda --out "$T/run-torchrun"
step train_resume 45 $PY -m blurlatent train --resume "$T/run-spawn" --epochs 3 --gpus 1
cp "$T/demo/demo.json" "$OUT/" 2>/dev/null
log done
