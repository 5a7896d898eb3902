"""Huge planes in bounded memory: a pair blurred or deblurred block by block, the inputs read and the output written
by region, so what a job holds depends on the block size, not on the image.

Blocks: the output is cut into ``block``-px squares on the model's grid (``multiple``). Each is computed from the
inputs' region around it with ``predictor.radius`` px of margin (rounded up to the grid), reflect-padded only where
the whole image is (its bottom and right, to the grid: ``tiling.reflect_pad_in_place``), through
``Predictor.combine_pair`` (tiles of ``STREAM_TILE`` inside unless ``config.tile`` says otherwise), and cropped:
``tiling`` says why a region on the grid with that margin gives the whole image's output to float rounding.

Intensity statistics (``PairStatistics``) in passes over the inputs, never holding one: exact minimum, maximum and
sum; the percentiles (``percentile``/``stack`` normalization, and the background: the 1st percentile of the 15x15
box-smoothed image, smoothed per block with 7 px of margin) from a reduced copy, every ``stride``-th pixel in each
direction, at most ``SAMPLE_PIXELS`` values. They are estimates of the whole-image ones (exact where the stride is 1,
up to float rounding). ``conserve`` needs the output's background and total too: the [0, 1] output is written to a
scratch array first and mapped to the output's dtype in a second pass (``intensity.output_map``, the rule the
whole-image path uses); ``minmax`` (or statistics given) maps each block as it is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.regions import PlaneRegions
from blurlatent.inference.memory import reference_scales
from blurlatent.inference.predictor import NEAR_FOCUS, Predictor
from blurlatent.intensity import (
    BACKGROUND_PERCENTILE,
    BACKGROUND_SMOOTH,
    HOT_PIXELS,
    Scale,
    box_smooth,
    check_normalization,
    extremes,
    intensity_range,
    map_unit,
    output_map,
    percentile,
    to_unit,
    warn_clipped,
    warn_hot_pixels,
)
from blurlatent.nets.tiling import reflect_pad_in_place

BLOCK = 2048  # output block side in px: a multiple of omezarr.PLANE_CHUNK (whole chunks written) and of 2**depth
# Tiles inside a block where ``config.tile`` is unset. Built-in w1, 2048² deblur, 2 EPYC cores: whole blocks 30 s and
# 2.0 GiB peak RSS, tiles of 1024 62 s and 1.1 GiB, of 512 98 s and 0.8 GiB (the tiles' margins are computed twice).
STREAM_TILE = 1024
SAMPLE_PIXELS = 1 << 24  # the reduced copy the percentiles are estimated from holds at most this many values
SMOOTH_MARGIN = BACKGROUND_SMOOTH // 2  # a block's smoothed values equal the whole image's with this margin
# A plane: anything with ``shape`` (H, W), ``dtype`` and ``plane[rows, cols]`` → numpy (numpy and zarr arrays,
# ``files.regions.PlaneRegions``); an output: an array-like of [K, H, W] or, for one level, [H, W].
Plane = Any
Progress = Callable[[int, int], None] | None


@dataclass(frozen=True)
class PairStatistics:
    """What maps a streamed pair to [0, 1] and back: the two inputs' ``Scale``s (lo, hi; bg and total for conserve)
    and, for ``conserve``, per level the [0, 1] output's (background, Σ(unit − background)); () when not known yet."""

    scales: tuple[Scale, Scale]
    outputs: tuple[tuple[float, float], ...] = ()


def block_grid(shape: tuple[int, int], size: int) -> list[tuple[slice, slice]]:
    """(rows, cols) of the ``size``-px blocks covering ``shape``, row by row; the last ones cut at the edges."""
    h, w = shape
    return [(slice(y, min(y + size, h)), slice(x, min(x + size, w))) for y in range(0, h, size)
            for x in range(0, w, size)]


def sample_stride(shape: tuple[int, int], limit: int = SAMPLE_PIXELS) -> int:
    """Every how many pixels (per direction) the reduced copy takes one, so it holds at most ``limit`` values."""
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / max(1, limit))))


def on_stride(rows: slice, cols: slice, stride: int) -> tuple[slice, slice]:
    """The block's pixels on the whole image's ``stride`` grid, in the block's own coordinates."""
    return slice((-rows.start) % stride, None, stride), slice((-cols.start) % stride, None, stride)


