"""Synthetic BBBC006v1-layout z-stacks: nuclei (w1) and actin (w2) seen through a widefield defocus PSF.

The files are laid out exactly like the real download, so ``prepare`` cannot tell the difference::

    OUT/BBBC006_v1_images_z_00/mcf-z-stacks-03212011_a01_s1_w1<UUID>.tif   (no separator before the UUID)
    ...
    OUT/BBBC006_v1_images_z_33/...
    OUT/synth.json     parameters, seed and per-field ground truth (prepare ignores it)

696x520 uint16 LZW TIFFs, a new UUID for the same field on every plane, as in the real set.

How a field is made: ``scene`` draws the cells and renders their in-focus signal; ``optics`` holds the
calibrated defocus PSF and camera (the optical model is written out in its docstring). Cells are
rendered in focus on a canvas padded by 64 px on every side (cells just outside the field still shine
into it), grouped into 1 µm depth bins, each bin FFT'd once; each plane is then the inverse FFT of
Σ_bins spectrum × OTF(d_bin), cropped to the field. The background is 8–18 ADU plus a haze that grows
with the number of cells (dense real fields sit 30–80 ADU above sparse ones at z00), the illumination
falls off ~6 % towards the corners, and ``optics.camera`` adds the calibrated noise. ``optics.Optics``
(``synth --na/--wavelength/--z-step/--read-noise/--gain/--background``) images the same cells through
another microscope; its defaults give the calibrated one, byte for byte.

``synth --optics random`` (``render_random_field``) is for training: every field draws its own microscope,
camera, background (``random_optics``) and scene style, dim cells and debris (``random_scene``) from
documented ranges, with its own seed-derived generators, and ``synth.json`` records what each field drew
(``fields[i].drawn``). ``--optics fixed`` (the default) is the calibrated microscope above, unchanged.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft as sfft
import tifffile

from blurlatent.bbbc006 import IN_FOCUS_PLANE, N_PLANES, PLATE_PREFIX
from blurlatent.config import SynthConfig, SynthOptics, check_choice
from blurlatent.errors import UsageError
from blurlatent.files.atomic import make_temp_dir, replace_folder, terminate_as_interrupt
from blurlatent.files.output_folders import claim_output_folder, write_marker
from blurlatent.files.workers import ordered_map
from blurlatent.progress import progress_bar
from blurlatent.synth.optics import (
    BETA_PX_PER_UM,
    CAMERA_OFFSET,
    DEFAULT,
    FULL_SCALE,
    PIXEL_UM,
    WAVELENGTH_UM,
    Optics,
    RadialOTF,
    camera,
    equivalent_sigma_px,
    plane_distance_um,
)
from blurlatent.synth.random_optics import (
    RANDOM_FULL_SCALE,
    RANGES,
    FieldOTF,
    illumination,
    random_camera,
    read_noise_map,
)
from blurlatent.synth.random_optics import draw as draw_optics
from blurlatent.synth.random_scene import SCENE_RANGES, dim_cells, draw_style, render_debris, scene_record
from blurlatent.synth.scene import cells_for_size, make_cells, render_scene

log = logging.getLogger(__name__)

PAD = 64  # px of scene around the field that still shines into it
DEPTH_BIN_UM = 1.0
ROWS = "abcdefghijklmnop"
N_FIELDS_MAX = len(ROWS) * 24 * 2  # 384 wells x 2 sites
RECORD = "synth.json"  # written last: its presence marks a finished synth output
TOOL = "blurlatent synth"
COMMAND = "synth"  # its output marker's signature (``outputs``)


def plane_folder(plane: int) -> str:
    """``BBBC006_v1_images_z_07``: the folder (or, without ``.zip``, the zip) holding one plane."""
    return f"BBBC006_v1_images_z_{plane:02d}"


def well_and_site(index: int) -> tuple[str, int]:
    """(well, site) of field ``index`` in plate order: a01 s1, a01 s2, a02 s1, …, p24 s2."""
    well, site = divmod(index, 2)
    row, col = divmod(well, 24)
    return f"{ROWS[row]}{col + 1:02d}", site + 1


def channel_number(channel: str) -> int:
    """1 for w1, 2 for w2: the channel's slot in the per-(plane, channel) random streams."""
    return 1 + list(WAVELENGTH_UM).index(channel)


# --- one field -----------------------------------------------------------------------------------


