"""Issue 25's targets on a bench_real.json (the test split): measured value, bar, pass/fail per target and model.

    python benchmarks/bench_real_targets.py bench-real/bench_real.json --model builtin-w1 --model demo-paper
    python benchmarks/bench_real_targets.py bench-real/bench_real.json --model builtin-w1 --json targets.json

The cost target (≤ 50 GFLOP per 696×520 deblur) is counted for built-in models (their network, two encodes and a
decode at the padded size, ``bench_infer.count_macs``); ``--checkpoint NAME=PATH`` counts it for a trained one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_infer import count_macs
from real import targets

from blurlatent.inference.predictor import load_model

FIELD = (520, 696)


def gflop(checkpoint: str | None, builtin: str | None) -> float:
    predictor = load_model(checkpoint, device="cpu", builtin=builtin)
    return 2 * count_macs(predictor.model, FIELD) / 1e9


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", type=Path, help="bench_real.json of the test split")
    p.add_argument("--model", action="append", required=True, help="a column, or a trained family's base name")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH", help="count NAME's GFLOP here")
    p.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    if result["split"] != "test":
        p.error(f"{args.result}: a {result['split']} split result; the targets are judged on test")
    sources = dict(item.split("=", 1) for item in args.checkpoint)
    out = {}
    for model in args.model:
        builtin = model.removeprefix("builtin-") if model.startswith("builtin-") else None
        cost = gflop(sources.get(model), builtin) if model in sources or builtin else None
        rows = targets.check(result, model, cost)
        out[model] = rows
        print(targets.markdown(rows, model, len(targets.members(result, model))) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