def smoothed_block(plane: Plane, rows: slice, cols: slice, exponent: int = 0) -> np.ndarray:
    """``intensity.box_smooth`` of the whole ``plane`` (scaled by 2**-exponent, as ``background`` scales floats) on the
    block ``rows`` × ``cols``: computed on the block and SMOOTH_MARGIN px around it, reflected only at the edges."""
    h, w = plane.shape
    a, b = max(0, rows.start - SMOOTH_MARGIN), min(h, rows.stop + SMOOTH_MARGIN)
    c, d = max(0, cols.start - SMOOTH_MARGIN), min(w, cols.stop + SMOOTH_MARGIN)
    region = np.asarray(plane[a:b, c:d])
    if exponent:
        region = np.ldexp(region.astype(np.float64), -exponent)
    return box_smooth(region)[rows.start - a:rows.stop - a, cols.start - c:cols.stop - c]


def plane_sums(plane: Plane, block: int, progress: Progress = None) -> tuple[float, float, float]:
    """(min, max, Σ) of ``plane`` (float64 sum), one block at a time; UsageError beyond ±MAX_MAGNITUDE."""
    lo, hi, total = math.inf, -math.inf, 0.0
    grid = block_grid(plane.shape, block)
    for done, (rows, cols) in enumerate(grid, 1):
        values = np.asarray(plane[rows, cols])
        a, b = extremes(values)
        lo, hi, total = min(lo, a), max(hi, b), total + float(values.sum(dtype=np.float64))
        if progress is not None:
            progress(done, len(grid))
    return lo, hi, total


def plane_samples(plane: Plane, block: int, stride: int, exponent: int, *, raw: bool,
                  smooth: bool) -> tuple[np.ndarray, np.ndarray]:
    """(raw values, box-smoothed values) of ``plane`` on the ``stride`` grid (empty where not asked for)."""
    raws, smooths = [], []
    for rows, cols in block_grid(plane.shape, block):
        keep = on_stride(rows, cols, stride)
        if raw:
            raws.append(np.asarray(plane[rows, cols])[keep].astype(np.float64).ravel())
        if smooth:
            smooths.append(smoothed_block(plane, rows, cols, exponent)[keep].ravel())
    join = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)
    return join(raws, np.float64), join(smooths, np.float32)


def bright_values(plane: Plane, middle: float, block: int) -> np.ndarray:
    """The values of ``plane`` above ``middle``, block by block, stopping at HOT_PIXELS of them: enough for
    ``intensity.warn_hot_pixels`` to tell a few hot pixels from an image's bright content (a pass over the whole
    plane only where they are few)."""
    found: list[np.ndarray] = []
    count = 0
    for rows, cols in block_grid(plane.shape, block):
        values = np.asarray(plane[rows, cols])
        bright = values[values > middle]  # the comparison ``warn_hot_pixels`` makes
        found.append(bright[:HOT_PIXELS - count])
        count += len(found[-1])
        if count >= HOT_PIXELS:
            break
    return np.concatenate(found) if found else np.zeros(0, np.dtype(plane.dtype))


def float_exponent(plane: Plane, lo: float, hi: float) -> int:
    """The power of two ``intensity.background`` scales a float image by (0 for integers and values near 1)."""
    peak = max(abs(lo), abs(hi))
    if np.dtype(plane.dtype).kind == "f" and peak > 0 and not 2.0**-60 < peak < 2.0**60:
        return math.frexp(peak)[1]
    return 0