def canvas_shape(width: int, height: int) -> tuple[int, int]:
    """(H, W) of the padded canvas: the field plus PAD on every side, rounded up to a fast FFT size."""
    return sfft.next_fast_len(height + 2 * PAD, real=True), sfft.next_fast_len(width + 2 * PAD, real=True)


def vignetting(height: int, width: int) -> np.ndarray:
    """float32 [H, W] illumination: 1 at the centre, falling off ~6 % towards the corners."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((yy - height / 2) / height) ** 2 + ((xx - width / 2) / width) ** 2
    return 1 - 0.12 * r2


def defocused_plane(spectra: dict[tuple[str, int], np.ndarray], otf: RadialOTF | FieldOTF, plane: int, channel: str,
                    canvas: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Noise-free float32 [H, W] signal of ``channel`` at ``plane``: every depth bin's spectrum times the OTF
    of its defocus, summed, inverse-FFT'd and cropped from the canvas to the field of ``size`` (W, H)."""
    width, height = size
    total = None
    for (ch, b), spectrum in spectra.items():
        if ch != channel:
            continue
        term = spectrum * otf(plane_distance_um(plane, otf.optics) - b * DEPTH_BIN_UM, channel)
        if total is None:
            total = term
        else:
            total += term
    if total is None:
        clean = np.zeros((height, width), dtype=np.float32)
    else:
        clean = sfft.irfft2(total, s=canvas, workers=1)[PAD : PAD + height, PAD : PAD + width]
    return np.clip(clean, 0, None)  # the FFT leaves ±1e-3 ADU ringing where the scene is empty


def render_field(seed: int, index: int, size: tuple[int, int], planes: Sequence[int], channels: Sequence[str],
                 noise: bool = True, optics: Optics = DEFAULT,
                 mode: SynthOptics = "fixed") -> tuple[dict[str, np.ndarray], dict]:
    """All planes of one field: {channel: uint16 [planes, H, W]} (float32 when ``noise`` is False, without
    offset/background), plus ground truth. Deterministic in (seed, index, optics, mode); a plane's image does not
    depend on which other planes are asked for, and in the fixed mode the cells do not depend on ``optics``.
    ``mode`` "random": ``render_random_field`` (``optics`` unused)."""
    if mode == "random":
        return render_random_field(seed, index, size, planes, channels, noise)
    width, height = size
    rng = np.random.default_rng([seed, index, 0])
    canvas = canvas_shape(width, height)
    cells = make_cells(rng, canvas, cells_for_size(rng, *canvas[::-1]))
    # unresolved haze (medium, debris, far out-of-focus cells) that grows with the number of cells
    haze = 0.1 * len(cells) * (696 * 520) / (canvas[0] * canvas[1])
    # drawn for every channel so that a field's images do not depend on which channels are asked for
    background = {c: float(rng.uniform(8, 18) + haze) + optics.background for c in WAVELENGTH_UM}
    # cells grouped by 1 µm depth bins: one FFT per bin instead of one per cell
    bins = [int(round(c.offset_um / DEPTH_BIN_UM)) for c in cells]
    layers = render_scene(rng, cells, canvas, channels, bins)
    spectra = {key: sfft.rfft2(layer, workers=1) for key, layer in layers.items()}
    del layers
    otf = RadialOTF(canvas, optics)
    flat = vignetting(height, width)
    out = render_planes(spectra, otf, (seed, index, canvas, size), planes, channels, noise,
                        lambda clean, channel, rng: camera((clean + background[channel]) * flat, rng, optics))
    return out, field_truth(cells, index, size, {c: round(background[c], 2) for c in channels})


