"""What locking the output costs `blurlatent deblur` (issue 28): one 696x520 16-bit pair, the built-in model, CPU.

    python benchmarks/bench_output_lock.py              # 5 interleaved rounds (--rounds N)

``inference.jobs.run_files`` (what the command runs after parsing: read, check, lock, load the built-in model,
deblur, write all or nothing with the targets checked again before the rename) is timed in one process with the
output's lock (``files.output_folders.FolderLock``) and with a no-op in its place, alternating, after one warm-up
of each; prints each variant's median and their ratio. The pair is ``bench_infer.make_pair``'s (a real BBBC006
plane and its blurred copy, else synthetic).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_infer import make_pair
from machine import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import tifffile
    import torch

    from blurlatent.config import InferenceConfig
    from blurlatent.inference import jobs
    from blurlatent.inference.builtin import resolve_checkpoint

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    checkpoint, _ = resolve_checkpoint(None, None)
    locked = jobs.FolderLock

    def unlocked(*args, **kwargs):
        return contextlib.nullcontext()

    times: dict[str, list[float]] = {"with lock": [], "without lock": []}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        blurriest, less_blurry = make_pair()
        tifffile.imwrite(work / "z0.tif", blurriest)
        tifffile.imwrite(work / "z8.tif", less_blurry)
        config = InferenceConfig(device="cpu")
        for round_ in range(args.rounds + 1):  # round 0 warms both up
            for name, lock in (("with lock", locked), ("without lock", unlocked)):
                jobs.FolderLock = lock
                start = time.perf_counter()
                jobs.run_files(checkpoint, config, work / "z0.tif", work / "z8.tif", [0.5], work / "out.tif",
                               "deblur", force=True)
                if round_:
                    times[name].append(time.perf_counter() - start)
        jobs.FolderLock = locked
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"deblur of a {less_blurry.shape[1]}x{less_blurry.shape[0]} pair, median of {args.rounds} interleaved runs")
    for name, values in times.items():
        print(f"  {name:13s} {medians[name]:.3f} s   ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"  ratio         {medians['with lock'] / medians['without lock']:.3f}")


if __name__ == "__main__":
    main()
