"""Through-focus stacks made from real in-focus fields, with PSF models that blurlatent's ``synth`` does not use.

Layout: planes 0, 2, …, 16 (BBBC006's, ``bbbc006.PAPER_PLANES``; 16 in focus). Plane p's focus lies at
(p − 16)·Δ µm with Δ = D/16, D the family's defocus of the blurriest plane (its ``grid``: D in µm and the
geometric blur radius of plane 0, D·tan(asin NA)/0.645 µm px, 5–25 px for every family, checked by ``check_grid``).

Families (``FAMILIES``; NA, wavelength and aberration drawn per field from the family's ranges):

* ``vectorial`` (train, val): psfmodels' vectorial model (Aguet et al. 2009) of a dry objective imaging an
  aqueous sample through a plate bottom; spherical aberration from the source depth (pz 2–10 µm, sample index
  1.33–1.38 vs air) and a bottom thicker than the design 170 µm (170–450 µm). NA 0.40–0.50, D 24 µm.
* ``gibson-lanni`` (train, val): psfmodels' scalar Gibson–Lanni model, the same aberrations, NA 0.40–0.50, D 20 µm.
* ``born-wolf`` (test only, HELD OUT): the scalar model without aberrations (source at the cover glass,
  design = actual: pure defocus, Born & Wolf's), NA 0.55–0.65, a range no train/val family uses, D 16 µm.
* ``synth`` (every split, a reference): blurlatent's own optics (``synth.optics``: disk ⊛ Gaussian with the
  calibrated aberration term), NA 0.42–0.48, D 28.8 µm — what the shipped models were trained on.

Depth: each nucleus (its mask label grown by ``DILATE_PX``) sits at its own height, uniform in ±``depth_spread_um``,
quantized to ``LAYERS`` layers (the pixels outside nuclei at height 0); every layer is blurred with the PSF of
its own defocus and the layers are summed. PSFs are normalized to sum 1, so the light is conserved. The object is
the field minus its background (``intensity.background``), in the field's counts (ADU).

Camera: shot noise (Poisson, ``gain`` ADU per photoelectron), Gaussian read noise, an offset, a background with
a linear ramp, 16-bit digitization; ``scmos`` (offset 100, read 1–2 ADU, gain 0.3–0.6) or ``ccd`` (offset 200,
read 4–8 ADU, gain 0.8–1.6). Everything is deterministic per (field, family, seed); stacks are cached as .npz.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psfmodels
import scipy.fft as sfft
from skimage.segmentation import expand_labels

from blurlatent.bbbc006 import IN_FOCUS_PLANE, PAPER_PLANES
from blurlatent.evaluation.baselines import psf_otf
from blurlatent.files.atomic import atomic_write_bytes
from blurlatent.intensity import background
from blurlatent.synth.optics import Optics, defocus_psf, gauss_sigma_px

PLANES = PAPER_PLANES
LAYERS = 5  # heights per field: -spread … +spread; the middle one (0) also holds everything outside nuclei
DILATE_PX = 3  # a nucleus's label grown by this much carries its halo to its height
PIXEL_UM = 0.645
GRID_RADIUS_PX = (5.0, 25.0)  # the geometric blur radius of plane 0 must lie in this range for every family
PLATE = dict(ni=1.0, ni0=1.0, ng=1.52, ng0=1.52, tg0=170.0, ti0=2000.0)  # dry objective, glass plate bottom
FULL_SCALE = 65535
VERSION = 2  # bump when the degradation changes: cached stacks of other versions are not reused


@dataclass(frozen=True)
class Family:
    """One optics family: the PSF ``model`` ("vectorial"/"scalar": psfmodels; "synth": blurlatent's optics), the
    splits it is used on, D (``defocus_um``) and the ranges the per-field values are drawn from."""

    name: str
    model: str
    splits: tuple[str, ...]
    defocus_um: float
    na: tuple[float, float]
    wavelength_um: tuple[float, float]
    depth_spread_um: float = 2.0
    source_depth_um: tuple[float, float] = (0.0, 0.0)  # pz: the source below the plate bottom
    bottom_um: tuple[float, float] = (170.0, 170.0)  # tg: the plate bottom's thickness (design 170 µm)
    sample_index: tuple[float, float] = (1.33, 1.33)
    cameras: tuple[str, ...] = ("scmos", "ccd")

    def grid(self) -> dict:
        """D (µm), the plane step Δ (µm) and the geometric blur radius of plane 0 (px) at the NA range's ends."""
        radius = [self.defocus_um * math.tan(math.asin(na)) / PIXEL_UM for na in self.na]
        return {"defocus_um": self.defocus_um, "step_um": self.defocus_um / (IN_FOCUS_PLANE - PLANES[0]),
                "blur_radius_px": [round(r, 2) for r in radius]}


ABERRATED = dict(source_depth_um=(2.0, 10.0), bottom_um=(170.0, 450.0), sample_index=(1.33, 1.38))
FAMILIES = {f.name: f for f in (
    Family("vectorial", "vectorial", ("train", "val"), 24.0, (0.40, 0.50), (0.44, 0.52), **ABERRATED),
    Family("gibson-lanni", "scalar", ("train", "val"), 20.0, (0.40, 0.50), (0.46, 0.56), **ABERRATED),
    Family("born-wolf", "scalar", ("test",), 16.0, (0.55, 0.65), (0.45, 0.55), depth_spread_um=2.5),
    Family("synth", "synth", ("train", "val", "test"), 28.8, (0.42, 0.48), (0.44, 0.48)),
)}
CAMERAS = {"scmos": dict(offset=100.0, read_noise=(1.0, 2.0), gain=(0.3, 0.6)),
           "ccd": dict(offset=200.0, read_noise=(4.0, 8.0), gain=(0.8, 1.6))}
BACKGROUND_ADU = (5.0, 60.0)
RAMP = 0.3  # the background changes by up to ±15 % across the field


def check_grid() -> dict:
    """{family: grid} after checking that every family's plane-0 blur radius lies in ``GRID_RADIUS_PX`` and that
    no train/val family reaches the NA range of a test-only family (AssertionError naming the family)."""
    grids = {name: f.grid() for name, f in FAMILIES.items()}
    for name, grid in grids.items():
        lo, hi = GRID_RADIUS_PX
        assert all(lo <= r <= hi for r in grid["blur_radius_px"]), (name, grid)
    held_out = [f for f in FAMILIES.values() if f.splits == ("test",)]
    for f in FAMILIES.values():
        for h in held_out:
            if f is not h and set(f.splits) & {"train", "val"}:
                assert f.na[1] < h.na[0] or f.na[0] > h.na[1], (f.name, h.name)
    return grids


@dataclass
class Degraded:
    """A field's through-focus stack: ``stack`` uint16 [9, H, W] (``PLANES``), ``true_psfs`` float32 [9, n, n]
    (per plane, the layer PSFs weighted by the light in each layer), ``floor`` float32 [H, W] (camera offset +
    background: the additive part) and the drawn ``params`` (plain data)."""

    stack: np.ndarray
    true_psfs: np.ndarray
    floor: np.ndarray
    params: dict

    def plane(self, p: int) -> np.ndarray:
        return self.stack[PLANES.index(p)]


def field_rng(seed: int, family: str, stem: str) -> np.random.Generator:
    """The generator of one (field, family, seed), the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}/{family}/{stem}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def draw_params(family: Family, rng: np.random.Generator) -> dict:
    """One field's optics and camera, drawn from the family's ranges."""
    camera = family.cameras[int(rng.integers(len(family.cameras)))]
    cam = CAMERAS[camera]
    return {"na": float(rng.uniform(*family.na)), "wavelength_um": float(rng.uniform(*family.wavelength_um)),
            "source_depth_um": float(rng.uniform(*family.source_depth_um)),
            "bottom_um": float(rng.uniform(*family.bottom_um)),
            "sample_index": float(rng.uniform(*family.sample_index)), "camera": camera,
            "camera_offset": cam["offset"], "read_noise": float(rng.uniform(*cam["read_noise"])),
            "gain": float(rng.uniform(*cam["gain"])), "background": float(rng.uniform(*BACKGROUND_ADU)),
            "ramp": float(rng.uniform(-RAMP, RAMP)), "ramp_angle": float(rng.uniform(0, 2 * np.pi))}


def psf_size(family: Family, params: dict) -> int:
    """An odd kernel size that holds the widest PSF the field needs (with its diffraction/aberration tails)."""
    deepest = family.defocus_um + family.depth_spread_um
    radius = deepest * math.tan(math.asin(params["na"])) / PIXEL_UM
    if family.model == "synth":
        return 2 * math.ceil(radius + 4 * gauss_sigma_px(deepest)) + 1
    return 2 * math.ceil(1.5 * radius + 10) + 1


def psfmodels_call(family: Family, params: dict):
    """(function, keyword arguments) of the psfmodels call for this field: ``zv`` still to be given."""
    fn = psfmodels.vectorial_psf if family.model == "vectorial" else psfmodels.scalar_psf
    micro = dict(PLATE, NA=params["na"], ns=params["sample_index"], tg=params["bottom_um"])
    return fn, dict(dxy=PIXEL_UM, pz=params["source_depth_um"], wvl=params["wavelength_um"], params=micro,
                    normalize=False)


def best_focus(family: Family, params: dict) -> float:
    """The stage position (psfmodels' ``zv``, µm) of the sharpest image of the source: the largest peak."""
    fn, kwargs = psfmodels_call(family, params)
    pz = params["source_depth_um"]
    best = pz
    for half, n in ((15.0, 61), (0.6, 25)):
        zv = best + np.linspace(-half, half, n)
        psf = fn(zv, nx=15, **kwargs)
        best = float(zv[np.argmax(psf[:, 7, 7] / psf.sum(axis=(1, 2)))])
    return best


def psf_stack(family: Family, params: dict, defocus_um: np.ndarray, size: int) -> np.ndarray:
    """float64 [len(defocus_um), size, size]: the PSF at each defocus (µm from best focus), each summing to 1."""
    if family.model == "synth":
        optics = Optics(na=params["na"], wavelength_um=params["wavelength_um"])
        psfs = np.stack([defocus_psf(float(d), size, "w1", optics) for d in defocus_um])
    else:
        fn, kwargs = psfmodels_call(family, params)
        psfs = fn(best_focus(family, params) + np.asarray(defocus_um, np.float64), nx=size, **kwargs)
    psfs = np.clip(psfs, 0.0, None)
    return psfs / psfs.sum(axis=(1, 2), keepdims=True)


def depth_layers(labels: np.ndarray, offsets_um: np.ndarray, spread_um: float) -> tuple[np.ndarray, np.ndarray]:
    """(layer index int8 [H, W], layer heights [LAYERS] µm): each grown nucleus at the layer nearest its height."""
    centers = np.linspace(-spread_um, spread_um, LAYERS)
    nearest = np.abs(offsets_um[:, None] - centers[None, :]).argmin(axis=1)
    lookup = np.concatenate([[LAYERS // 2], nearest]).astype(np.int8)
    return lookup[expand_labels(labels, DILATE_PX)], centers


def render(obj: np.ndarray, layer_of: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """float64 [P, H, W]: Σ_layers psfs[p, l] ⊛ (obj on layer l), reflect-padded FFT convolution.

    ``psfs``: [P, LAYERS, n, n]. Each layer's spectrum is taken once and each (plane, layer) kernel's once."""
    h, w = obj.shape
    r = psfs.shape[-1] // 2
    shape = (sfft.next_fast_len(h + 2 * r, real=True), sfft.next_fast_len(w + 2 * r, real=True))
    spectra = [sfft.rfft2(np.pad(np.where(layer_of == j, obj, 0.0), r, mode="reflect"), s=shape)
               for j in range(psfs.shape[1])]
    planes = []
    for per_layer in psfs:
        total = sum(spec * psf_otf(k, shape) for spec, k in zip(spectra, per_layer, strict=True))
        planes.append(sfft.irfft2(total, s=shape)[r:r + h, r:r + w])
    return np.stack(planes)


def camera_frames(signal: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint16 frames [P, H, W], floor float32 [H, W]): background with its ramp, Poisson shot noise, read noise,
    offset and 16-bit rounding of the expected signal [P, H, W] (ADU)."""
    h, w = signal.shape[-2:]
    y, x = np.mgrid[0:h, 0:w]
    along = (x / max(w - 1, 1) - 0.5) * math.cos(params["ramp_angle"]) + (y / max(h - 1, 1) - 0.5) * math.sin(
        params["ramp_angle"])
    bg = params["background"] * (1.0 + params["ramp"] * 2.0 * along)
    electrons = rng.poisson(np.clip(signal + bg, 0.0, None) / params["gain"])
    counts = electrons * params["gain"] + params["read_noise"] * rng.standard_normal(signal.shape)
    frames = np.clip(np.rint(counts + params["camera_offset"]), 0, FULL_SCALE).astype(np.uint16)
    return frames, (bg + params["camera_offset"]).astype(np.float32)


def make_stack(image: np.ndarray, labels: np.ndarray, family: Family, seed: int, stem: str) -> Degraded:
    """The through-focus stack of one field under one family (module docstring), not cached."""
    rng = field_rng(seed, family.name, stem)
    params = draw_params(family, rng)
    offsets = rng.uniform(-family.depth_spread_um, family.depth_spread_um, int(labels.max()))
    layer_of, centers = depth_layers(labels, offsets, family.depth_spread_um)
    obj = np.clip(image - background(image), 0.0, None)
    step = family.grid()["step_um"]
    focus = np.array([(p - IN_FOCUS_PLANE) * step for p in PLANES])
    defocus = focus[:, None] - centers[None, :]  # [P, LAYERS]: a nucleus above focus is reached later
    size = psf_size(family, params)
    psfs = psf_stack(family, params, defocus.ravel(), size).reshape(len(PLANES), LAYERS, size, size)
    light = np.array([obj[layer_of == j].sum() for j in range(LAYERS)])
    weights = light / light.sum() if light.sum() > 0 else np.eye(LAYERS)[LAYERS // 2]
    true_psfs = np.einsum("l,plij->pij", weights, psfs).astype(np.float32)
    frames, floor = camera_frames(render(obj, layer_of, psfs), params, rng)
    params.update(layer_heights_um=centers.round(3).tolist(), layer_light=weights.round(4).tolist(),
                  psf_size=size, plane0_r80_px=round(energy_radius(true_psfs[0]), 2),
                  **{f"grid_{k}": v for k, v in family.grid().items()})
    return Degraded(frames, true_psfs, floor, params)


def energy_radius(psf: np.ndarray, fraction: float = 0.8) -> float:
    """The radius (px) of the centred disk holding ``fraction`` of the PSF's light: its measured blur radius."""
    n = psf.shape[-1]
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    radius = np.hypot(yy, xx).ravel()
    order = np.argsort(radius, kind="stable")
    inside = np.cumsum(psf.ravel()[order]) / psf.sum()
    return float(radius[order][min(np.searchsorted(inside, fraction), radius.size - 1)])


def cache_key(image: np.ndarray, labels: np.ndarray, family: Family, seed: int) -> str:
    recipe = json.dumps({"version": VERSION, "family": asdict(family), "seed": seed, "planes": list(PLANES),
                         "layers": LAYERS, "dilate": DILATE_PX, "cameras": CAMERAS, "bg": BACKGROUND_ADU,
                         "ramp": RAMP, "psfmodels": psfmodels.__version__}, sort_keys=True)
    digest = hashlib.sha256(recipe.encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()[:12]


def degrade(image: np.ndarray, labels: np.ndarray, family: Family, seed: int, stem: str,
            cache: Path | None = None) -> tuple[Degraded, bool]:
    """(``make_stack``'s result, whether it came from ``cache``): read from ``cache/<family>/<stem>-s<seed>-<key>.npz``
    when there, else made and written there (atomically). The key covers the recipe, the pixels and the labels."""
    path = None
    if cache is not None:
        path = Path(cache) / family.name / f"{stem}-s{seed}-{cache_key(image, labels, family, seed)}.npz"
        if path.is_file():
            with np.load(path) as npz:
                return Degraded(npz["stack"], npz["true_psfs"], npz["floor"], json.loads(str(npz["params"]))), True
    made = make_stack(image, labels, family, seed, stem)
    if path is not None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, stack=made.stack, true_psfs=made.true_psfs, floor=made.floor,
                            params=np.array(json.dumps(made.params)))
        atomic_write_bytes(path, buffer.getvalue())
    return made, False
