#!/usr/bin/env bash
# Make the CARE baseline's own virtual environment (issue 24): CAREamics and what it pins, apart from blurlatent's.
#
#   bash benchmarks/care/make_env.sh                 # -> benchmarks/care/.venv
#   bash benchmarks/care/make_env.sh /elsewhere/venv # any path; bench_real takes it as --care-env
#   PYTHON=python3.11 bash benchmarks/care/make_env.sh
#
# Why not blurlatent's .venv: careamics 0.3.5 pins torch<2.14, torchvision<=0.26 and pyyaml<=6.0.3, and
# blurlatent's constraints.txt has torch 2.14.1, torchvision 0.29.1 and PyYAML 6.0.4 (pip says
# ResolutionImpossible). torchvision 0.26.0 in turn pins torch==2.11.0, so this env holds torch 2.11.0 (PyPI's
# Linux wheel, the CUDA 13 build: it runs on the CPU too) and cannot reuse the torch of blurlatent's env.
# The exact set tested is benchmarks/care/constraints.txt (pip freeze of the env the README's numbers came from).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${1:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
CAREAMICS_VERSION="0.3.5"

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -c "$HERE/constraints.txt" "careamics==$CAREAMICS_VERSION"
"$VENV/bin/python" -m pip check
"$VENV/bin/python" - <<'EOF'
import careamics, torch
print(f"careamics {careamics.__version__}, torch {torch.__version__}")
EOF
echo "CARE env ready in $VENV ($(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1))"
