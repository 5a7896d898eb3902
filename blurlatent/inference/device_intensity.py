"""``intensity``'s statistics and output mapping on torch tensors, on whatever device the model is on.

On a GPU the network takes 3.2 ms of a 696×520 deblur and the numpy statistics took the rest of 21.4 ms
(docs/benchmarks.md): the inputs' min/max, the 15×15 box mean and 1st percentile of the background, the total
above it, and the output's own background and total for ``conserve``, plus float images copied both ways. Here
the same definitions run where the images already are, so a raw input is uploaded once in its own dtype and only
the final output comes back, in the output dtype (``inference.device_pairs`` uses them). Same results as
``intensity`` (tests/inference/test_device_intensity.py):

* min/max and percentiles: the same order statistics (``torch.kthvalue`` on a CPU, one ``torch.sort`` elsewhere; not
  ``torch.quantile``, which refuses tensors over 16 M elements), numpy's linear interpolation between them in
  float64 on the host; exact;
* normalization to [0, 1]: float64 arithmetic as ``to_unit``'s, so bit for bit;
* the background's box mean: as ``intensity.background``'s (scipy's ``uniform_filter``, mode reflect, which repeats
  the edge pixel): separable, rows then columns, each pass from float64 running sums (a cumulative sum) stored as
  float32, so equal to scipy's but for the last bit of a rare pixel (no convolution: a GPU may run it in TF32);
* totals above background: accumulated in float64;
* the mapping back: float64, rounded half to even and clipped as ``intensity.cast_clipped``, the clip warning
  ``intensity.warn_clipped``'s, the hot-pixel warning ``intensity.warn_hot_pixels``'s.

Float64 is needed on the device, so MPS (which lacks it) keeps the numpy path; so do pixel types torch cannot
hold (``DEVICE_DTYPES``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from blurlatent.config import Intensity, check_choice
from blurlatent.intensity import (
    BACKGROUND_PERCENTILE,
    BACKGROUND_SMOOTH,
    HOT_PIXELS,
    PERCENTILES,
    Scale,
    check_normalization,
    extremes,
    intensity_range,
    output_map,
    warn_clipped,
    warn_hot_pixels,
)

# The pixel types the device path takes, and the type their statistics run in there, each holding every value
# exactly: int32 up to int32, int64 for uint32 and int64, float32 for float16. uint64 stays with numpy.
DEVICE_DTYPES = {np.dtype(k): v for k, v in (
    ("uint8", torch.int32), ("int8", torch.int32), ("uint16", torch.int32), ("int16", torch.int32),
    ("int32", torch.int32), ("uint32", torch.int64), ("int64", torch.int64),
    ("float16", torch.float32), ("float32", torch.float32), ("float64", torch.float64))}
FAR_FROM_ONE = 2.0**60  # float peaks beyond 2**±60 are scaled by a power of two first (as intensity.background)


def upload(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """A 2-D image on ``device``, copied over in its own dtype and widened there to its ``DEVICE_DTYPES`` type."""
    array = np.ascontiguousarray(image, dtype=image.dtype.newbyteorder("="))  # TIFFs may be big-endian
    if not array.flags.writeable:  # torch warns on read-only memory (a memory-mapped file)
        array = array.copy()
    return torch.from_numpy(array).to(device).to(DEVICE_DTYPES[array.dtype])


def tensor_extremes(x: torch.Tensor) -> tuple[float, float]:
    """(min, max) of ``x`` as floats; ``intensity.extremes``'s UsageError beyond ±MAX_MAGNITUDE."""
    lo, hi = torch.stack(torch.aminmax(x)).double().tolist()
    extremes(np.array([lo, hi]))  # the same refusal, said the same way
    return lo, hi


