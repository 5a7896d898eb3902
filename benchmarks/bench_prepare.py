"""How close is ``prepare`` to the decode limit? Same files, same machine, same run.

    python benchmarks/bench_prepare.py                       # synthetic: 20 fields, planes 0:16:2, w1+w2, 696x520
    python benchmarks/bench_prepare.py --src /data/BBBC006   # real folders or zips

Times (best of ``--repeats``):
  decode   read + LZW-decode every TIFF prepare reads, in a pool of ``--workers`` processes, one task per
           field as prepare does: the floor for prepare with that many workers;
  decode1  the same in one process (for scale);
  prepare  ``blurlatent.prepare.builder.prepare(..., workers=N)`` into a fresh store (discovery, decoding, scaling,
           cropping, writing, checksums).
Target: prepare / decode <= 1.3 with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from blurlatent.bbbc006 import format_planes, parse_planes
from blurlatent.prepare.builder import prepare
from blurlatent.prepare.discover import decode_source, discover
from blurlatent.synth.generator import synthesize


def decode_field(sources) -> int:
    return sum(decode_source(s).size for s in sources)


def decode_all(groups, workers: int) -> float:
    start = time.perf_counter()
    if workers <= 1:
        for group in groups:
            decode_field(group)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(decode_field, groups))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, help="BBBC006-layout folders or zips (default: synthesize)")
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--planes", default="0:16:2")
    parser.add_argument("--channels", default="w1,w2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    planes, channels = parse_planes(args.planes), args.channels.split(",")

    work = Path(tempfile.mkdtemp(prefix="bench_prepare."))
    try:
        src = args.src
        if src is None:
            src = work / "bbbc"
            t = time.perf_counter()
            synthesize(src, fields=args.fields, channels=channels, planes=planes, seed=0, workers=args.workers)
            print(f"synth: {args.fields} fields x {len(planes)} planes x {len(channels)} channels "
                  f"in {time.perf_counter() - t:.1f} s")
        inventory = discover(src, planes, channels)
        fields = sorted({(k.well, k.site) for per in inventory.sources.values() for k in per})
        groups = [[s for p in planes for k, s in sorted(inventory.sources[p].items()) if (k.well, k.site) == f]
                  for f in fields]
        n_files = sum(len(g) for g in groups)

        decode, decode1, prep = [], [], []
        for _ in range(args.repeats):
            decode.append(decode_all(groups, args.workers))
            decode1.append(decode_all(groups, 1))
            out = work / "store"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            prepare(src, out, channels=channels, planes=planes, workers=args.workers)
            prep.append(time.perf_counter() - t)
        t = time.perf_counter()
        rerun = prepare(src, out, channels=channels, planes=planes, workers=args.workers)
        rerun_s = time.perf_counter() - t
        assert rerun.up_to_date
    finally:
        shutil.rmtree(work, ignore_errors=True)

    d, d1, p = min(decode), min(decode1), min(prep)
    print(f"machine: {os.cpu_count()} CPU cores, python {sys.version.split()[0]}")
    print(f"files: {n_files} TIFFs ({len(fields)} fields, planes {format_planes(planes)}, {','.join(channels)})")
    print(f"decode, 1 process:        {d1:6.2f} s  ({1000 * d1 / n_files:.1f} ms/file)")
    print(f"decode, {args.workers} workers:        {d:6.2f} s  (the limit)")
    print(f"prepare, {args.workers} workers:       {p:6.2f} s")
    print(f"prepare rerun (up to date): {rerun_s:5.2f} s")
    print(f"ratio prepare/decode: {p / d:.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
