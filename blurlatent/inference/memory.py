"""Memory at inference: what a job will hold, estimated before any work and checked against what the machine has,
and the whole-image arrays of a job kept few.

Until inference streams (planes read and written tile by tile), a job holds its images whole. What ``Predictor``
keeps beside its inputs, per pixel of N pairs of H×W at K levels (``job_bytes``):

* the pair in [0, 1], float32, padded to the model's multiple: 8 B (``unit_pair`` writes it in place, a block of
  rows at a time, so no float64 image and no second, padded copy is made);
* the tiles' blended output, float32 per level: 4·K B, and the tiles' weight sum: 4 B where tiled;
* the outputs in their dtype, K levels (``mapped_levels``, straight into one array) and, while a level is mapped,
  that level once more and 8 B of float32/float64 work (``intensity.to_input_scale`` works on blocks of pixels);
* one tile's activations at a time (CPU only: a GPU's are in its own memory), ``activation_bytes`` per pixel.

Measured peak RSS over the inputs, 4000×4000 uint16 pair, the built-in model on CPU, default tiles of 512:
57 B/px (869 MiB) before these changes, 24 B/px (367 MiB) after, outputs bit for bit equal; ``job_bytes``
estimates 40 B/px for it.

``check_job_memory`` refuses, in one line naming what to change (a smaller ``tile``, a smaller input), a job whose
estimate passes ``LIMIT`` of the memory available (``available_bytes``: MemAvailable on Linux, ``os.sysconf``
elsewhere; unknown: no check). ``reports_out_of_memory`` turns running out anyway (MemoryError, torch's allocator
errors) into a one-line ``RuntimeFailure`` saying the same.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from blurlatent.errors import RuntimeFailure, UsageError
from blurlatent.intensity import Scale, to_input_scale, to_unit
from blurlatent.nets.tiling import plan_tiles, reflect_pad_in_place

LIMIT = 0.8  # a job may plan to use this much of the memory available
SMALL_TILE = 256  # the tile size a refusal suggests where the activations are most of a job
BLOCK_PIXELS = 1 << 16  # pixels normalized at a time: float64 copies of a block, never of a whole image
PAIR_BYTES = 8  # per padded pixel: the two inputs in [0, 1], float32
LEVEL_BYTES = 4  # per padded pixel and level: the blended output, float32
WEIGHT_BYTES = 4  # per padded pixel, tiled: the tiles' summed weights
MAPPING_BYTES = 8  # per pixel, while a level is mapped back: the background filter, or the float64 total
BLOCK_BYTES = 3 * 8 * BLOCK_PIXELS  # float64 work on one block: values, rounded, clipped
MEMINFO = Path("/proc/meminfo")
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")

_per_pixel: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> activation bytes per pixel


def available_bytes() -> int | None:
    """Memory a new job can use now, in bytes: Linux's MemAvailable, else free pages (``os.sysconf``); None when
    the system says neither."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def activation_bytes(model: Any, multiple: int) -> float:
    """Bytes of activations per input pixel of one image through ``model``'s encoder and decoder: every
    convolution's output summed, as float32 (more than is alive at once: the estimate errs high). Measured once per
    model, by hooks on a probe of 4 × ``multiple`` px."""
    if model in _per_pixel:
        return _per_pixel[model]
    sizes: list[int] = []
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel())) for m in convs]
    side = max(4 * multiple, 64)
    try:
        with torch.inference_mode():
            probe = torch.zeros(1, 1, side, side, device=next(model.parameters()).device)
            model.decode(model.encode(probe))
    finally:
        for handle in handles:
            handle.remove()
    _per_pixel[model] = 4.0 * sum(sizes) / side**2
    return _per_pixel[model]


def job_bytes(predictor: Any, shape: tuple[int, int], pairs: int, levels: int, out_bytes: int) -> tuple[int, int]:
    """(bytes of whole-image arrays, bytes of one tile's activations) that ``predictor`` (a ``Predictor``) holds for
    ``pairs`` pairs of ``shape`` at ``levels`` levels with outputs of ``out_bytes`` bytes per pixel (see the module)."""
    h, w = shape
    m = predictor.multiple
    padded = (h + (-h) % m) * (w + (-w) % m)
    plan = plan_tiles((h + (-h) % m, w + (-w) % m), m, predictor.radius, predictor.config.tile)
    tiled = plan[0][2] is not None
    outputs = (levels + 1) * out_bytes + MAPPING_BYTES  # the levels, and the one being mapped
    arrays = pairs * (padded * (PAIR_BYTES + LEVEL_BYTES * levels) + h * w * outputs) + BLOCK_BYTES
    arrays += padded * WEIGHT_BYTES if tiled else 0
    if predictor.device.type != "cpu":
        return arrays, 0
    rows, cols, _ = plan[0]
    images = min(predictor.config.batch_size, max(2 * pairs, pairs * levels))  # one encode or decode pass
    tile = (rows.stop - rows.start) * (cols.stop - cols.start)
    return arrays, int(images * tile * activation_bytes(predictor.model, m))


