"""Intensity scales: every normalization to [0, 1] and the mapping of model outputs back.

Normalizations (prepare, training data, inference): ``minmax`` is the paper's per-image scaling,
``percentile`` clips outliers, ``stack`` gives every plane of a field one scale, from the plane nearest
focus (so how brightness changes with z is kept).

Output mappings (inference): ``conserve`` (default) scales a [0, 1] output so its total signal above
background equals the reference input's — defocus spreads light but does not remove it (on real
BBBC006 the in-focus plane's total above background matches a strongly defocused plane's within 5 %),
so a deblurred nucleus gets a *higher* peak than the blurry input, which a range mapping cannot give;
``minmax`` maps [0, 1] back to the range the reference input was normalized with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

import numpy as np
from scipy.ndimage import uniform_filter

from blurlatent.config import Intensity, Normalization, check_choice, choices
from blurlatent.errors import Message, UsageError

log = logging.getLogger(__name__)

NORMALIZATIONS = choices(Normalization)
INTENSITY_MODES = choices(Intensity)
# Background = the 1st percentile of the 15x15-box-smoothed image. Smoothing first keeps camera noise
# (which the autoencoder's smooth output lacks) from biasing it low: on real BBBC006 w1 files (noise
# sigma 3-8 counts) the raw 1st percentile sits 2-5 counts under the 15x15 one, which moves within
# 0.4 counts from 5x5 to 31x31 windows; 0.4 counts over 696x520 pixels is ~3 % of a field's signal.
BACKGROUND_PERCENTILE = 1.0
BACKGROUND_SMOOTH = 15
PERCENTILES = (0.1, 99.9)
MAP_PIXELS = 1 << 16  # pixels mapped to an input's scale at a time: float64 copies of a block, never of an image
# Pixel values up to this magnitude are normalized exactly (float64 throughout, power-of-two rescaling where
# float32 is used): ±3.4e38 float32 and 1e-307 float64 inputs included. Beyond it a sum over an image of
# 1e8 pixels could overflow float64, so such images are refused with one line.
MAX_MAGNITUDE = 1e300


def intensity_range(image: np.ndarray, method: str = "minmax",
                    percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """(lo, hi) that map to 0 and 1, in float64. ``minmax`` is the paper's per-image scaling; ``percentile``
    clips outliers. Raises UsageError for values beyond ±MAX_MAGNITUDE."""
    image = np.asarray(image)
    lo, hi = extremes(image)
    if method == "percentile":
        lo, hi = (float(v) for v in np.percentile(image.astype(np.float64, copy=False), percentiles))
    elif method != "minmax":
        raise UsageError(f"normalization {method!r} is per image only for minmax or percentile; use plane_ranges for "
                         "stack")
    if hi <= lo:  # a flat image: map it to 0 rather than divide by zero (beyond 2**53, lo + 1 == lo)
        hi = lo + 1.0 if lo + 1.0 > lo else lo + abs(lo)
    return lo, hi


def extremes(image: np.ndarray) -> tuple[float, float]:
    """(min, max) of ``image`` as floats; UsageError when a value is beyond ±MAX_MAGNITUDE."""
    lo, hi = float(np.min(image)), float(np.max(image))
    peak = max(abs(lo), abs(hi))
    if not peak <= MAX_MAGNITUDE:
        raise UsageError(f"image values reach {peak:.3g}, beyond ±{MAX_MAGNITUDE:.0e} where sums over an image "
                         "overflow; rescale the image (e.g. to [0, 1]) first")
    return lo, hi


def to_unit(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] as float32, clipping outside. Computed in float64 (bitwise equal to float32
    arithmetic for integer images), so extreme finite inputs (±3e38, 1e-307) neither overflow nor underflow."""
    unit = (np.asarray(image, dtype=np.float64) - lo) / (hi - lo)
    return np.clip(unit, 0.0, 1.0, out=unit).astype(np.float32)


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
        for image in images:
            extremes(image)
        return [intensity_range(images[reference], "percentile")] * len(images)
    return [intensity_range(image, method) for image in images]


def is_normalization(method: object) -> TypeGuard[Normalization]:
    return method in NORMALIZATIONS


def check_normalization(method: str) -> Normalization:
    if not is_normalization(method):
        raise UsageError(f"normalization {method!r} is unknown; use one of {', '.join(NORMALIZATIONS)}")
    return method


