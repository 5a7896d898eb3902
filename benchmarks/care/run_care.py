"""The CARE column of the real-content benchmark, end to end (runs in blurlatent's env; CAREamics runs in its own).

    python benchmarks/care/run_care.py --out care-run/ --steps 1500 --cache bench-real/cache
    python benchmarks/bench_real.py --out bench-real/ --care care-run/pred ...

1. Training pairs, as a CARE user would have them: the TRAIN fields (``--train-fields``) degraded under every
   family a train split may use (vectorial, gibson-lanni, synth; never the held-out born-wolf) with the bench's
   own ``degrade`` and seed, and for every k = 2…14 ``--patches`` random 64 × 64 patches of plane k (input) with the
   ACQUIRED in-focus plane 16 of the same stack at the same place (target: noisy, same camera and background, as
   a measured pair would be). Validation pairs the same way from ``--val-fields`` VAL fields. Each pair is
   normalized with its whole plane k's percentiles (``care_io``), which is what prediction sees.
2. ``care_train.py`` in the CARE env: exactly ``--steps`` optimizer steps, the best val checkpoint kept.
3. ``care_predict.py``: every plane k of every scored field (``--split``, its families, the bench's seed, whole
   fields) → ``--out``/pred/<family>/<stem>_k<k>.npy, the folder ``bench_real.py --care`` reads.

``--cache`` shares the bench's stack cache (``<bench --out>/cache``): the stacks are the same bytes either way
(same recipe, seed and pixels), the cache only saves their making (~25 s per stack here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_real import KS, SPLIT_FAMILIES  # noqa: E402
from care_io import percentile_range, write_fields_npz, write_training_npz  # noqa: E402
from real.degrade import FAMILIES, degrade  # noqa: E402
from real.fields import DEFAULT_DATA, entries_of, load_field, read_manifest  # noqa: E402

from blurlatent.bbbc006 import IN_FOCUS_PLANE  # noqa: E402

PATCH = 64
CARE_PYTHON = HERE / ".venv" / "bin" / "python"
TRAIN_FAMILIES = tuple(name for name, f in FAMILIES.items() if "train" in f.splits)


def pairs(fields, seed: int, cache: Path, per_plane: int, rng: np.random.Generator):
    """(x, y, ranges): float32 [N, 64, 64] patches of plane k and of plane 16, and each pair's [N, 2] range."""
    xs, ys, ranges = [], [], []
    for name in TRAIN_FAMILIES:
        for field in fields:
            stack, _ = degrade(field.image, field.labels, FAMILIES[name], seed, field.stem, cache)
            target = stack.plane(IN_FOCUS_PLANE).astype(np.float32)
            for k in KS:
                plane = stack.plane(k).astype(np.float32)
                value_range = percentile_range(plane)
                for _ in range(per_plane):
                    top = int(rng.integers(0, plane.shape[0] - PATCH + 1))
                    left = int(rng.integers(0, plane.shape[1] - PATCH + 1))
                    window = np.s_[top:top + PATCH, left:left + PATCH]
                    xs.append(plane[window])
                    ys.append(target[window])
                    ranges.append(value_range)
            print(f"[run_care] pairs: {name} {field.stem}", flush=True)
    return np.stack(xs), np.stack(ys), np.stack(ranges)


def scored_planes(fields, families, seed: int, cache: Path):
    """Every plane k of every scored field under the split's families, with its (family, stem, k)."""
    planes, family_names, stems, ks = [], [], [], []
    for name in families:
        for field in fields:
            stack, _ = degrade(field.image, field.labels, FAMILIES[name], seed, field.stem, cache)
            for k in KS:
                planes.append(stack.plane(k).astype(np.float32))
                family_names.append(name)
                stems.append(field.stem)
                ks.append(k)
    return np.stack(planes), family_names, stems, ks


def run(command: list) -> float:
    start = time.perf_counter()
    print("[run_care] " + " ".join(map(str, command)), flush=True)
    subprocess.run([str(c) for c in command], check=True)
    return round(time.perf_counter() - start, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for pairs, model, fields and pred/")
    p.add_argument("--steps", type=int, required=True, help="CARE optimizer steps in all")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cache", type=Path, default=None, help="stack cache shared with bench_real (default OUT/cache)")
    p.add_argument("--split", choices=("val", "test"), default="test", help="the fields predicted (default test)")
    p.add_argument("--train-fields", type=int, default=12, help="train fields the pairs come from")
    p.add_argument("--val-fields", type=int, default=4, help="val fields the validation pairs come from")
    p.add_argument("--patches", type=int, default=6, help="patches per field, family and k (train)")
    p.add_argument("--seed", type=int, default=0, help="the bench's degradation seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--python", type=Path, default=CARE_PYTHON, help="the CARE env's python")
    args = p.parse_args(argv)
    cache = args.cache or args.out / "cache"
    args.out.mkdir(parents=True, exist_ok=True)
    entries = read_manifest(args.data)
    rng = np.random.default_rng(args.seed)
    seconds = {}
    start = time.perf_counter()
    train = [load_field(args.data, e) for e in entries_of(entries, "train", args.train_fields)]
    val = [load_field(args.data, e) for e in entries_of(entries, "val", args.val_fields)]
    tx, ty, tr = pairs(train, args.seed, cache, args.patches, rng)
    vx, vy, vr = pairs(val, args.seed, cache, max(1, args.patches // 3), rng)
    write_training_npz(args.out / "pairs.npz", tx, ty, vx, vy, train_range=tr, val_range=vr)
    seconds["pairs"] = round(time.perf_counter() - start, 1)
    seconds["train"] = run([args.python, HERE / "care_train.py", "--data", args.out / "pairs.npz", "--out",
                            args.out / "model", "--steps", args.steps, "--threads", args.threads])
    start = time.perf_counter()
    scored = [load_field(args.data, e) for e in entries_of(entries, args.split)]
    planes, families, stems, ks = scored_planes(scored, SPLIT_FAMILIES[args.split], args.seed, cache)
    write_fields_npz(args.out / "fields.npz", planes, families, stems, ks)
    seconds["fields"] = round(time.perf_counter() - start, 1)
    seconds["predict"] = run([args.python, HERE / "care_predict.py", "--model", args.out / "model", "--fields",
                              args.out / "fields.npz", "--out", args.out / "pred", "--threads", args.threads])
    summary = {"steps": args.steps, "train_pairs": len(tx), "val_pairs": len(vx), "train_fields": len(train),
               "val_fields": len(val), "train_families": list(TRAIN_FAMILIES), "patches": args.patches,
               "target": "acquired plane 16 of the same stack", "split": args.split, "predicted": len(planes),
               "seed": args.seed, "seconds": seconds}
    (args.out / "run_care.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