def check_job_memory(predictor: Any, firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray],
                     levels: int) -> list[np.dtype]:
    """The outputs' dtype per pair (``config.out_dtype``, else the pair's); UsageError, before any work, when the
    job's estimate (``job_bytes``) passes ``LIMIT`` of the memory available: one line naming what to change,
    smaller tiles where its activations are most of it, else a smaller input."""
    given = predictor.config.out_dtype
    dtypes = [np.dtype(given or np.result_type(a, b)) for a, b in zip(firsts, seconds, strict=True)]
    free = available_bytes()
    if free is None:
        return dtypes
    shape, pairs = firsts[0].shape, len(firsts)
    arrays, tile = job_bytes(predictor, shape, pairs, levels, max(d.itemsize for d in dtypes))
    if arrays + tile <= LIMIT * free:
        return dtypes
    size = f"{pairs} pair(s) of {shape[1]}x{shape[0]} px, {levels} level(s)"
    fix = "pass a smaller input (crop or bin it, or fewer levels)"
    if tile > arrays and max(shape) > SMALL_TILE:  # the activations are most of it: smaller tiles help
        fix = f"pass a smaller {{tile}} (e.g. {{tile={SMALL_TILE}}}), or a smaller input (crop or bin it)"
    raise UsageError(f"this job needs about {gib(arrays + tile)} of memory ({size}), more than "
                     f"{LIMIT * 100:.0f} % of the {gib(free)} available; {fix}", "tile")


def gib(count: float) -> str:
    """Bytes in words: ``1.5 GiB``, ``12 MiB``, ``100 KiB``."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:.1f} {unit}" if unit == "GiB" else f"{count / size:.0f} {unit}"
    return f"{count / 1024:.0f} KiB"


def reports_out_of_memory(run):
    """``run`` with running out of memory (MemoryError, torch's CPU or CUDA allocator) as one ``RuntimeFailure``
    line naming what to change, not an internal error."""

    @functools.wraps(run)
    def guarded(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except MemoryError:
            raise RuntimeFailure(out_of_memory_line("MemoryError"), "tile", "batch_size") from None
        except RuntimeError as exc:  # torch: OutOfMemoryError, "DefaultCPUAllocator: can't allocate memory"
            text = str(exc).lower()
            if isinstance(exc, RuntimeFailure) or not any(words in text for words in OUT_OF_MEMORY):
                raise
            raise RuntimeFailure(out_of_memory_line(type(exc).__name__), "tile", "batch_size") from None

    return guarded


def out_of_memory_line(kind: str) -> str:
    return (f"out of memory during inference ({kind}); pass a smaller {{tile}} (e.g. {{tile={SMALL_TILE}}}), "
            "{batch_size=1}, or a smaller input (crop or bin it)")


# --- the arrays of a job ---------------------------------------------------------------------------------------


def unit_pair(firsts: Sequence[np.ndarray], seconds: Sequence[np.ndarray], scales: Sequence[tuple[Scale, Scale]],
              multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(float32 [N, 2, H', W'], (H, W)): each pair mapped to [0, 1] by its scales (``intensity.to_unit``) and
    reflect-padded to ``multiple`` — what ``tiling.pad_to_multiple`` of the stacked pair gives, bit for bit, in one
    array written a block of ``BLOCK_PIXELS`` at a time."""
    h, w = firsts[0].shape
    step = max(1, BLOCK_PIXELS // w)
    pair = np.empty((len(firsts), 2, h + (-h) % multiple, w + (-w) % multiple), np.float32)
    for i, (a, b, (sa, sb)) in enumerate(zip(firsts, seconds, scales, strict=True)):
        for j, (image, scale) in enumerate(((a, sa), (b, sb))):
            for top in range(0, h, step):
                rows = slice(top, min(top + step, h))  # the image's rows: the pad below is filled after
                pair[i, j, rows, :w] = to_unit(image[rows], scale.lo, scale.hi)
    return reflect_pad_in_place(pair, (h, w)), (h, w)


def mapped_levels(unit: np.ndarray, scales: Sequence[tuple[Scale, Scale]], alphas: Sequence[float], rule: str,
                  intensity: str, dtypes: Sequence[np.dtype]) -> np.ndarray:
    """[N, K, H, W] outputs in their inputs' scale (``intensity.to_input_scale``) from [0, 1] ``unit`` [N, K, H, W]:
    blur levels on the α-weighted mix of the two inputs' scales, deblurred images on the less-blurry input's; pair i
    in ``dtypes[i]``, all in one array of their common type, written level by level."""
    out = np.empty(unit.shape, np.result_type(*dtypes))
    for i, (pair, dtype) in enumerate(zip(scales, dtypes, strict=True)):
        for j, ref in enumerate(reference_scales(pair, alphas, rule)):
            out[i, j] = to_input_scale(unit[i, j], ref, intensity, dtype)
    return out


def reference_scales(scales: tuple[Scale, Scale], alphas: Sequence[float], rule: str) -> list[Scale]:
    """Per level, the scale a pair's output is mapped to: blur levels the α-weighted mix of the two inputs' scales,
    deblurred images the less-blurry input's (whole images here, streamed ones in ``streaming``)."""
    sa, sb = scales
    return [sa.mix(a, sb) if rule == "blur" else sb for a in alphas]