# --- output mapping --------------------------------------------------------------------------------


def background(image: np.ndarray) -> float:
    """Background level: the BACKGROUND_PERCENTILE-th percentile of the image smoothed by a 15x15 box.

    The box mean runs in float32 (faster than float64; within 0.003 counts of it on a 60,000-count image) and
    the percentile by partial sort: on a GPU deblur these two were most of the time.
    Float images far from 1 are first scaled by a power of two (exact), so float32 neither overflows (3e38)
    nor flushes to zero (1e-307).
    """
    image = np.asarray(image)
    exponent = 0
    if image.dtype.kind == "f" and image.size:
        peak = float(np.abs(image).max())
        if peak > 0 and not 2.0**-60 < peak < 2.0**60:
            exponent = math.frexp(peak)[1]
            image = np.ldexp(image.astype(np.float64, copy=False), -exponent)
    return math.ldexp(percentile(box_smooth(image), BACKGROUND_PERCENTILE), exponent)


def box_smooth(image: np.ndarray) -> np.ndarray:
    """``image`` smoothed by the BACKGROUND_SMOOTH box, float32, reflected at its edges: what ``background`` takes
    the percentile of (a block with BACKGROUND_SMOOTH // 2 px of margin gives the whole image's values inside it)."""
    return uniform_filter(np.asarray(image, dtype=np.float32), size=BACKGROUND_SMOOTH, mode="reflect")


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation) by a partial sort, in float64: faster than a full sort."""
    flat = np.asarray(values).ravel()
    k = (flat.size - 1) * q / 100.0
    lo = int(np.floor(k))
    hi = min(lo + 1, flat.size - 1)
    part = np.partition(flat, [lo, hi])
    low, high = float(part[lo]), float(part[hi])
    return low + (high - low) * (k - lo)


def total_above_background(image: np.ndarray) -> float:
    """Σ (image − background(image)) in the image's own units: the light that defocus conserves."""
    image = np.asarray(image, dtype=np.float64)
    return float((image - background(image)).sum())


@dataclass(frozen=True)
class Scale:
    """One input's intensity description: its [0, 1] range (lo, hi), background and total above it."""

    lo: float
    hi: float
    bg: float = 0.0
    total: float = 0.0

    @classmethod
    def of(cls, image: np.ndarray, lo: float, hi: float, need_total: bool) -> Scale:
        warn_hot_pixels(image, lo, hi)
        if not need_total:
            return cls(lo, hi)
        bg = background(image)
        return cls(lo, hi, bg, float((np.asarray(image, dtype=np.float64) - bg).sum()))

    def mix(self, weight: float, other: Scale) -> Scale:
        """weight · self + (1 − weight) · other, field by field (the scale of a blur level between two inputs)."""
        w = float(weight)
        mine, theirs = (self.lo, self.hi, self.bg, self.total), (other.lo, other.hi, other.bg, other.total)
        return Scale(*(w * a + (1.0 - w) * b for a, b in zip(mine, theirs, strict=True)))


# Fewer pixels than this in the upper half of an input's [0, 1] range: a few outliers (hot pixels, a saturated
# speck) set its top, and everything else is squeezed into the bottom of what the model sees. A nucleus alone
# covers hundreds of pixels; hot pixels are one to a few. (Issue 28, cause 7: one hot pixel took the built-in
# model from 22.2 to 16.4 dB, below its input. Whether the per-image range should be robust by default is for
# the real-content benchmark to decide before models are retrained; until then, the case is said.)
HOT_PIXELS = 16


def warn_hot_pixels(image: np.ndarray, lo: float, hi: float) -> bool:
    """Warn (and return True) when fewer than HOT_PIXELS pixels of ``image`` lie in the upper half of (lo, hi)."""
    bright = int(np.count_nonzero(np.asarray(image) > lo + 0.5 * (hi - lo)))
    if 0 < bright < HOT_PIXELS:
        log.warning("%d pixel(s) alone fill the upper half of an input's intensity range (%.6g to %.6g): hot pixels "
                    "or a saturated speck squeeze the rest of the image into the bottom of what the model sees, "
                    "and the result suffers; remove them first (e.g. a 3x3 median filter of those pixels)",
                    bright, lo, hi)
        return True
    return False