def tensor_percentiles(x: torch.Tensor, qs: Sequence[float], *, by_sort: bool | None = None) -> list[float]:
    """``np.percentile(x, qs)`` (linear interpolation, float64), from the order statistics of ``x`` found on its
    device (``by_sort``: one sort, else ``torch.kthvalue`` per rank; None: a sort except on a CPU); exact, as numpy
    interpolates in float64."""
    flat = x.reshape(-1)
    n = flat.numel()
    spots = []
    for q in qs:
        k = (n - 1) * (q / 100.0)  # numpy's virtual index
        below = n - 1 if k >= n - 1 else max(0, math.floor(k))
        spots.append((below, min(below + 1, n - 1), k - math.floor(k)))
    ranks = sorted({r for below, above, _ in spots for r in (below, above)})
    if by_sort is None:  # CUDA's kthvalue selects within a single thread block; a sort uses them all
        by_sort = flat.device.type != "cpu"
    if by_sort:  # one sort serves every rank
        found = torch.sort(flat).values[ranks].double().tolist()
    else:  # selection, linear time
        found = torch.stack([flat.kthvalue(r + 1).values for r in ranks]).double().tolist()
    value = dict(zip(ranks, found, strict=True))
    return [numpy_lerp(value[below], value[above], t) for below, above, t in spots]


def numpy_lerp(a: float, b: float, t: float) -> float:
    """numpy's ``_lerp`` (how ``np.percentile`` interpolates): from the nearer end, so t = 1 gives b exactly."""
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


def mirror_index(n: int, before: int, after: int, *, edge: bool, device: torch.device) -> torch.Tensor:
    """Indices into a length-``n`` axis extended by ``before`` and ``after`` mirrored entries, repeating the mirror
    as often as the pads need: ``edge`` True repeats the edge pixel (scipy's reflect, numpy's symmetric), False does
    not (numpy's reflect, what ``tiling.pad_to_multiple`` pads)."""
    i = torch.arange(-before, n + after, device=device)
    period = 2 * n if edge else 2 * n - 2
    if period == 0:  # one pixel, no edge: numpy repeats it
        return torch.zeros_like(i)
    j = i.remainder(period)
    return torch.where(j >= n, period - j - (1 if edge else 0), j)


def box_mean(x: torch.Tensor, size: int = BACKGROUND_SMOOTH) -> torch.Tensor:
    """``scipy.ndimage.uniform_filter(x, size, mode="reflect")`` of a float32 [H, W] tensor, float32: rows first,
    then columns, each pass a difference of float64 running sums stored as float32, as scipy's separable filter."""
    before, after = size // 2, size - 1 - size // 2
    smooth = x
    for dim, n in enumerate(x.shape):
        padded = smooth.double().index_select(dim, mirror_index(n, before, after, edge=True, device=x.device))
        sums = torch.cumsum(padded, dim)  # sums[i] = Σ padded[:i + 1]; window i = sums[i + size − 1] − sums[i − 1]
        window = sums.narrow(dim, size - 1, n) - torch.cat([torch.zeros_like(sums.narrow(dim, 0, 1)),
                                                            sums.narrow(dim, 0, n - 1)], dim)
        smooth = (window / size).float()
    return smooth


def tensor_background(x: torch.Tensor) -> float:
    """``intensity.background`` of ``x``: the 1st percentile of its 15x15 box mean, float32, float images far from
    1 scaled by a power of two first."""
    exponent = 0
    if x.is_floating_point() and x.numel():
        peak = float(x.abs().max())
        if peak > 0 and not 1 / FAR_FROM_ONE < peak < FAR_FROM_ONE:
            exponent = math.frexp(peak)[1]
            x = x.double() * math.ldexp(1.0, -exponent)  # exact, as np.ldexp
    smooth = box_mean(x.float())
    return math.ldexp(tensor_percentiles(smooth, [BACKGROUND_PERCENTILE])[0], exponent)


def total_above(x: torch.Tensor, bg: float) -> float:
    """Σ (x − bg) accumulated in float64 on the device."""
    return float((x.double() - bg).sum())