def draw_random_field(seed: int, index: int, canvas: tuple[int, int],
                      channels: Sequence[str]) -> tuple[list, dict[tuple[str, int], np.ndarray], Any, dict]:
    """(cells, in-focus layers per (channel, depth bin) times the exposure, the field's ``FieldOptics``, what was
    drawn as plain data) of field ``index`` in the random mode. The optics and the scene style come from their
    own stream ([seed, index, 2000]), the cells from the scene's ([seed, index, 0]) drawn with that style."""
    draw_rng = np.random.default_rng([seed, index, 2000])
    field_optics = draw_optics(draw_rng, RANGES)
    style, extras = draw_style(draw_rng, SCENE_RANGES)
    rng = np.random.default_rng([seed, index, 0])
    cells = make_cells(rng, canvas, cells_for_size(rng, *canvas[::-1], style.density), style)
    dimmed = dim_cells(draw_rng, cells, extras["dim"], extras["dim_gain"])
    bins = [int(round(c.offset_um / DEPTH_BIN_UM)) for c in cells]
    layers = render_scene(rng, cells, canvas, channels, bins, style)
    debris, n_debris = render_debris(draw_rng, canvas, extras["debris"])
    if bins:  # debris settles with the cells: in their middle depth bin, dimmer in the actin channel
        home = sorted(bins)[len(bins) // 2]
        for channel in channels:
            layers[channel, home] += debris * (1.0 if channel == "w1" else 0.6)
    for layer in layers.values():
        layer *= field_optics.exposure
    drawn = {"optics": field_optics.record(), "scene": {**scene_record(style, extras), "dim_cells": dimmed,
                                                       "debris": n_debris}}
    return cells, layers, field_optics, drawn


def render_random_field(seed: int, index: int, size: tuple[int, int], planes: Sequence[int], channels: Sequence[str],
                        noise: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """``render_field`` in the random mode (module docstring): the same outputs, and the truth's ``drawn``
    holds every value the field drew. Camera noise per (plane, channel) from its own stream as in the fixed
    mode, the sCMOS read-noise map from [seed, index, 2001]."""
    width, height = size
    canvas = canvas_shape(width, height)
    cells, layers, field_optics, drawn = draw_random_field(seed, index, canvas, channels)
    haze = 0.1 * len(cells) * (696 * 520) / (canvas[0] * canvas[1]) * field_optics.exposure
    spectra = {key: sfft.rfft2(layer, workers=1) for key, layer in layers.items()}
    del layers
    otf = FieldOTF(canvas, field_optics)
    flat, ground = illumination(field_optics, height, width)
    ground = ground + np.float32(haze)
    read = read_noise_map(field_optics, np.random.default_rng([seed, index, 2001]), (height, width))
    out = render_planes(spectra, otf, (seed, index, canvas, size), planes, channels, noise,
                        lambda clean, channel, rng: random_camera((clean + ground) * flat, field_optics, read, rng))
    return out, {**field_truth(cells, index, size, {c: round(float(ground.mean()), 2) for c in channels}),
                 "drawn": drawn}


def render_planes(spectra, otf, field: tuple, planes: Sequence[int], channels: Sequence[str], noise: bool,
                  expose: Callable[[np.ndarray, str, np.random.Generator], np.ndarray]) -> dict[str, np.ndarray]:
    """{channel: [P, H, W]} of one field (``field`` = (seed, index, canvas, size)): each plane defocused from the
    layers' ``spectra`` by ``otf``, then through ``expose(clean, channel, rng)`` (background, vignetting, camera) with
    its own noise stream per (plane, channel), so a plane does not depend on which others are asked for; float32
    clean planes without ``noise``."""
    seed, index, canvas, size = field
    width, height = size
    out = {c: np.zeros((len(planes), height, width), dtype=np.uint16 if noise else np.float32) for c in channels}
    for p, plane in enumerate(planes):
        for channel in channels:
            clean = defocused_plane(spectra, otf, plane, channel, canvas, size)
            if not noise:
                out[channel][p] = clean
                continue
            noise_rng = np.random.default_rng([seed, index, 1 + plane, channel_number(channel)])
            out[channel][p] = expose(clean, channel, noise_rng)
    return out


def field_truth(cells: list, index: int, size: tuple[int, int], background_adu: dict[str, float]) -> dict:
    """What synth.json records of a field: its name, its cells (those inside the field and their depths) and the
    background per channel."""
    width, height = size
    inside = [c for c in cells if PAD <= c.y < PAD + height and PAD <= c.x < PAD + width]
    well, site = well_and_site(index)
    return {"field": f"{well}_s{site}", "cells": len(cells), "cells_in_field": len(inside),
            "offsets_um": [round(c.offset_um, 3) for c in inside], "background_adu": background_adu}


# --- files -----------------------------------------------------------------------------------------


def file_name(well: str, site: int, channel: str, rng: np.random.Generator) -> str:
    """``mcf-z-stacks-03212011_a01_s1_w1<uuid4>.tif``: NO separator before the UUID, as in BBBC006v1."""
    uid = uuid.UUID(bytes=rng.bytes(16), version=4)
    return f"{PLATE_PREFIX}_{well}_s{site}_{channel}{uid}.tif"


@dataclass(frozen=True)
class FieldTask:
    """One field to render and write under ``root`` (picklable: it crosses into pool workers)."""

    root: str
    seed: int
    index: int
    size: tuple[int, int]  # (width, height)
    planes: tuple[int, ...]
    channels: tuple[str, ...]
    optics: Optics = DEFAULT
    mode: SynthOptics = "fixed"


def write_field(task: FieldTask) -> dict:
    """Render one field and write its TIFFs into the plane folders under ``task.root``; returns its truth."""
    stacks, truth = render_field(task.seed, task.index, task.size, task.planes, task.channels, optics=task.optics,
                                 mode=task.mode)
    well, site = well_and_site(task.index)
    for p, plane in enumerate(task.planes):
        folder = Path(task.root) / plane_folder(plane)
        for channel in task.channels:
            # a UUID per (field, plane, channel) that does not depend on which planes are written
            name_rng = np.random.default_rng([task.seed, task.index, 1000 + plane, channel_number(channel)])
            tifffile.imwrite(folder / file_name(well, site, channel, name_rng), stacks[channel][p],
                             compression="lzw", metadata=None, photometric="minisblack")
    return truth


def write_fields(tasks: list[FieldTask], workers: int, progress: bool) -> list[dict]:
    """``write_field`` over ``tasks`` in order, in ``workers`` processes (``files.workers``: Ctrl-C and SIGTERM
    stop the pool, no orphans); the fields' truths in that order."""
    truths = []
    with progress_bar(f"synth {len(tasks)} fields", len(tasks), progress) as advance:
        for truth in ordered_map(write_field, tasks, workers):
            truths.append(truth)
            advance()
    return truths


def synth_record(seed: int, size: tuple[int, int], planes: list[int], channels: list[str], truths: list[dict],
                 optics: Optics = DEFAULT, mode: SynthOptics = "fixed") -> dict:
    """The contents of ``synth.json``: parameters, optics, camera and per-field ground truth (the fields'
    ``background_adu`` include ``optics.background``). Optics other than the calibrated defaults are also
    listed under ``optics.changed`` (absent for the defaults, so their record is as it always was). The random
    mode adds ``optics.mode`` and the ranges (``random_ranges``); each field's ``drawn`` holds its values."""
    record: dict[str, Any] = {
        "tool": TOOL,
        "seed": seed,
        "size": list(size),
        "planes": planes,
        "channels": channels,
        "optics": {
            "pixel_um": PIXEL_UM, "na": optics.na, "z_step_um": optics.z_step_um, "focus_plane": IN_FOCUS_PLANE,
            "psf": "disk(R=|d| tan(asin NA)/px) * gauss(sigma^2 = sigma0^2 + (beta d)^2)",
            "beta_px_per_um": round(BETA_PX_PER_UM, 4),
            "sigma_px_at_32um": round(equivalent_sigma_px(32.0, optics=optics), 3),
        },
        "camera": {"offset_adu": CAMERA_OFFSET, "gain_adu_per_e": optics.gain, "read_noise_adu": optics.read_noise,
                   "full_scale": FULL_SCALE},
        "fields": truths,
    }
    if optics.changed():
        record["optics"]["changed"] = optics.changed()
    if mode == "random":
        record["optics"] = {"mode": "random", "pixel_um": PIXEL_UM, "focus_plane": IN_FOCUS_PLANE,
                            "psf": "per field: fields[i].drawn.optics", "full_scale": RANDOM_FULL_SCALE}
        record["camera"] = {"per_field": "fields[i].drawn.optics"}
        record["random_ranges"] = {"optics": asdict(RANGES), "scene": asdict(SCENE_RANGES)}
    return record


# --- the command -----------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``696x520`` → (width, height). Raises UsageError."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"{{size}} {text!r} is not WIDTHxHEIGHT; use e.g. 696x520", "size") from None
    if width < 16 or height < 16:
        raise UsageError(f"{{size}} {text!r} is too small; use at least 16x16 (the real set is 696x520)", "size")
    return width, height


def check_synth_options(fields: int, channels: Sequence[str], planes: Sequence[int], size: Sequence[int],
                        seed: int, optics: Optics = DEFAULT,
                        mode: SynthOptics = "fixed") -> tuple[list[str], list[int]]:
    """(channels as a list, planes sorted and unique) when every option, ``optics`` and ``mode`` included, is
    valid, else UsageError (the random mode draws every field's optics: it refuses other ``optics``)."""
    channels = list(channels)
    planes = sorted({int(p) for p in planes})
    if not 1 <= fields <= N_FIELDS_MAX:
        raise UsageError(f"{{fields}} {fields}: a BBBC006 plate has 1..{N_FIELDS_MAX} fields (384 wells x 2 sites)",
                         "fields")
    bad = [c for c in channels if c not in WAVELENGTH_UM]
    if bad or not channels:
        raise UsageError(f"{{channels}} {bad[0] if bad else '(none)'!r} is not a BBBC006 channel; "
                         "use w1 (nuclei) and/or w2 (actin)", "channels")
    if not planes or planes[0] < 0 or planes[-1] >= N_PLANES:
        raise UsageError(f"{{planes}} {planes}: BBBC006 has planes 0..{N_PLANES - 1}", "planes")
    if len(size) != 2 or min(size) < 16:
        raise UsageError(f"{{size}} {tuple(size)}: give (width, height) of at least 16x16 (the real set is 696x520)",
                         "size")
    if int(seed) != seed or seed < 0:
        raise UsageError(f"{{seed}} {seed}: must be a non-negative integer, e.g. 0", "seed")
    optics.check()
    check_choice(SynthOptics, mode, "{optics_mode}")
    if mode == "random" and optics.changed():
        changed = list(optics.changed())
        raise UsageError(f"{{optics_mode}} random draws every field's optics; leave out "
                         f"{', '.join('{' + k + '}' for k in changed)} or use fixed", "optics_mode", *changed)
    return channels, planes


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
    *,
    fields: int = SynthConfig.fields,
    channels: Sequence[str] = SynthConfig.channels,
    planes: Sequence[int] = SynthConfig.planes,
    size: tuple[int, int] = SynthConfig.size,
    seed: int = SynthConfig.seed,
    force: bool = False,
    progress: bool = False,
    workers: int = SynthConfig.workers,
    optics: Optics = DEFAULT,
    optics_mode: SynthOptics = SynthConfig.optics,
) -> SynthResult:
    """Write ``fields`` synthetic fields in the BBBC006v1 layout under ``out`` (see the module docstring).

    ``size`` is (width, height); ``workers``: processes rendering fields (0 or 1: this one). Field k is the same
    image for a given seed whatever ``fields`` and ``planes`` are (so a small set is a prefix of a big one);
    ``optics`` (NA, wavelength, z step, noise, background) changes how the same cells are imaged, not which cells
    there are. ``optics_mode`` "random": every field draws its own optics and scene (training data; the module
    docstring). The folder is built in a temp sibling and renamed into place; an existing ``out`` is replaced only
    with ``force`` and only if it is an earlier synth output (its output marker says so, and nothing else is
    there). Raises UsageError for bad arguments (``optics`` out of range included) or outputs.
    """
    start = time.perf_counter()
    out = Path(out)
    channels, planes = check_synth_options(fields, channels, planes, size, seed, optics, optics_mode)
    # SIGTERM stops it like Ctrl-C: the pool ends (``files.workers``) and the temp folder is removed
    with claim_output_folder(out, COMMAND, force, "a synth output"), terminate_as_interrupt():
        tmp = make_temp_dir(out)
        try:
            for plane in planes:
                (tmp / plane_folder(plane)).mkdir()
            tasks = [FieldTask(str(tmp), seed, i, (size[0], size[1]), tuple(planes), tuple(channels), optics,
                               optics_mode) for i in range(fields)]
            truths = write_fields(tasks, max(1, min(workers, fields)), progress)
            record = synth_record(seed, size, planes, channels, truths, optics, optics_mode)
            (tmp / RECORD).write_text(json.dumps(record, indent=1))
            write_marker(tmp, COMMAND)
            replace_folder(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return SynthResult(out, fields, planes, channels, fields * len(planes) * len(channels), time.perf_counter() - start)


def written_by_synth(record: Path) -> bool:
    """True when ``record`` is a readable ``synth.json`` whose tool is synth."""
    try:
        return json.loads(record.read_text()).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False
