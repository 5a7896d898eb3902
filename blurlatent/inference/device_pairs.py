"""``Predictor.run_pairs`` with the images kept on the model's device: raw inputs uploaded once in their own dtype,
their scales, the [0, 1] pair and its padding, the network, and the mapping back all there; only the outputs come
back, in their dtype (``device_intensity`` holds the statistics, with numpy's definitions).

Which path a job takes (``takes_device_path``): ``config.stats`` "host" is numpy's, "device" this one, "auto" this
one when the model is not on the CPU. Either way this path needs float64 on the device (not MPS), pixel types it
holds (``device_intensity.DEVICE_DTYPES``) and a job the model runs whole: tiled images (over
``tiling.MAX_WHOLE_PIXELS`` by default) keep numpy's path, which holds only a tile on the device at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from blurlatent.inference.device_intensity import (
    DEVICE_DTYPES,
    mirror_index,
    tensor_plane_ranges,
    tensor_scale,
    tensor_to_input_scale,
    to_unit_tensor,
    upload,
)
from blurlatent.intensity import Scale
from blurlatent.nets.tiling import plan_tiles


def takes_device_path(stats: str, device: torch.device, images: Sequence[np.ndarray], multiple: int, radius: int,
                      tile: int | None) -> bool:
    """Whether a job of ``images`` (the inputs of all its pairs, one shape) runs on ``device`` end to end (see the
    module doc): ``stats`` "host", "device" or "auto"."""
    if stats == "host" or (stats == "auto" and device.type == "cpu") or device.type == "mps":
        return False
    if any(np.dtype(image.dtype).newbyteorder("=") not in DEVICE_DTYPES for image in images):
        return False
    h, w = images[0].shape
    plan = plan_tiles((h + (-h) % multiple, w + (-w) % multiple), multiple, radius, tile)
    return plan[0][2] is None


def device_unit_pair(firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], *, normalize: str, reference: int,
                     need_total: bool, multiple: int,
                     device: torch.device) -> tuple[torch.Tensor, list[tuple[Scale, Scale]]]:
    """(float32 [N, 2, H', W'] on ``device``, each pair's two scales): ``memory.unit_pair`` and
    ``Predictor.pair_scales`` of the pairs, bit for bit the same [0, 1] pair, reflect-padded to ``multiple`` as
    ``tiling.pad_to_multiple``.
    ``reference``: which input of a pair sets a ``stack`` scale; ``need_total``: ``conserve``'s totals wanted."""
    h, w = firsts[0].shape
    rows = mirror_index(h, 0, (-h) % multiple, edge=False, device=device)
    cols = mirror_index(w, 0, (-w) % multiple, edge=False, device=device)
    pair = torch.empty((len(firsts), 2, len(rows), len(cols)), dtype=torch.float32, device=device)
    scales = []
    for i, images in enumerate(zip(firsts, seconds, strict=True)):
        xs = [upload(image, device) for image in images]
        ranges = tensor_plane_ranges(xs, normalize, reference)
        sa, sb = (tensor_scale(x, lo, hi, need_total, image.dtype)
                  for x, image, (lo, hi) in zip(xs, images, ranges, strict=True))
        for j, (x, scale) in enumerate(zip(xs, (sa, sb), strict=True)):
            pair[i, j] = to_unit_tensor(x, scale.lo, scale.hi).index_select(0, rows).index_select(1, cols)
        scales.append((sa, sb))
    return pair, scales


def device_levels(unit: torch.Tensor, scales: Sequence[tuple[Scale, Scale]], alphas: Sequence[float], *, rule: str,
                  intensity: str, dtypes: Sequence[np.dtype]) -> np.ndarray:
    """``memory.mapped_levels`` of [0, 1] ``unit`` [N, K, H, W] on its device: each level mapped there
    (``device_intensity.tensor_to_input_scale``) and copied back once, in its dtype."""
    out = np.empty(unit.shape, np.result_type(*dtypes))
    for i, ((sa, sb), dtype) in enumerate(zip(scales, dtypes, strict=True)):
        levels = [tensor_to_input_scale(unit[i, j], sa.mix(alpha, sb) if rule == "blur" else sb, intensity, dtype)
                  for j, alpha in enumerate(alphas)]
        out[i] = torch.stack(levels).cpu().numpy()
    return out
