"""Randomized scenes for training (``synth --optics random``): each field draws its own ``scene.SceneStyle``
(density and clustering, depth spread, nucleus size, shape, brightness, texture and nucleoli, mitotic cells),
dims some of its cells and scatters debris, from the ranges in ``SCENE_RANGES`` (documented in
docs/tutorials/synth.md). The fixed mode never calls this module, so its fields stay byte for byte the same.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from blurlatent.synth.scene import Cell, SceneStyle

Range = tuple[float, float]


@dataclass(frozen=True)
class SceneRanges:
    """The ranges every field's scene is drawn from (uniform; log-uniform for ``density``)."""

    density: Range = (0.3, 2.0)  # x the calibrated 20-300 cells per 696x520 field
    scattered: Range = (0.2, 0.9)  # fraction of cells outside colonies: low means clustered
    colony_spread_px: Range = (40.0, 200.0)
    focus_error_um: Range = (0.3, 1.5)
    depth_um: Range = (0.5, 2.0)
    radius_px: Range = (8.0, 15.0)  # mean nucleus radius
    radius_cv: Range = (0.1, 0.25)
    elongation: Range = (1.1, 1.8)
    wobble: Range = (0.03, 0.15)
    brightness: Range = (600.0, 2000.0)  # median nucleus signal (ADU, before the exposure)
    brightness_sd: Range = (0.2, 0.6)  # log-normal spread
    mitotic: Range = (0.0, 0.12)
    mitotic_gain: Range = (1.5, 3.0)  # mitotic nuclei: small, condensed, bright
    texture: Range = (0.1, 0.45)
    texture_px: Range = (0.8, 2.5)
    nucleoli: tuple[int, int] = (1, 6)  # the count bound (exclusive): 0 to 5 nucleoli
    nucleoli_contrast: Range = (-0.6, -0.2)
    nucleoli_px: Range = (1.5, 3.0)
    dim: Range = (0.0, 0.25)  # fraction of cells that are dim ...
    dim_gain: Range = (0.1, 0.4)  # ... and how dim
    debris: Range = (0.0, 40.0)  # specks and fibres per 696x520 field


SCENE_RANGES = SceneRanges()


def draw_style(rng: np.random.Generator, ranges: SceneRanges = SCENE_RANGES) -> tuple[SceneStyle, dict]:
    """(one field's scene style, the extras the style does not hold: {dim, dim_gain, debris}) from ``ranges``."""
    u = lambda r: float(rng.uniform(*r))
    density = float(math.exp(rng.uniform(*np.log(ranges.density))))
    radius, cv = u(ranges.radius_px), u(ranges.radius_cv)
    median, sd = u(ranges.brightness), u(ranges.brightness_sd)
    spread = u(ranges.colony_spread_px)
    style = SceneStyle(
        density=density, scattered=u(ranges.scattered), colony_spread=(0.5 * spread, spread),
        focus_error_um=u(ranges.focus_error_um), depth_um=u(ranges.depth_um),
        radius_px=(radius, cv * radius, 0.6 * radius, 1.35 * radius), elongation=u(ranges.elongation),
        wobble=u(ranges.wobble), brightness=(median, sd, 0.2 * median, 4.0 * median),
        mitotic=u(ranges.mitotic), mitotic_gain=u(ranges.mitotic_gain), texture=u(ranges.texture),
        mitotic_texture=0.5 * u(ranges.texture), texture_px=u(ranges.texture_px),
        nucleoli=(int(rng.integers(ranges.nucleoli[0], ranges.nucleoli[1])), u(ranges.nucleoli_contrast),
                  u(ranges.nucleoli_px)),
    )
    extras = {"dim": u(ranges.dim), "dim_gain": u(ranges.dim_gain), "debris": u(ranges.debris)}
    return style, extras


def dim_cells(rng: np.random.Generator, cells: list[Cell], fraction: float, gain: float) -> int:
    """Make about ``fraction`` of ``cells`` dim (their nucleus and actin times ``gain``, in place); how many."""
    chosen = rng.random(len(cells)) < fraction
    for cell, dim in zip(cells, chosen, strict=True):
        if dim:
            cell.brightness *= gain
            cell.actin *= gain
    return int(chosen.sum())


def scene_record(style: SceneStyle, extras: dict) -> dict:
    """A field's drawn scene as plain data (floats rounded): the style's fields and the extras."""
    rounded = lambda v: round(v, 4) if isinstance(v, float) else v
    out = {k: ([rounded(x) for x in v] if isinstance(v, tuple) else rounded(v)) for k, v in asdict(style).items()}
    return {**out, **{k: rounded(v) for k, v in extras.items()}}


def render_debris(rng: np.random.Generator, shape: tuple[int, int], per_field: float) -> tuple[np.ndarray, int]:
    """(float32 [H, W], how many): debris on a canvas of ``shape``: small bright specks and short fibres (dust,
    dead-cell fragments), ``per_field`` of them per 696x520 on average (Poisson)."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    count = int(rng.poisson(per_field * h * w / (696 * 520)))
    for _ in range(count):
        y, x = int(rng.integers(h)), int(rng.integers(w))
        brightness = float(rng.lognormal(math.log(800.0), 0.7))
        if rng.random() < 0.7:  # a speck: a single bright point, blurred below by its size
            out[y, x] += brightness * float(rng.uniform(4, 30))
        else:  # a fibre: a short straight line
            length, angle = rng.uniform(5, 30), rng.uniform(0, np.pi)
            t = np.linspace(0, length, int(length) * 2 + 1)
            ys = np.clip(np.rint(y + t * math.sin(angle)).astype(int), 0, h - 1)
            xs = np.clip(np.rint(x + t * math.cos(angle)).astype(int), 0, w - 1)
            out[ys, xs] += brightness * 0.5
    return (gaussian_filter(out, 1.0) if count else out), count
