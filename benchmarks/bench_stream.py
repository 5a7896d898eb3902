"""Huge planes in bounded memory (issue 29, item 1): a SIZE x SIZE uint16 pair deblurred by the streamed job
(``inference.stream_jobs.stream_files``, what ``blurlatent deblur A B -o OUT.ome.zarr`` runs for huge planes),
timed, with the process's peak resident memory.

    python benchmarks/bench_stream.py --size 20000 --json stream.json      # the target: peak RSS < 2 GB on CPU
    python benchmarks/bench_stream.py --size 2048 --block 1024              # a quick check

The inputs are written first as two OME-Zarr planes, chunk by chunk (never whole): tiles of a real BBBC006 field
(tests/data/bbbc006, each tile rolled by its own offset so no two are alike) or, without it, of a synthetic field of
blurred spots; the blurriest plane is the tile blurred by a Gaussian of sigma 4, the less blurry by sigma 2. Peak
RSS: ``resource.getrusage`` (ru_maxrss, the whole process: writing the inputs included) and a psutil sampler over the
streamed job alone (every 50 ms). Prints one line and, with ``--json``, writes the figures with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_name

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "bbbc006"
TILE = 1024


def base_tile() -> np.ndarray:
    """A TILE x TILE float64 field: a BBBC006 sample mirrored to size, or blurred random spots."""
    files = sorted(SAMPLES.glob("*.tif")) if SAMPLES.is_dir() else []
    if files:
        import tifffile

        image = tifffile.imread(files[0]).astype(np.float64)
        reps = [-(-TILE // n) for n in image.shape]
        return np.pad(image, [(0, r * n - n) for r, n in zip(reps, image.shape, strict=True)],
                      mode="symmetric")[:TILE, :TILE]
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    spots = np.zeros((TILE, TILE))
    spots[rng.integers(0, TILE, 400), rng.integers(0, TILE, 400)] = 3e4
    return 100 + gaussian_filter(spots, 2.0)


def write_inputs(folder: Path, size: int) -> tuple[Path, Path]:
    """Two SIZE x SIZE uint16 OME-Zarr planes (blurriest, less blurry), written a TILE-px chunk at a time."""
    from scipy.ndimage import gaussian_filter

    from blurlatent.files.omezarr import omezarr_attrs, omezarr_draft

    field = base_tile()
    paths = folder / "blurriest.ome.zarr", folder / "less_blurry.ome.zarr"
    for path, sigma in zip(paths, (4.0, 2.0), strict=True):
        with omezarr_draft(path, (size, size), np.uint16) as draft:
            for y in range(0, size, TILE):
                for x in range(0, size, TILE):
                    tile = np.roll(field, (7 * y // TILE % TILE, 13 * x // TILE % TILE), axis=(0, 1))
                    tile = np.clip(gaussian_filter(tile, sigma, mode="wrap"), 0, 65535).astype(np.uint16)
                    draft.array[y:y + TILE, x:x + TILE] = tile[:min(TILE, size - y), :min(TILE, size - x)]
            draft.attrs = omezarr_attrs(path, 2, pixel_size=(0.645, 0.645, None), channel=None, labels=None,
                                        source=None, provenance=None, window=(0.0, 65535.0))
    return paths


def sample_rss(stop: threading.Event, peak: list[int]) -> None:
    import psutil

    process = psutil.Process()
    while not stop.wait(0.05):
        peak[0] = max(peak[0], process.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--checkpoint", default=None, help="default: the built-in w1 model")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--intensity", default="conserve", choices=["conserve", "minmax"])
    parser.add_argument("--block", type=int, default=None, help="output block side (default: streaming.BLOCK)")
    parser.add_argument("--tile", type=int, default=None, help="tiles inside a block (default: streaming's)")
    parser.add_argument("--folder", type=Path, default=None, help="where the inputs and output go (default: a temp)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from blurlatent.config import InferenceConfig
    from blurlatent.inference import stream_jobs
    from blurlatent.inference.builtin import resolve_checkpoint

    if args.block:
        stream_jobs.BLOCK = args.block
    checkpoint, _ = resolve_checkpoint(args.checkpoint, None)
    config = InferenceConfig(device="cpu", intensity=args.intensity, rescale="off",
                             tile=args.tile)
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        start = time.perf_counter()
        first, second = write_inputs(Path(tmp), args.size)
        written_s = time.perf_counter() - start
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=sample_rss, args=(stop, peak), daemon=True)
        sampler.start()
        start = time.perf_counter()
        stream_jobs.stream_files(checkpoint, config, first, second, [args.alpha], Path(tmp) / "out.ome.zarr", "deblur")
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
    result = {"size": args.size, "block": stream_jobs.BLOCK, "tile": args.tile, "intensity": args.intensity,
              "wall_s": round(wall, 2),
              "inputs_written_s": round(written_s, 2), "peak_rss_mib_job": round(peak[0] / 2**20, 1),
              "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "checkpoint": Path(str(checkpoint)).name, "cpu": cpu_name(),
              "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    print(f"{args.size}x{args.size} uint16 pair, streamed deblur ({args.intensity}): {wall:.1f} s, peak RSS "
          f"{result['peak_rss_mib_job']} MiB (job), {result['ru_maxrss_mib']} MiB (process)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