def tensor_range(x: torch.Tensor, method: str) -> tuple[float, float]:
    """``intensity.intensity_range`` of ``x`` (minmax or percentile)."""
    lo, hi = tensor_extremes(x)
    if method == "percentile":
        lo, hi = tensor_percentiles(x, PERCENTILES)
    elif method != "minmax":
        raise ValueError(f"tensor_range: {method!r} is per image only for minmax or percentile")
    return intensity_range(np.array([lo, hi]), "minmax")  # its flat-image rule: minmax needs only the two values


def tensor_plane_ranges(xs: Sequence[torch.Tensor], method: str, reference: int) -> list[tuple[float, float]]:
    """``intensity.plane_ranges`` of the planes of one field, on their device."""
    check_normalization(method)
    if method == "stack":
        for x in xs:
            tensor_extremes(x)
        return [tensor_range(xs[reference], "percentile")] * len(xs)
    return [tensor_range(x, method) for x in xs]


def tensor_scale(x: torch.Tensor, lo: float, hi: float, need_total: bool, dtype: np.dtype) -> Scale:
    """``intensity.Scale.of`` of ``x`` (an input of ``dtype``, as ``upload`` gives it), with its hot-pixel warning."""
    warn_hot_tensor(x, lo, hi, dtype)
    if not need_total:
        return Scale(lo, hi)
    bg = tensor_background(x)
    return Scale(lo, hi, bg, total_above(x, bg))


def warn_hot_tensor(x: torch.Tensor, lo: float, hi: float, dtype: np.dtype) -> bool:
    """``intensity.warn_hot_pixels`` for ``x``: the bright pixels counted on the device, and where they are few,
    those alone copied back for ``warn_hot_pixels`` to judge and say."""
    middle = lo + 0.5 * (hi - lo)
    # numpy compares integers in float64 and floats in their own type: an integer exceeds ``middle`` iff it exceeds
    # its floor (torch would compare in float32), a float tensor compares in its own type as numpy does
    bright = x > (math.floor(middle) if not x.is_floating_point() else middle)
    count = int(bright.sum())
    if not 0 < count < HOT_PIXELS:
        return False
    return warn_hot_pixels(x[bright].cpu().numpy().astype(dtype), lo, hi)


def to_unit_tensor(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``intensity.to_unit`` on the device: float64 arithmetic, clipped to [0, 1], float32; bit for bit numpy's."""
    return ((x.double() - lo) / (hi - lo)).clamp_(0.0, 1.0).float()


def tensor_to_input_scale(unit: torch.Tensor, ref: Scale, intensity: str, dtype: np.dtype) -> torch.Tensor:
    """``intensity.to_input_scale`` of a float32 [H, W] output on its device: a tensor of ``dtype`` there (the
    output background and total, the mapping, rounding and clipping all on the device; its warnings the same)."""
    check_choice(Intensity, intensity, "{intensity}")
    dtype = np.dtype(dtype)
    bg_out, signal = 0.0, 0.0
    if intensity == "conserve":
        bg_out = tensor_background(unit)
        signal = total_above(unit, bg_out)
    offset, gain, base = output_map(ref, intensity, bg_out, signal, unit.numel())  # the rule, and its warning
    values = (unit.double() - base) * gain + offset
    clipped = 0
    if dtype.kind in "uif":
        info = np.iinfo(dtype) if dtype.kind in "ui" else np.finfo(dtype)
        margin = 0.5 if dtype.kind in "ui" else 0.0
        clipped = int(((values < float(info.min) - margin) | (values > float(info.max) + margin)).sum())
    warn_clipped(clipped, unit.numel(), dtype)
    if dtype.kind in "ui":
        values = values.round_().clamp_(float(np.iinfo(dtype).min), float(np.iinfo(dtype).max))
    elif dtype.kind == "f" and clipped:
        values = values.clamp_(float(np.finfo(dtype).min), float(np.finfo(dtype).max))
    return values.to(getattr(torch, dtype.name))  # torch names its types as numpy does