def input_statistics(first: Plane, second: Plane, normalize: str, reference: int, need_total: bool, *,
                     block: int = BLOCK, sample: int = SAMPLE_PIXELS) -> tuple[Scale, Scale]:
    """The two inputs' ``Scale``s as ``Predictor.pair_scales`` gives them (``reference``: the input nearer focus, whose
    percentiles set both ranges under ``stack``), from streamed passes: exact min/max/sum, percentiles estimated
    from every ``sample_stride``-th pixel (see the module); the hot-pixel warning as the whole-image path says it
    (``bright_values``: one more pass, cut short where bright pixels are many). UsageError as
    ``intensity.extremes``."""
    check_normalization(normalize)
    planes = (first, second)
    sums = [plane_sums(p, block) for p in planes]
    stride = sample_stride(first.shape, sample)
    raw = normalize != "minmax"
    samples = [plane_samples(p, block, stride, float_exponent(p, lo, hi), raw=raw, smooth=need_total)
               for p, (lo, hi, _) in zip(planes, sums, strict=True)]  # neither asked for: nothing read
    if normalize == "minmax":
        ranges = [intensity_range(np.array([lo, hi]), "minmax") for lo, hi, _ in sums]  # its flat-image rule
    elif normalize == "percentile":
        ranges = [intensity_range(r, "percentile") for r, _ in samples]
    else:
        ranges = [intensity_range(samples[reference][0], "percentile")] * 2
    for p, (lo, hi) in zip(planes, ranges, strict=True):  # the whole-image path's warning (``Scale.of``), once each
        warn_hot_pixels(bright_values(p, lo + 0.5 * (hi - lo), block), lo, hi)
    scales = []
    for p, (lo, hi), (a, b, total), (_, smooth) in zip(planes, ranges, sums, samples, strict=True):
        if not need_total:
            scales.append(Scale(lo, hi))
            continue
        bg = math.ldexp(percentile(smooth, BACKGROUND_PERCENTILE), float_exponent(p, a, b))
        scales.append(Scale(lo, hi, bg, total - bg * p.shape[0] * p.shape[1]))
    return scales[0], scales[1]