def to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as ``dtype``: rounded for integer types, and clipped to the type's range (with a warning
    when more than 0.1 % of the pixels fall outside it) rather than wrapping or becoming infinite."""
    dtype = np.dtype(dtype)
    clipped = outside_range(values, dtype)
    warn_clipped(clipped, values.size, dtype)
    return cast_clipped(values, dtype, clipped)


def outside_range(values: np.ndarray, dtype: np.dtype) -> int:
    """How many ``values`` lie outside ``dtype``'s range (integer types: by more than half a step; 0 for others)."""
    if dtype.kind not in "uif":
        return 0
    info = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
    margin = 0.5 if dtype.kind in "ui" else 0.0
    return int(np.count_nonzero((values < float(info.min) - margin) | (values > float(info.max) + margin)))


def warn_clipped(clipped: int, size: int, dtype: np.dtype) -> None:
    """The warning of ``to_dtype``: ``clipped`` of ``size`` pixels fell outside ``dtype`` (integers: beyond 0.1 %)."""
    if dtype.kind in "uif" and clipped > (0.001 * size if dtype.kind in "ui" else 0):
        keep = "pass {out_dtype=float32}" if dtype.kind in "ui" else "rescale the inputs"
        log.warning(Message(f"{clipped} pixels ({100.0 * clipped / size:.2f} %) fell outside the {dtype} range "
                            f"and were clipped; {keep} to keep them", "out_dtype"))


def cast_clipped(values: np.ndarray, dtype: np.dtype, clipped: int) -> np.ndarray:
    """``values`` as ``dtype``: rounded and clipped for integer types, clipped for floats where ``clipped`` > 0."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    elif dtype.kind == "f" and clipped:
        values = np.clip(values, float(np.finfo(dtype).min), float(np.finfo(dtype).max))
    return values.astype(dtype)


def to_input_scale(unit: np.ndarray, ref: Scale, intensity: str, dtype) -> np.ndarray:
    """Map one [0, 1] output [H, W] to the reference input's scale (see the module docstring), as ``to_dtype`` puts
    it in ``dtype``. Float64 only on blocks of ``MAP_PIXELS`` (and once whole, for the output's total)."""
    check_choice(Intensity, intensity, "{intensity}")
    bg_out, signal = 0.0, 0.0
    if intensity == "conserve":
        bg_out = background(unit)
        centred = unit.astype(np.float64)
        centred -= bg_out
        signal = float(centred.sum())
        del centred
    out = np.empty(unit.shape, np.dtype(dtype))
    clipped = map_unit(unit, output_map(ref, intensity, bg_out, signal, unit.size), out)
    warn_clipped(clipped, unit.size, out.dtype)
    return out


def output_map(ref: Scale, intensity: str, bg_out: float, signal: float, size: int) -> tuple[float, float, float]:
    """THE rule from a [0, 1] output to the reference input's scale: (offset, gain, base) with values = (unit − base)
    · gain + offset. ``conserve`` needs the output's ``background`` (``bg_out``) and Σ(unit − bg_out) (``signal``) over
    its ``size`` pixels; whole images (``to_input_scale``) and streamed ones (``inference.streaming``) share it."""
    if intensity == "conserve":
        if ref.total > 0 and signal > 1e-12 * size:
            return ref.bg, ref.total / signal, bg_out
        log.warning("no signal above background to conserve (input total %.3g, output %.3g): using the minmax "
                    "scale", ref.total, signal)
    return ref.lo, ref.hi - ref.lo, 0.0


def map_unit(unit: np.ndarray, mapping: tuple[float, float, float], out: np.ndarray) -> int:
    """Write ``unit`` [H, W] mapped by ``output_map``'s (offset, gain, base) into ``out`` (its dtype: ``to_dtype``'s
    rounding and clipping), float64 on ``MAP_PIXELS`` at a time; returns how many pixels were clipped."""
    offset, gain, base = mapping
    clipped, step = 0, max(1, MAP_PIXELS // max(1, unit.shape[-1]))
    for top in range(0, unit.shape[0], step):
        values = (unit[top:top + step].astype(np.float64) - base) * gain + offset
        block = outside_range(values, out.dtype)
        out[top:top + step] = cast_clipped(values, out.dtype, block)
        clipped += block
    return clipped
