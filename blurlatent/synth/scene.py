"""The in-focus scene of one synthetic field: U2OS-like nuclei (w1) and their actin (w2), before any blur.

Content: w1 nuclei are textured ellipses 15–30 px across (chromatin texture, bright chromocentres, dim
nucleoli, a few small bright mitotic nuclei), of log-normal brightness, in colonies where nuclei touch.
w2 is the actin of the same cells at the same depth: a cortical outline at the cell border (cell
territories from a Voronoi partition around the nuclei, cut at a ragged radius), stress fibres along one
dominant direction per cell, a dim cytoplasm and speckle; dimmer than w1 and more textured.

Every random draw comes from the generator passed in, in a fixed order, so a field is a pure function
of its seed (``synth`` relies on that for byte-identical reruns). ``SceneStyle`` holds the numbers the
content is drawn with; its defaults are the calibrated scene above (``synth --optics fixed``, byte for
byte), and ``random_scene`` draws other styles per field for ``synth --optics random``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 on the canvas


@dataclass(frozen=True)
class SceneStyle:
    """How one field's cells look: density, clustering, depth, nucleus size/shape/brightness/texture and
    nucleoli. The defaults are the calibrated scene (what ``synth`` always drew); ``random_scene.draw_style``
    draws others. Changing a value changes what is drawn, never the order of the draws."""

    density: float = 1.0  # x the drawn 20-300 cells per 696x520 field
    scattered: float = 0.6  # fraction of cells placed anywhere; the rest in colonies (clustering)
    colony_spread: tuple[float, float] = (80.0, 200.0)  # px, a colony's standard deviation
    focus_error_um: float = 0.7  # standard deviation of the field-wide autofocus error
    depth_um: float = 1.0  # per-cell axial spread (standard deviation, clipped at 2.5 of it)
    radius_px: tuple[float, float, float, float] = (11.5, 1.8, 7.5, 15.0)  # mean, sd, min, max
    elongation: float = 1.35  # largest axis ratio (squared)
    wobble: float = 0.06  # outline irregularity
    brightness: tuple[float, float, float, float] = (1350.0, 0.3, 500.0, 2400.0)  # median, log-sd, min, max
    mitotic: float = 0.04  # fraction of small bright condensed nuclei
    mitotic_gain: float = 1.4  # their brightness factor
    texture: float = 0.22  # chromatin texture amplitude
    mitotic_texture: float = 0.12  # condensed chromatin is smoother
    texture_px: float = 1.3  # chromatin grain size
    nucleoli: tuple[int, float, float] = (3, -0.3, 2.0)  # count bound (exclusive), contrast, width px


CALIBRATED_STYLE = SceneStyle()


@dataclass
class Cell:
    """One cell: its nucleus (an ellipse on the padded canvas), brightness and depth."""

    y: float  # nucleus centre on the padded canvas (px)
    x: float
    ry: float  # nucleus semi-axes (px)
    rx: float
    angle: float  # radians
    brightness: float  # nucleus mean in-focus signal above background (ADU)
    actin: float  # actin in-focus signal scale (ADU)
    offset_um: float  # axial position of the cell relative to the z16 focal plane
    mitotic: bool = False


def make_cells(rng: np.random.Generator, shape: tuple[int, int], n: int,
               style: SceneStyle = CALIBRATED_STYLE) -> list[Cell]:
    """``n`` cells on a canvas of ``shape`` (H, W): colonies plus scattered cells, nuclei may touch."""
    h, w = shape
    n_colonies = max(1, int(rng.integers(1, 5) * (h * w) / (520 * 696) + 0.5))
    colonies = np.column_stack([rng.uniform(0, h, n_colonies), rng.uniform(0, w, n_colonies)])
    spread = rng.uniform(*style.colony_spread, n_colonies)
    field_offset = rng.normal(0.0, style.focus_error_um)  # the autofocus is not perfect
    mean_r, sd_r, min_r, max_r = style.radius_px
    median_b, sd_b, min_b, max_b = style.brightness
    cells: list[Cell] = []
    centres = np.zeros((0, 2))
    radii = np.zeros(0)
    tries = 0
    while len(cells) < n and tries < 40 * n:
        tries += 1
        if rng.random() < style.scattered:  # real dense fields are an even carpet of nuclei, sparse ones loose groups
            y, x = rng.uniform(0, h), rng.uniform(0, w)
        else:
            k = rng.integers(n_colonies)
            y, x = colonies[k] + rng.normal(0, spread[k], 2)
            if not (0 <= y < h and 0 <= x < w):
                continue
        mitotic = rng.random() < style.mitotic
        r = rng.uniform(4.0, 6.0) if mitotic else float(np.clip(rng.normal(mean_r, sd_r), min_r, max_r))
        if len(centres):
            dist = np.hypot(centres[:, 0] - y, centres[:, 1] - x)
            # 0.9 of the summed radii: neighbours may touch and overlap slightly, never stack
            if np.any(dist < 0.9 * (radii + r)):
                continue
        elong = rng.uniform(1.0, style.elongation)
        brightness = float(np.clip(rng.lognormal(np.log(median_b), sd_b), min_b, max_b))
        brightness *= style.mitotic_gain if mitotic else 1.0
        cells.append(
            Cell(
                y=float(y), x=float(x), ry=r / math.sqrt(elong), rx=r * math.sqrt(elong),
                angle=float(rng.uniform(0, np.pi)), brightness=brightness,
                actin=float(rng.lognormal(np.log(420.0), 0.35)),
                offset_um=float(field_offset + np.clip(rng.normal(0.0, style.depth_um), -2.5 * style.depth_um,
                                                       2.5 * style.depth_um)),
                mitotic=mitotic,
            )
        )
        centres = np.vstack([centres, [y, x]])
        radii = np.append(radii, r)
    return cells


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """float32 [shape] Gaussian-smoothed white noise scaled to unit standard deviation (texture)."""
    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def box_around(cy: float, cx: float, half: float, shape: tuple[int, int]) -> Box:
    """(y0, y1, x0, x1): the square of half-size ``half`` around (cy, cx), clipped to ``shape``."""
    y0, y1 = max(0, int(cy - half)), min(shape[0], int(cy + half) + 2)
    x0, x1 = max(0, int(cx - half)), min(shape[1], int(cx + half) + 2)
    return y0, y1, x0, x1


def render_nucleus(rng: np.random.Generator, cell: Cell, shape: tuple[int, int],
                   style: SceneStyle = CALIBRATED_STYLE) -> tuple[Box, np.ndarray, np.ndarray]:
    """One textured nucleus: (box y0, y1, x0, x1 on the canvas of ``shape``, float32 signal, bool mask) on
    that box."""
    half = max(cell.rx, cell.ry) * 1.3 + 3
    box = box_around(cell.y, cell.x, half, shape)
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cell.y, xx - cell.x
    c, s = math.cos(cell.angle), math.sin(cell.angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    theta = np.arctan2(v, u)
    # a slightly irregular outline: low harmonics of the radius
    wobble = 1 + sum(rng.uniform(0, style.wobble) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    rho = np.sqrt((u / cell.rx) ** 2 + (v / cell.ry) ** 2) / wobble
    r_mean = 0.5 * (cell.rx + cell.ry)
    mask = 1 / (1 + np.exp(np.clip((rho - 1) * r_mean / 0.6, -30, 30)))
    dome = 0.75 + 0.25 * np.sqrt(np.clip(1 - rho**2, 0, 1))  # thicker in the middle
    grain = style.mitotic_texture if cell.mitotic else style.texture
    texture = 1 + grain * smooth_noise(rng, mask.shape, style.texture_px)
    spots = np.zeros_like(mask)
    n_nucleoli, contrast, width_nucleoli = style.nucleoli
    for amplitude, count, width in ((0.45, rng.integers(2, 7), 1.2),
                                    (contrast, rng.integers(0, n_nucleoli), width_nucleoli)):
        for _ in range(count):  # bright chromocentres, dim nucleoli
            a = rng.uniform(0, 2 * np.pi)
            rr = rng.uniform(0, 0.6)
            sy = cell.y + rr * cell.ry * math.sin(a)
            sx = cell.x + rr * cell.rx * math.cos(a)
            spots += amplitude * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * width**2))
    value = cell.brightness * mask * dome * np.clip(texture + spots, 0.1, None)
    return box, value.astype(np.float32), mask > 0.5


def render_actin(
    rng: np.random.Generator, cell: Cell, k: int, owner: np.ndarray, nuclei: np.ndarray
) -> tuple[Box, np.ndarray]:
    """One cell's actin: (box, float32 signal on it): cortex at the border, stress fibres, dim cytoplasm.

    ``owner`` is the int32 [H, W] Voronoi label (nearest nucleus), ``nuclei`` the int32 [H, W] nucleus label
    (-1 outside nuclei); cell ``k`` lives where ``owner == k``."""
    r_nuc = 0.5 * (cell.rx + cell.ry)
    r_cell = r_nuc * rng.uniform(1.8, 3.0)
    half = r_cell * 1.35 + 4
    box = box_around(cell.y, cell.x, half, owner.shape)
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cell.y, xx - cell.x
    theta = np.arctan2(dy, dx)
    ragged = 1 + sum(rng.uniform(0, 0.12) * np.cos(k_ * theta + rng.uniform(0, 2 * np.pi)) for k_ in (2, 3, 4))
    inside = (np.hypot(dy, dx) < r_cell * ragged) & (owner[y0:y1, x0:x1] == k)
    body = gaussian_filter(inside.astype(np.float32), 1.2)
    cortex = np.clip(4 * body * (1 - body), 0, 1)  # peaks on the cell outline
    fibres = np.zeros_like(body)
    direction = rng.uniform(0, np.pi)
    for _ in range(int(rng.integers(3, 10))):
        a = direction + rng.normal(0, 0.15)
        py, px = cell.y + rng.normal(0, r_cell * 0.5), cell.x + rng.normal(0, r_cell * 0.5)
        dist = np.abs((yy - py) * math.cos(a) - (xx - px) * math.sin(a))
        fibres += rng.uniform(0.4, 1.0) * np.exp(-(dist**2) / (2 * 0.7**2))
    fibres *= np.clip(1 + 0.5 * smooth_noise(rng, body.shape, 2.0), 0, None)  # beaded, broken fibres
    speckle = np.clip(1 + 0.45 * smooth_noise(rng, body.shape, 0.8), 0, None)
    over_nucleus = 1 - 0.6 * gaussian_filter((nuclei[y0:y1, x0:x1] == k).astype(np.float32), 1.5)
    value = cell.actin * (0.9 * cortex + 0.55 * fibres * body + 0.18 * body) * speckle * over_nucleus
    return box, value.astype(np.float32)


def render_scene(
    rng: np.random.Generator, cells: Sequence[Cell], shape: tuple[int, int], channels: Sequence[str],
    bins: Sequence[int], style: SceneStyle = CALIBRATED_STYLE,
) -> dict[tuple[str, int], np.ndarray]:
    """In-focus signal (float32 [H, W] on the padded canvas) per (channel, depth bin); ``bins[k]`` is cell
    k's bin."""
    layers = {(c, b): np.zeros(shape, dtype=np.float32) for c in channels for b in sorted(set(bins))}
    if not cells:
        return layers
    centre = lambda cell: (min(int(cell.y), shape[0] - 1), min(int(cell.x), shape[1] - 1))
    seeds = np.ones(shape, dtype=bool)
    label = np.full(shape, -1, dtype=np.int32)
    for k, cell in enumerate(cells):
        seeds[centre(cell)] = False
        label[centre(cell)] = k
    _, (iy, ix) = distance_transform_edt(seeds, return_indices=True)
    owner = label[iy, ix]  # Voronoi partition: index of the nearest nucleus centre
    del iy, ix

    nuclei = np.full(shape, -1, dtype=np.int32)
    for k, cell in enumerate(cells):
        (y0, y1, x0, x1), value, mask = render_nucleus(rng, cell, shape, style)
        nuclei[y0:y1, x0:x1][mask] = k
        if "w1" in channels:
            layers["w1", bins[k]][y0:y1, x0:x1] += value
    if "w2" in channels:
        for k, cell in enumerate(cells):
            (y0, y1, x0, x1), value = render_actin(rng, cell, k, owner, nuclei)
            layers["w2", bins[k]][y0:y1, x0:x1] += value
    return layers


def cells_for_size(rng: np.random.Generator, width: int, height: int, density: float = 1.0) -> int:
    """How many cells a canvas of width x height holds: log-uniform density, as sparse to confluent fields,
    times ``density``."""
    # real fields range from ~15 (sparse) to ~300 (confluent) nuclei per 696x520 field
    per_field = math.exp(rng.uniform(math.log(20), math.log(300)))
    if density != 1.0:  # (the calibrated scene's arithmetic, unchanged)
        per_field *= density
    return max(1, int(round(per_field * width * height / (696 * 520))))
