"""Intensity scales: every normalization to [0, 1] and back (prepare, training data, inference).

``minmax`` is the paper's per-image scaling, ``percentile`` clips outliers, ``stack`` gives every plane
of a field one scale, from the plane nearest focus (so how brightness changes with z is kept).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import Normalization, choices
from .errors import UsageError

NORMALIZATIONS = choices(Normalization)
PERCENTILES = (0.1, 99.9)


def intensity_range(image: np.ndarray, method: str = "minmax", percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """(lo, hi) that map to 0 and 1. ``minmax`` is the paper's per-image scaling; ``percentile`` clips outliers."""
    if method == "minmax":
        lo, hi = float(image.min()), float(image.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(image, percentiles))
    else:
        raise UsageError(f"normalization {method!r} is per image only for minmax or percentile; use plane_ranges for stack")
    if hi <= lo:
        hi = lo + 1.0  # a flat image: map it to 0 rather than divide by zero
    return lo, hi


def to_unit(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] as float32, clipping outside."""
    return np.clip((image.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def from_unit(unit: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Inverse of ``to_unit`` into ``dtype`` (rounded and clipped for integer types)."""
    values = unit.astype(np.float64) * (hi - lo) + lo
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)



def plane_ranges(images: Sequence[np.ndarray], method: str, reference: int) -> list[tuple[float, float]]:
    """(lo, hi) for each plane of one field. ``minmax``/``percentile``: each plane its own; ``stack``: one
    scale for all, from the percentiles of ``images[reference]`` (the plane nearest focus).

    Raises UsageError for an unknown method.
    """
    check_normalization(method)
    if method == "stack":
        return [intensity_range(images[reference], "percentile")] * len(images)
    return [intensity_range(image, method) for image in images]


def check_normalization(method: str) -> str:
    if method not in NORMALIZATIONS:
        raise UsageError(f"normalization {method!r} is unknown; use one of {', '.join(NORMALIZATIONS)}")
    return method