def unit_region(planes: Sequence[Plane], scales: Sequence[Scale], rows: slice, cols: slice, margin: int,
                multiple: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """(float32 [1, 2, h, w] region of the pair in [0, 1], padded as the whole image is, around the block ``rows`` ×
    ``cols`` with ``margin`` px; the block's place in it)."""
    h, w = planes[0].shape
    ph, pw = h + (-h) % multiple, w + (-w) % multiple  # the whole image's padded size
    a, b = max(0, rows.start - margin), min(ph, rows.stop + margin)
    c, d = max(0, cols.start - margin), min(pw, cols.stop + margin)
    inside = (min(b, h) - a, min(d, w) - c)
    region = np.empty((1, 2, b - a, d - c), np.float32)
    for j, (plane, scale) in enumerate(zip(planes, scales, strict=True)):
        region[0, j, :inside[0], :inside[1]] = to_unit(plane[a:a + inside[0], c:c + inside[1]], scale.lo, scale.hi)
    # bottom/right only: what lies past the image here lies past it in the whole padded image too
    reflect_pad_in_place(region, inside)
    return region, (slice(rows.start - a, rows.stop - a), slice(cols.start - c, cols.stop - c))


def put(out: Any, k: int, rows: slice, cols: slice, values: np.ndarray) -> None:
    """Write level ``k``'s block into ``out`` ([K, H, W], or [H, W] for one level)."""
    out[(k, rows, cols) if len(out.shape) == 3 else (rows, cols)] = values


class MappedWriter:
    """Writes [0, 1] blocks of K levels into ``out`` mapped by ``maps`` (``intensity.output_map``'s, per level),
    counting the pixels clipped per level and the written values' (min, max): the output's display window."""

    def __init__(self, out: Any, maps: Sequence[tuple[float, float, float]]):
        self.out, self.maps = out, list(maps)
        self.clipped = [0] * len(self.maps)
        self.window = (math.inf, -math.inf)

    def __call__(self, k: int, rows: slice, cols: slice, unit: np.ndarray) -> None:
        values = np.empty(unit.shape, np.dtype(self.out.dtype))
        self.clipped[k] += map_unit(unit, self.maps[k], values)
        if values.size:
            self.window = (min(self.window[0], float(values.min())), max(self.window[1], float(values.max())))
        put(self.out, k, rows, cols, values)

    def warn(self, size: int) -> None:
        for clipped in self.clipped:
            warn_clipped(clipped, size, np.dtype(self.out.dtype))


def run_blocks(predictor: Predictor, planes: Sequence[Plane], scales: Sequence[Scale], alphas: Sequence[float],
               rule: str, block: int, write: Callable[[int, slice, slice, np.ndarray], None],
               progress: Progress = None) -> list[float]:
    """Every block of the pair through ``predictor`` (see the module), each level's [0, 1] block handed to
    ``write(k, rows, cols, values)``; returns each level's Σ over the image (float64)."""
    m = predictor.multiple
    margin = -(-predictor.radius // m) * m  # on the grid, so a region's stride-2 grids are the whole image's
    grid = block_grid(planes[0].shape, block)
    sums = [0.0] * len(alphas)
    for done, (rows, cols) in enumerate(grid, 1):
        region, (r, c) = unit_region(planes, scales, rows, cols, margin, m)
        levels = predictor.combine_pair(region, region.shape[-2:], alphas, rule)[0][:, r, c]
        for k, level in enumerate(levels):
            sums[k] += float(level.sum(dtype=np.float64))
            write(k, rows, cols, level)
        if progress is not None:
            progress(done, len(grid))
    return sums


def check_stream(predictor: Predictor, first: Plane, second: Plane, alphas: Sequence[float], out: Any,
                 block: int) -> None:
    """UsageError for planes of two shapes, no α, an output of another shape, a block off the model's grid."""
    if tuple(first.shape) != tuple(second.shape) or len(first.shape) != 2:
        raise UsageError(f"the two planes are {tuple(first.shape)} and {tuple(second.shape)}; pass two planes of one "
                         "field")
    if not alphas:
        raise UsageError("{alpha}: give at least one value", "alpha")
    want = tuple(first.shape) if len(alphas) == 1 and len(out.shape) == 2 else (len(alphas), *first.shape)
    if tuple(out.shape) != want:
        raise UsageError(f"the output is {tuple(out.shape)}; pass one of {want}")
    if block <= 0 or block % predictor.multiple:
        raise UsageError(f"block {block}: give a multiple of the model's grid, {predictor.multiple} px")


def stream_pair(predictor: Predictor, first: Plane, second: Plane, alphas: Sequence[float], rule: str, out: Any, *,
                stats: PairStatistics | None = None, scratch: Callable[..., Any] | None = None, block: int = BLOCK,
                sample: int = SAMPLE_PIXELS, progress: Progress = None) -> tuple[PairStatistics, tuple[float, float]]:
    """Blur or deblur (``rule``) the pair of planes ``first``, ``second`` (see ``Plane``) at ``alphas`` into ``out``
    ([K, H, W] or, for one level, [H, W], its dtype the output's) block by block, in the inputs' scale as
    ``Predictor.run_pairs`` maps it (at the planes' own pixel size: no resampling). ``stats``: the statistics to use
    (None: estimated, ``input_statistics``; for ``conserve`` without ``outputs`` the [0, 1] output goes first into
    ``scratch(shape, dtype)``, a zarr-like array, then is mapped). Returns (the statistics used, the output's
    (min, max)). ``progress(done, total)`` after each network block. UsageError: ``check_stream``'s refusals."""
    check_stream(predictor, first, second, alphas, out, block)
    if predictor.config.tile is None:  # a whole block's activations (up to 2048² px: GiBs) would set the peak
        predictor = predictor.with_options(tile=STREAM_TILE)
    intensity, size = predictor.config.intensity, first.shape[0] * first.shape[1]
    conserve = intensity == "conserve"
    if stats is None:
        stats = PairStatistics(input_statistics(first, second, predictor.normalize, NEAR_FOCUS[rule], conserve,
                                                block=block, sample=sample))
    refs, planes = reference_scales(stats.scales, alphas, rule), (first, second)
    if conserve and not stats.outputs:
        if scratch is None:
            raise UsageError("conserve without the output's statistics needs a scratch array; pass scratch")
        unit = scratch((len(alphas), *first.shape), np.float32)
        sums = run_blocks(predictor, planes, stats.scales, alphas, rule, block,
                          lambda k, rows, cols, values: put(unit, k, rows, cols, values), progress)
        stride = sample_stride(first.shape, sample)
        outputs = []
        for k, total in enumerate(sums):
            level = PlaneRegions(unit, (k,), (), tuple(first.shape), np.dtype(np.float32))
            _, smooth = plane_samples(level, block, stride, 0, raw=False, smooth=True)
            bg = percentile(smooth, BACKGROUND_PERCENTILE)
            outputs.append((bg, total - bg * size))
        stats = PairStatistics(stats.scales, tuple(outputs))
        writer = MappedWriter(out, [output_map(r, intensity, *o, size) for r, o in zip(refs, outputs, strict=True)])
        for k in range(len(alphas)):
            for rows, cols in block_grid(first.shape, block):
                writer(k, rows, cols, np.asarray(unit[k, rows, cols]))
    else:
        given = stats.outputs if conserve else [(0.0, 0.0)] * len(alphas)
        writer = MappedWriter(out, [output_map(r, intensity, *o, size) for r, o in zip(refs, given, strict=True)])
        run_blocks(predictor, planes, stats.scales, alphas, rule, block, writer, progress)
    writer.warn(size)
    return stats, writer.window
