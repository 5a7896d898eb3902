"""Making a built-in model: a trained checkpoint → weights only, in the smallest precision that is safe.

A built-in model (``builtin``) carries no training state — format, config, weights, nothing to resume —
and its weights in the first of ``PRECISIONS`` whose outputs stay within ``TOLERANCE`` of the float32
model's on probe images (measured here, before anything is written; the figure goes on the card).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blurlatent.files.atomic import sha256_file
from blurlatent.inference.predictor import Predictor
from blurlatent.nets.checkpoint import build_model, load_checkpoint, save_torch_file

TOLERANCE = 1e-3  # the largest output change, on the [0, 1] scale, that a lower weight precision may cause
PRECISIONS = ("float16", "bfloat16", "float32")  # tried in this order: the first within TOLERANCE is kept
STAMPS = ("format_version", "package_version", "torch_version")


def shipped_config(config: dict) -> dict:
    """The training config as it ships: the store and init checkpoint by their file names only, since their
    full paths name folders (and often the user) of the machine that trained the model."""
    data = dict(config.get("data", {}))
    if data.get("store"):
        data["store"] = Path(data["store"]).name
    init = config.get("init")
    return {**config, "data": data, "init": Path(init).name if init else init}


def slim_checkpoint(src: str | Path, dst: str | Path, probe: np.ndarray, alphas: Sequence[float] = (0.5,),
                    force: bool = False) -> dict[str, Any]:
    """Write ``src`` (a trained checkpoint) to ``dst`` without training state, its weights in the first of
    ``PRECISIONS`` whose deblurred ``probe`` pairs stay within ``TOLERANCE`` of float32's.

    ``probe``: float [N, 2, H, W] (blurriest, less blurry) in [0, 1], e.g. synthetic test fields. Returns
    ``{"precision", "max_abs_diff", "sha256", "bytes"}`` for the card.
    """
    ckpt = load_checkpoint(src)
    reference = Predictor(build_model(ckpt, str(src)), fuse=False)
    expected = reference.combine(probe[:, 0], probe[:, 1], list(alphas), "deblur")
    for precision in PRECISIONS:
        dtype = getattr(torch, precision)
        weights = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt["model"].items()}
        slim = {key: ckpt[key] for key in STAMPS if key in ckpt}
        slim.update(config=shipped_config(ckpt["config"]), model=weights)
        model = build_model(slim, str(src))  # the weights as they will load: rounded, then float32 again
        got = Predictor(model, fuse=False).combine(probe[:, 0], probe[:, 1], list(alphas), "deblur")
        diff = float(np.abs(got - expected).max())
        if diff <= TOLERANCE:
            break
    save_torch_file(slim, dst, force=force)
    return {"precision": precision, "max_abs_diff": diff, "sha256": sha256_file(dst), "bytes": Path(dst).stat().st_size}
