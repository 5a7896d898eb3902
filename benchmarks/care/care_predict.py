"""Deblur whole fields with a CARE model of care_train.py. Run it with the CARE env's python:

    benchmarks/care/.venv/bin/python benchmarks/care/care_predict.py --model care-model/ --fields fields.npz \\
        --out care-pred/

--fields: the .npz of ``care_io.write_fields_npz`` (float32 [N, H, W] fields, each with family, stem, k).
--out:    gets OUT/<family>/<stem>_k<k>.npy per field, float32 [H, W] in the input's intensity scale (each
          field is normalized with its own percentile range and mapped back with it, see care_io), and
          ``care_predict.json`` (seconds, tiling).
Fields are predicted in tiles (--tile, overlapping by --overlap; CAREamics stitches them), so any field size
works and memory stays bounded.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from careamics import CAREamist

sys.path.insert(0, str(Path(__file__).resolve().parent))

from care_io import denormalize, normalize, percentile_range, prediction_path, read_fields_npz


def predict_fields(careamist: CAREamist, fields: np.ndarray, tile: int, overlap: int, batch_size: int) -> np.ndarray:
    """float32 [N, H, W] fields in their own scale -> the model's deblurred fields, same shape and scale."""
    value_range = percentile_range(fields)
    tile_size = (min(tile, _pow2_ceil(fields.shape[1])), min(tile, _pow2_ceil(fields.shape[2])))
    tile_overlap = tuple(min(overlap, t // 2) for t in tile_size)
    predictions, _ = careamist.predict(normalize(fields, value_range), data_type="array", axes="SYX",
                                       tile_size=tile_size, tile_overlap=tile_overlap, batch_size=batch_size,
                                       num_workers=0)
    out = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, *fields.shape[1:]) for p in predictions])
    if out.shape != fields.shape:
        raise RuntimeError(f"CAREamics returned {out.shape} for fields {fields.shape}")
    return denormalize(out, value_range)


def _pow2_ceil(n: int) -> int:
    return 1 << max(4, (int(n) - 1).bit_length())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="care_train.py's output folder")
    parser.add_argument("--fields", required=True, type=Path, help="fields .npz (care_io.write_fields_npz)")
    parser.add_argument("--out", required=True, type=Path, help="folder for <family>/<stem>_k<k>.npy")
    parser.add_argument("--tile", type=int, default=256, help="tile side (a power of two)")
    parser.add_argument("--overlap", type=int, default=48, help="tile overlap in pixels")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per forward pass")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the 2 shared cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    fields, keys = read_fields_npz(args.fields)
    careamist = CAREamist(checkpoint_path=args.model / "care_best.ckpt", work_dir=args.out / "careamics",
                          enable_progress_bar=False)
    predicted = predict_fields(careamist, fields, args.tile, args.overlap, args.batch_size)
    for image, (family, stem, k) in zip(predicted, keys, strict=True):
        path = prediction_path(args.out, family, stem, k)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, image.astype(np.float32))
    summary = {"fields": len(fields), "shape": list(fields.shape[1:]), "tile": args.tile, "overlap": args.overlap,
               "seconds": round(time.perf_counter() - start, 3)}
    (args.out / "care_predict.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
