"""Synthetic BBBC006v1-layout z-stacks: nuclei (w1) and actin (w2) seen through a widefield defocus PSF.

The files are laid out exactly like the real download, so ``prepare`` cannot tell the difference::

    OUT/BBBC006_v1_images_z_00/mcf-z-stacks-03212011_a01_s1_w1<UUID>.tif   (no separator before the UUID)
    ...
    OUT/BBBC006_v1_images_z_33/...
    OUT/synth.json     parameters, seed and per-field ground truth (prepare ignores it)

696x520 uint16 LZW TIFFs, a new UUID for the same field on every plane, as in the real set.

Optical model (widefield, 20x, NA 0.45 dry, 0.645 µm/px; z16 in focus, planes 2 µm apart)
-------------------------------------------------------------------------------------------
Every cell has its own axial position ``offset`` (µm; a field-wide autofocus error plus a per-cell spread).
Plane z images a cell at defocus distance ``d = 2 µm·(z − 16) − offset`` through the PSF

    PSF_d = Disk(R(d)) ⊛ Gauss(σ(d)),   R(d) = |d|·tan(asin(NA)) / 0.645 µm   (geometric defocus),
                                       σ(d)² = σ₀² + (β·d)²                 (diffraction + aberrations)

* The disk is the geometric-optics shadow of the pupil: a point ``d`` out of focus spreads over a circle of
  radius ``|d|·tan θ``, θ = asin(0.45) = 26.7°, i.e. 0.78 px per µm of defocus.
* ``σ₀ = sqrt((0.21 λ/NA)² + 1/12 px²)`` is the in-focus Airy core (Gaussian approximation) and pixel
  integration: 0.44 px for Hoechst (λ 0.46 µm), 0.50 px for phalloidin (λ 0.57 µm).
* ``β·|d|`` is the part of the spread that geometric optics misses: spherical aberration from imaging an
  aqueous sample through a plate bottom with a dry objective, and the cell's own thickness. It also
  smooths the disk's hard edge: real defocused BBBC006 nuclei are soft blobs without a bright rim.
  β is CALIBRATED, not chosen: the real z00 of field a01_s1 equals its in-focus plane blurred by a
  Gaussian of σ ≈ 18 px (``../shared/data/bbbc006-samples/README.md``), so the PSF's second moment at
  d = 32 µm, ``sqrt(R²/4 + σ²)``, is set to 18 px, giving β = 0.405 px/µm.

Why not a Born–Wolf (Airy defocus) PSF: at 10–35 µm of defocus (40–50 waves of defocus aberration) its
rings are sub-pixel-fine and are washed out by the aberrations the data show; the disk–Gaussian pair has
the same width law (linear in |d| far from focus, σ₀ at focus), conserves energy exactly and has a closed
form OTF, ``OTF(f) = 2 J₁(2πRf)/(2πRf) · exp(−2π²σ²f²)``, so each plane is one FFT product (no PSF
images are sampled or normalised). OTF(0) = 1, so the convolution conserves the total signal exactly;
the width grows monotonically with |d| on both sides of focus (symmetric: the set is not known to be
asymmetric enough to model).

Cells are rendered in focus on a canvas padded by 64 px on every side (cells just outside the field still
shine into it), grouped into 1 µm depth bins, each bin FFT'd once; each plane is then the inverse FFT of
Σ_bins spectrum × OTF(d_bin), cropped to the field.

Camera (calibrated on the 25 real w1 samples): offset 100 ADU, background 8–18 ADU plus a haze that grows
with the number of cells (dense real fields sit 30–80 ADU above sparse ones at z00), gain
0.39 ADU per photoelectron and read noise 1.4 ADU (the real variance-vs-mean line: var = 1.9 + 0.39·(I −
100), measured from neighbour differences), 12-bit (clipped at 4095). Shot noise is drawn in its normal
approximation, exact to well under 1 % here since every pixel holds ≥ 20 photoelectrons of background.

Content: w1 nuclei are textured ellipses 15–30 px across (chromatin texture, bright chromocentres, dim
nucleoli, a few small bright mitotic nuclei), of log-normal brightness, in colonies where nuclei touch.
w2 is the actin of the same cells at the same depth: a cortical outline at the cell border (cell
territories from a Voronoi partition around the nuclei, cut at a ragged radius), stress fibres along one
dominant direction per cell, a dim cytoplasm and speckle; dimmer than w1 and more textured.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import UsageError
from .bbbc006 import N_PLANES as N_BBBC_PLANES
from .files import check_output_folder, make_temp_dir, replace_folder
from .progress import progress_bar

log = logging.getLogger(__name__)

# --- optics and camera -------------------------------------------------------------------------
PIXEL_UM = 0.645
NA = 0.45
Z_STEP_UM = 2.0
FOCUS_PLANE = 16
TAN_THETA = math.tan(math.asin(NA))  # dry objective
WAVELENGTH_UM = {"w1": 0.46, "w2": 0.57}  # Hoechst 33342 and rhodamine/Alexa-phalloidin emission peaks
CALIBRATION_DISTANCE_UM = 32.0  # z00 is 16 planes x 2 µm below focus ...
CALIBRATION_SIGMA_PX = 18.0  # ... and matches the in-focus plane blurred by a Gaussian of this sigma
PAD = 64  # px of scene around the field that still shines into it
DEPTH_BIN_UM = 1.0

CAMERA_OFFSET = 100.0
GAIN = 0.39  # ADU per photoelectron
READ_NOISE = 1.4  # ADU
FULL_SCALE = 4095  # 12 bits

PLATE_PREFIX = "mcf-z-stacks-03212011"
ROWS = "abcdefghijklmnop"
N_FIELDS_MAX = len(ROWS) * 24 * 2  # 384 wells x 2 sites


def sigma0_px(channel: str) -> float:
    """In-focus PSF sigma (px): Airy core 0.21 λ/NA and pixel integration, in quadrature."""
    airy = 0.21 * WAVELENGTH_UM.get(channel, 0.5) / NA / PIXEL_UM
    return math.sqrt(airy**2 + 1.0 / 12.0)


def disk_radius_px(distance_um: float) -> float:
    """Geometric defocus blur radius R(d) in px."""
    return abs(distance_um) * TAN_THETA / PIXEL_UM


# β from the calibration: R²/4 + σ₀² + (β d)² = 18² at d = 32 µm (a disk of radius R has variance R²/4 per axis)
BETA_PX_PER_UM = math.sqrt(
    CALIBRATION_SIGMA_PX**2 - disk_radius_px(CALIBRATION_DISTANCE_UM) ** 2 / 4 - sigma0_px("w1") ** 2
) / CALIBRATION_DISTANCE_UM


def gauss_sigma_px(distance_um: float, channel: str = "w1") -> float:
    """σ(d) of the Gaussian factor of the PSF, in px."""
    return math.sqrt(sigma0_px(channel) ** 2 + (BETA_PX_PER_UM * distance_um) ** 2)


def equivalent_sigma_px(distance_um: float, channel: str = "w1") -> float:
    """Per-axis standard deviation of the whole PSF (disk ⊛ Gaussian): the 'Gaussian σ' it is comparable to."""
    return math.sqrt(disk_radius_px(distance_um) ** 2 / 4 + gauss_sigma_px(distance_um, channel) ** 2)


def plane_distance_um(plane: int) -> float:
    """Nominal focus position of plane z relative to the in-focus plane z16 (µm)."""
    return Z_STEP_UM * (plane - FOCUS_PLANE)


class _RadialOTF:
    """OTF(|f|) looked up in a fine 1-D table: the OTF is radially symmetric, so a table lookup replaces
    evaluating a Bessel function on every frequency of every (plane, depth bin)."""

    STEP = 1e-4  # cycles/px; the table error is far below the 16-bit quantisation

    def __init__(self, shape: tuple[int, int]):
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        radius = np.sqrt(fy**2 + fx**2)
        self.index = np.rint(radius / self.STEP).astype(np.int32)
        self.table_f = np.arange(int(self.index.max()) + 1) * self.STEP

    def table(self, distance_um: float, channel: str) -> np.ndarray:
        from scipy.special import j1

        f = self.table_f
        x = 2 * np.pi * disk_radius_px(distance_um) * f
        jinc = np.ones_like(x)
        nz = x > 1e-8
        jinc[nz] = 2 * j1(x[nz]) / x[nz]
        sigma = gauss_sigma_px(distance_um, channel)
        return (jinc * np.exp(-2 * np.pi**2 * sigma**2 * f**2)).astype(np.float32)

    def __call__(self, distance_um: float, channel: str) -> np.ndarray:
        return np.take(self.table(distance_um, channel), self.index)


def defocus_psf(distance_um: float, size: int = 129, channel: str = "w1") -> np.ndarray:
    """The PSF at defocus ``distance_um`` as a float64 [size, size] image centred at size // 2.

    It is the exact inverse FFT of the OTF the synthesiser uses (so it sums to 1 up to float error)."""
    otf = _RadialOTF((size, size))(distance_um, channel).astype(np.float64)
    psf = np.fft.irfft2(otf, s=(size, size))
    return np.fft.fftshift(psf)


def blur(image: np.ndarray, distance_um: float, channel: str = "w1") -> np.ndarray:
    """Convolve a float image (periodic boundary) with the defocus PSF: float32, same shape, same sum."""
    import scipy.fft as sfft

    spectrum = sfft.rfft2(np.asarray(image, dtype=np.float32))
    return sfft.irfft2(spectrum * _RadialOTF(image.shape)(distance_um, channel), s=image.shape).astype(np.float32)


# --- scene -------------------------------------------------------------------------------------


@dataclass
class Cell:
    y: float  # nucleus centre on the padded canvas (px)
    x: float
    ry: float  # nucleus semi-axes (px)
    rx: float
    angle: float  # radians
    brightness: float  # nucleus mean in-focus signal above background (ADU)
    actin: float  # actin in-focus signal scale (ADU)
    offset_um: float  # axial position of the cell relative to the z16 focal plane
    mitotic: bool = False


def make_cells(rng: np.random.Generator, shape: tuple[int, int], n: int) -> list[Cell]:
    """``n`` cells on a canvas of ``shape`` (H, W): colonies plus scattered cells, nuclei may touch."""
    h, w = shape
    n_colonies = max(1, int(rng.integers(1, 5) * (h * w) / (520 * 696) + 0.5))
    colonies = np.column_stack([rng.uniform(0, h, n_colonies), rng.uniform(0, w, n_colonies)])
    spread = rng.uniform(80, 200, n_colonies)
    field_offset = rng.normal(0.0, 0.7)  # the autofocus is not perfect
    cells: list[Cell] = []
    centres = np.zeros((0, 2))
    radii = np.zeros(0)
    tries = 0
    while len(cells) < n and tries < 40 * n:
        tries += 1
        if rng.random() < 0.6:  # real dense fields are an even carpet of nuclei, sparse ones loose groups
            y, x = rng.uniform(0, h), rng.uniform(0, w)
        else:
            k = rng.integers(n_colonies)
            y, x = colonies[k] + rng.normal(0, spread[k], 2)
            if not (0 <= y < h and 0 <= x < w):
                continue
        mitotic = rng.random() < 0.04
        r = rng.uniform(4.0, 6.0) if mitotic else float(np.clip(rng.normal(11.5, 1.8), 7.5, 15.0))
        if len(centres):
            dist = np.hypot(centres[:, 0] - y, centres[:, 1] - x)
            # 0.9 of the summed radii: neighbours may touch and overlap slightly, never stack
            if np.any(dist < 0.9 * (radii + r)):
                continue
        elong = rng.uniform(1.0, 1.35)
        brightness = float(np.clip(rng.lognormal(np.log(1350.0), 0.3), 500, 2400)) * (1.4 if mitotic else 1.0)
        cells.append(
            Cell(
                y=float(y), x=float(x), ry=r / math.sqrt(elong), rx=r * math.sqrt(elong),
                angle=float(rng.uniform(0, np.pi)), brightness=brightness,
                actin=float(rng.lognormal(np.log(420.0), 0.35)),
                offset_um=float(field_offset + np.clip(rng.normal(0.0, 1.0), -2.5, 2.5)),
                mitotic=mitotic,
            )
        )
        centres = np.vstack([centres, [y, x]])
        radii = np.append(radii, r)
    return cells


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def _box(cy, cx, half, shape):
    y0, y1 = max(0, int(cy - half)), min(shape[0], int(cy + half) + 2)
    x0, x1 = max(0, int(cx - half)), min(shape[1], int(cx + half) + 2)
    return y0, y1, x0, x1


def render_nucleus(rng: np.random.Generator, cell: Cell, shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """One textured nucleus: (box y0, y1, x0, x1 on the canvas of ``shape``, float32 signal, bool mask) on that box."""
    half = max(cell.rx, cell.ry) * 1.3 + 3
    box = _box(cell.y, cell.x, half, shape)
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cell.y, xx - cell.x
    c, s = math.cos(cell.angle), math.sin(cell.angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    theta = np.arctan2(v, u)
    # a slightly irregular outline: low harmonics of the radius
    wobble = 1 + sum(rng.uniform(0, 0.06) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    rho = np.sqrt((u / cell.rx) ** 2 + (v / cell.ry) ** 2) / wobble
    r_mean = 0.5 * (cell.rx + cell.ry)
    mask = 1 / (1 + np.exp(np.clip((rho - 1) * r_mean / 0.6, -30, 30)))
    dome = 0.75 + 0.25 * np.sqrt(np.clip(1 - rho**2, 0, 1))  # thicker in the middle
    texture = 1 + (0.12 if cell.mitotic else 0.22) * _smooth_noise(rng, mask.shape, 1.3)
    spots = np.zeros_like(mask)
    for amplitude, count, width in ((0.45, rng.integers(2, 7), 1.2), (-0.3, rng.integers(0, 3), 2.0)):
        for _ in range(count):  # bright chromocentres, dim nucleoli
            a = rng.uniform(0, 2 * np.pi)
            rr = rng.uniform(0, 0.6)
            sy = cell.y + rr * cell.ry * math.sin(a)
            sx = cell.x + rr * cell.rx * math.cos(a)
            spots += amplitude * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / (2 * width**2))
    value = cell.brightness * mask * dome * np.clip(texture + spots, 0.1, None)
    return box, value.astype(np.float32), mask > 0.5


def render_actin(rng: np.random.Generator, cell: Cell, k: int, owner: np.ndarray, nuclei: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """One cell's actin: (box, float32 signal on it): cortex at the border, stress fibres, dim cytoplasm.

    ``owner`` is the int32 [H, W] Voronoi label (nearest nucleus), ``nuclei`` the int32 [H, W] nucleus label
    (-1 outside nuclei); cell ``k`` lives where ``owner == k``."""
    from scipy.ndimage import gaussian_filter

    r_nuc = 0.5 * (cell.rx + cell.ry)
    r_cell = r_nuc * rng.uniform(1.8, 3.0)
    half = r_cell * 1.35 + 4
    box = _box(cell.y, cell.x, half, owner.shape)
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
    fibres *= np.clip(1 + 0.5 * _smooth_noise(rng, body.shape, 2.0), 0, None)  # beaded, broken fibres
    speckle = np.clip(1 + 0.45 * _smooth_noise(rng, body.shape, 0.8), 0, None)
    over_nucleus = 1 - 0.6 * gaussian_filter((nuclei[y0:y1, x0:x1] == k).astype(np.float32), 1.5)
    value = cell.actin * (0.9 * cortex + 0.55 * fibres * body + 0.18 * body) * speckle * over_nucleus
    return box, value.astype(np.float32)


def render_scene(rng: np.random.Generator, cells: Sequence[Cell], shape: tuple[int, int], channels: Sequence[str], bins: Sequence[int]) -> dict[tuple[str, int], np.ndarray]:
    """In-focus signal (float32 [H, W] on the padded canvas) per (channel, depth bin); ``bins[k]`` is cell k's bin."""
    from scipy.ndimage import distance_transform_edt

    layers = {(c, b): np.zeros(shape, dtype=np.float32) for c in channels for b in sorted(set(bins))}
    if not cells:
        return layers
    centre = lambda cell: (min(int(cell.y), shape[0] - 1), min(int(cell.x), shape[1] - 1))  # noqa: E731
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
        (y0, y1, x0, x1), value, mask = render_nucleus(rng, cell, shape)
        nuclei[y0:y1, x0:x1][mask] = k
        if "w1" in channels:
            layers["w1", bins[k]][y0:y1, x0:x1] += value
    if "w2" in channels:
        for k, cell in enumerate(cells):
            (y0, y1, x0, x1), value = render_actin(rng, cell, k, owner, nuclei)
            layers["w2", bins[k]][y0:y1, x0:x1] += value
    return layers


