#!/usr/bin/env bash
# Third GPU session (issue 29, item 3): the intensity statistics on the device. Checks the CUDA path against numpy's,
# times the whole 696x520 deblur call (built-in w1) with --stats host and device, split into network, statistics
# and copies, and a BBBC006-sized plate (1,536 fields of 696x520 uint16 TIFF pairs) read, deblurred and written.
# Run from the repository root on a CUDA machine; < 8 min; JSON in $OUT (gpu_check3.json gathers it all).
set -u
OUT=${OUT:-gpu-out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PY:-python3}  # the interpreter with torch (a venv: PY=.venv/bin/python)
step() { local name=$1 limit=$2; shift 2; echo "== $name ($(date +%T)): $*" | tee -a "$OUT/summary.txt"
  local t0=$(date +%s); timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/summary.txt"; tail -3 "$OUT/$name.log" | sed 's/^/   | /' >> "$OUT/summary.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  $PY -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'; } >> "$OUT/summary.txt" 2>&1
[ -d .gpuwheels ] && $PY -m pip install -q --no-deps .gpuwheels/*.whl > "$OUT/pip.log" 2>&1
step tests 60 $PY -m pytest -q -p no:cacheprovider tests/inference/test_device_intensity.py tests/test_bench_device.py
step call 100 $PY benchmarks/bench_device.py call --device cuda --runs 50 --warmup 10 --json "$OUT/call.json"
step plate_device 140 $PY benchmarks/bench_device.py plate --device cuda --stats device --fields 1536 --json "$OUT/plate_device.json"
step plate_host 140 $PY benchmarks/bench_device.py plate --device cuda --stats host --fields 1536 --json "$OUT/plate_host.json"
$PY - "$OUT" <<'EOF' >> "$OUT/summary.txt" 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
found = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "gpu_check3"}
(out / "gpu_check3.json").write_text(json.dumps(found, indent=2))
print("gathered:", ", ".join(found) or "nothing")
EOF
echo done >> "$OUT/summary.txt"
