"""Plates on Dask (issue 29): fields per second for 1 and 2 local worker processes, and what a field costs.

    python benchmarks/bench_plate.py --fields 48 --workers 1 2 --json plate.json
    python benchmarks/bench_plate.py --fields 4                       # a quick check that it runs

Builds a synthetic OME-Zarr HCS plate (NGFF 0.4; ``--fields`` fields over the wells of a 96-well layout, two per
well) of 696x520 uint16 ZYX stacks (7 planes, 2 µm apart, in focus at plane 4; a BBBC006 sample from
tests/data/bbbc006 tiled to size, or a synthetic texture, rolled per field and blurred by the distance from focus),
then deblurs planes 0 and 2 of every field toward the focus found in each (``--target auto``) with the built-in w1
model, once per ``--workers`` count (``inference.plates.run_plate``: one torch thread per worker). Reports, per
count: wall seconds, fields per second, and per field the median seconds reading, predicting and writing, and the
model-load seconds (once per worker process); the rest of the wall time is starting the workers and the graph.
Prints a table and writes ``--json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "bbbc006"
SHAPE = (520, 696)  # H, W: BBBC006's
PLANES, FOCUS, Z_STEP_UM, PIXEL_UM = 7, 4, 2.0, 0.645


def texture(shape: tuple[int, int]) -> np.ndarray:
    """A BBBC006 sample tiled to ``shape``, or a synthetic one where the samples are absent; float64 counts."""
    from scipy.ndimage import gaussian_filter

    files = sorted(SAMPLES.glob("*.tif")) if SAMPLES.is_dir() else []
    if files:
        import tifffile

        base = tifffile.imread(files[0]).astype(np.float64)
        reps = [-(-s // b) for s, b in zip(shape, base.shape, strict=True)]
        return np.tile(base, reps)[: shape[0], : shape[1]]
    return 110 + 900 * gaussian_filter(np.random.default_rng(0).random(shape), 3) ** 3 * 8


def field_stack(base: np.ndarray, shift: int) -> np.ndarray:
    """uint16 ZYX: ``base`` rolled by ``shift`` px, plane z blurred by sigma 1.5·|z − FOCUS| px."""
    from scipy.ndimage import gaussian_filter

    sharp = np.roll(base, shift, axis=1)
    return np.stack([gaussian_filter(sharp, 1.5 * abs(z - FOCUS)) for z in range(PLANES)]).clip(0, 65535).astype(
        np.uint16)


def make_plate(path: Path, fields: int) -> None:
    """An NGFF 0.4 plate of ``fields`` fields, two per well of rows A-H, columns 1-12 (as many wells as needed)."""
    import zarr

    from blurlatent.files.omezarr import write_omezarr

    wells = [f"{row}/{col}" for row in "ABCDEFGH" for col in range(1, 13)][: -(-fields // 2)]
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    rows = sorted({w.split("/")[0] for w in wells})
    cols = sorted({w.split("/")[1] for w in wells}, key=int)
    root.attrs["plate"] = {"version": "0.4", "name": "bench", "field_count": 2,
                           "rows": [{"name": r} for r in rows], "columns": [{"name": c} for c in cols],
                           "wells": [{"path": w, "rowIndex": rows.index(w.split("/")[0]),
                                      "columnIndex": cols.index(w.split("/")[1])} for w in wells]}
    base = texture(SHAPE)
    for i in range(fields):
        well, image = wells[i // 2], str(i % 2)
        group = root.require_group(well)
        images = min(2, fields - 2 * (i // 2))
        group.attrs["well"] = {"version": "0.4", "images": [{"path": str(k)} for k in range(images)]}
        write_omezarr(path / well / image, field_stack(base, 37 * i), pixel_size=(PIXEL_UM, PIXEL_UM, Z_STEP_UM),
                      channel="w1")


def measure(plate: Path, out: Path, workers: int) -> dict:
    """One deblur of the plate on ``workers`` local processes: wall seconds, fields/s and the per-field parts."""
    from blurlatent.config import InferenceConfig
    from blurlatent.inference.alphas import alpha_source
    from blurlatent.inference.builtin import resolve_checkpoint
    from blurlatent.inference.plates import run_plate

    checkpoint, _ = resolve_checkpoint(None)
    source = alpha_source(None, None, "auto", z=(0, 2))
    start = time.perf_counter()
    run = run_plate(checkpoint, InferenceConfig(device="cpu"), plate, out, "deblur", z=(0, 2), source=source,
                    force=True, workers=workers)
    wall = time.perf_counter() - start
    loads = [r.load_s for r in run.results if r.load_s > 0]
    median = {part: statistics.median(getattr(r, f"{part}_s") for r in run.results)
              for part in ("read", "predict", "write")}
    return {"workers": workers, "fields": len(run.results), "wall_s": wall, "fields_per_s": len(run.results) / wall,
            "worker_processes": len({r.worker for r in run.results}), "model_load_s": statistics.mean(loads or [0.0]),
            **{f"{k}_s_median": v for k, v in median.items()},
            "field_s": sum(median.values()),  # read + predict + write of one field, one thread
            "overhead_s": wall - sum(r.load_s + r.read_s + r.predict_s + r.write_s for r in run.results) / workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fields", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="Build the plate here and keep it (default: a temp).")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_plate."))
    try:
        plate = folder / "plate.ome.zarr"
        start = time.perf_counter()
        if not plate.exists():
            make_plate(plate, args.fields)
        built = time.perf_counter() - start
        rows = [measure(plate, folder / f"out{n}.ome.zarr", n) for n in args.workers]
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    result = {"machine": cpu_name(),
              "date": time.strftime("%Y-%m-%d"), "shape": list(SHAPE), "planes": PLANES, "plate_build_s": built,
              "runs": rows}
    print(f"{'workers':>7} {'fields':>6} {'wall s':>7} {'fields/s':>8} {'load s':>7} {'read s':>7} {'predict s':>9} "
          f"{'write s':>7} {'overhead s':>10}")
    for r in rows:
        print(f"{r['workers']:>7} {r['fields']:>6} {r['wall_s']:>7.2f} {r['fields_per_s']:>8.2f} "
              f"{r['model_load_s']:>7.2f} {r['read_s_median']:>7.3f} {r['predict_s_median']:>9.3f} "
              f"{r['write_s_median']:>7.3f} {r['overhead_s']:>10.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