# --- one field ---------------------------------------------------------------------------------


def field_name(index: int) -> tuple[str, int]:
    """(well, site) of field ``index`` in plate order: a01 s1, a01 s2, a02 s1, …, p24 s2."""
    well, site = divmod(index, 2)
    row, col = divmod(well, 24)
    return f"{ROWS[row]}{col + 1:02d}", site + 1


def cells_for_size(rng: np.random.Generator, width: int, height: int) -> int:
    # real fields range from ~15 (sparse) to ~300 (confluent) nuclei per 696x520 field
    return max(1, int(round(math.exp(rng.uniform(math.log(20), math.log(300))) * width * height / (696 * 520))))


def render_field(seed: int, index: int, size: tuple[int, int], planes: Sequence[int], channels: Sequence[str], noise: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """All planes of one field: {channel: uint16 [planes, H, W]} (float32 when ``noise`` is False, without
    offset/background), plus ground truth. Deterministic in (seed, index); a plane's image does not depend on
    which other planes are asked for."""
    import scipy.fft as sfft

    width, height = size
    rng = np.random.default_rng([seed, index, 0])
    canvas_shape = (sfft.next_fast_len(height + 2 * PAD, real=True), sfft.next_fast_len(width + 2 * PAD, real=True))
    cells = make_cells(rng, canvas_shape, cells_for_size(rng, *canvas_shape[::-1]))
    # unresolved haze (medium, debris, far out-of-focus cells) that grows with the number of cells
    haze = 0.1 * len(cells) * (696 * 520) / (canvas_shape[0] * canvas_shape[1])
    # drawn for every channel so that a field's images do not depend on which channels are asked for
    background = {c: float(rng.uniform(8, 18) + haze) for c in WAVELENGTH_UM}
    # cells grouped by 1 µm depth bins: one FFT per bin instead of one per cell
    bins = [int(round(c.offset_um / DEPTH_BIN_UM)) for c in cells]
    layers = render_scene(rng, cells, canvas_shape, channels, bins)
    spectra = {key: sfft.rfft2(layer, workers=1) for key, layer in layers.items()}
    del layers
    otf = _RadialOTF(canvas_shape)

    # vignetting: the illumination falls off ~6 % towards the corners
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((yy - height / 2) / height) ** 2 + ((xx - width / 2) / width) ** 2
    flat = 1 - 0.12 * r2
    out = {c: np.zeros((len(planes), height, width), dtype=np.uint16 if noise else np.float32) for c in channels}
    for p, plane in enumerate(planes):
        for channel in channels:
            total = None
            for (ch, b), spectrum in spectra.items():
                if ch != channel:
                    continue
                term = spectrum * otf(plane_distance_um(plane) - b * DEPTH_BIN_UM, channel)
                if total is None:
                    total = term
                else:
                    total += term
            if total is None:
                clean = np.zeros((height, width), dtype=np.float32)
            else:
                clean = sfft.irfft2(total, s=canvas_shape, workers=1)[PAD : PAD + height, PAD : PAD + width]
            clean = np.clip(clean, 0, None)  # the FFT leaves ±1e-3 ADU ringing where the scene is empty
            if not noise:
                out[channel][p] = clean
                continue
            noise_rng = np.random.default_rng([seed, index, 1 + plane, 1 + list(WAVELENGTH_UM).index(channel)])
            out[channel][p] = camera((clean + background[channel]) * flat, noise_rng)
    well, site = field_name(index)
    truth = {
        "field": f"{well}_s{site}",
        "cells": len(cells),
        "cells_in_field": sum(PAD <= c.y < PAD + height and PAD <= c.x < PAD + width for c in cells),
        "offsets_um": [round(c.offset_um, 3) for c in cells if PAD <= c.y < PAD + height and PAD <= c.x < PAD + width],
        "background_adu": {c: round(background[c], 2) for c in channels},
    }
    return out, truth


def camera(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Expected signal (ADU above the offset, float [H, W]) → a uint16 camera frame: shot noise (variance
    GAIN·signal, normal approximation), read noise, offset, rounding and 12-bit clipping."""
    signal = np.clip(np.asarray(signal, dtype=np.float32), 0, None)
    # shot and read noise are independent Gaussians here: one draw with the summed variance
    sigma = np.sqrt(signal * GAIN + READ_NOISE**2)
    counts = signal + CAMERA_OFFSET + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.clip(np.rint(counts, out=counts), 0, FULL_SCALE).astype(np.uint16)


def file_name(well: str, site: int, channel: str, rng: np.random.Generator) -> str:
    """``mcf-z-stacks-03212011_a01_s1_w1<uuid4>.tif``: NO separator before the UUID, as in BBBC006v1."""
    uid = uuid.UUID(bytes=rng.bytes(16), version=4)
    return f"{PLATE_PREFIX}_{well}_s{site}_{channel}{uid}.tif"


def _write_field(args) -> dict:
    root, seed, index, size, planes, channels = args
    import tifffile

    stacks, truth = render_field(seed, index, size, planes, channels)
    well, site = field_name(index)
    for p, plane in enumerate(planes):
        folder = Path(root) / f"BBBC006_v1_images_z_{plane:02d}"
        for channel in channels:
            # a UUID per (field, plane, channel) that does not depend on which planes are written
            name_rng = np.random.default_rng([seed, index, 1000 + plane, 1 + list(WAVELENGTH_UM).index(channel)])
            tifffile.imwrite(folder / file_name(well, site, channel, name_rng), stacks[channel][p], compression="lzw", metadata=None, photometric="minisblack")
    return truth


def parse_size(text: str) -> tuple[int, int]:
    """``696x520`` → (width, height). Raises UsageError."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"size {text!r} is not WIDTHxHEIGHT; use e.g. 696x520") from None
    if width < 16 or height < 16:
        raise UsageError(f"size {text!r} is too small; use at least 16x16 (the real set is 696x520)")
    return width, height


@dataclass
class SynthResult:
    path: Path
    fields: int
    planes: list[int]
    channels: list[str]
    files: int
    seconds: float


def synthesize(
    out: str | Path,
    fields: int = 10,
    channels: Sequence[str] = ("w1", "w2"),
    planes: Sequence[int] = tuple(range(N_BBBC_PLANES)),
    size: tuple[int, int] = (696, 520),
    seed: int = 0,
    force: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> SynthResult:
    """Write ``fields`` synthetic fields in the BBBC006v1 layout under ``out`` (see the module docstring).

    ``size`` is (width, height). Field k is the same image for a given seed whatever ``fields`` and
    ``planes`` are (so a small set is a prefix of a big one). The folder is built in a temp sibling and
    renamed into place; an existing ``out`` is replaced only with ``force`` and only if it holds nothing
    but BBBC006 plane folders and ``synth.json``. Raises UsageError for bad arguments or outputs.
    """
    import time

    start = time.perf_counter()
    out = Path(out)
    channels = list(channels)
    planes = sorted(set(int(p) for p in planes))
    if not 1 <= fields <= N_FIELDS_MAX:
        raise UsageError(f"--fields {fields}: a BBBC006 plate has 1..{N_FIELDS_MAX} fields (384 wells x 2 sites)")
    bad = [c for c in channels if c not in WAVELENGTH_UM]
    if bad or not channels:
        raise UsageError(f"channel {bad[0] if bad else '(none)'!r} is not a BBBC006 channel; use w1 (nuclei) and/or w2 (actin)")
    if not planes or planes[0] < 0 or planes[-1] >= N_BBBC_PLANES:
        raise UsageError(f"planes {planes}: BBBC006 has planes 0..{N_BBBC_PLANES - 1}")
    _check_output(out, force)

    tmp = make_temp_dir(out)
    try:
        for plane in planes:
            (tmp / f"BBBC006_v1_images_z_{plane:02d}").mkdir()
        jobs = [(str(tmp), seed, i, tuple(size), planes, channels) for i in range(fields)]
        workers = max(1, min(workers or min(2, os.cpu_count() or 1), fields))
        truths = []
        with progress_bar(f"synth {fields} fields", fields, progress) as advance:
            if workers == 1:
                for job in jobs:
                    truths.append(_write_field(job))
                    advance()
            else:
                from concurrent.futures import ProcessPoolExecutor

                with ProcessPoolExecutor(workers) as pool:
                    for truth in pool.map(_write_field, jobs):
                        truths.append(truth)
                        advance()
        meta = {
            "tool": "blurlatent synth",
            "seed": seed,
            "size": list(size),
            "planes": planes,
            "channels": channels,
            "optics": {
                "pixel_um": PIXEL_UM, "na": NA, "z_step_um": Z_STEP_UM, "focus_plane": FOCUS_PLANE,
                "psf": "disk(R=|d| tan(asin NA)/px) * gauss(sigma^2 = sigma0^2 + (beta d)^2)",
                "beta_px_per_um": round(BETA_PX_PER_UM, 4),
                "sigma_px_at_32um": round(equivalent_sigma_px(32.0), 3),
            },
            "camera": {"offset_adu": CAMERA_OFFSET, "gain_adu_per_e": GAIN, "read_noise_adu": READ_NOISE, "full_scale": FULL_SCALE},
            "fields": truths,
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=1))
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SynthResult(out, fields, planes, channels, fields * len(planes) * len(channels), time.perf_counter() - start)


def _check_output(out: Path, force: bool) -> None:
    check_output_folder(out, force, _foreign_entry, "a synth output")


def _foreign_entry(out: Path) -> str | None:
    """The first entry of ``out`` that synth does not write, or None."""
    return next((e.name for e in sorted(out.iterdir()) if e.name != "synth.json" and not e.name.startswith("BBBC006_v1_images_z_")), None)


