"""Randomized microscopes for training (``synth --optics random``): every field through its own optics and camera.

Each field draws, from its own seed-derived generator and from the ranges in ``RANGES`` (one place, documented
in docs/tutorials/synth.md), a PSF family, NA, µm per plane, emission wavelength per channel, an aberration
term, a camera (sCMOS- or CCD-like Poisson–Gaussian noise, gain, offset), the exposure, and a background with
a gradient and vignetting. The drawn values are plain data (``FieldOptics.record``) written to ``synth.json``.

PSF families (all numpy; each PSF sums to 1, i.e. OTF(0) = 1, so defocus spreads the light and conserves it):

* ``disk-gauss``: the calibrated model of ``optics`` (geometric defocus disk ⊛ Gaussian), with this field's
  NA, wavelength and aberration.
* ``gauss``: a Gaussian of the same second moment (R²/4 + σ²): no disk edge at all.
* ``pupil``: scalar defocus of a circular pupil with Zernike spherical aberration (``spherical_waves``,
  never zero), |FFT(pupil)|² on a 3x finer grid, integrated over pixels; then the aberration Gaussian.

The aberration term: σ_ab(d) = β · ``beta_scale`` · (1 + ``asymmetry`` · sign d) · |d| (β the calibrated
0.405 px/µm): spherical-like broadening that may differ above and below focus (blur asymmetric with depth).

HELD OUT: the real-content benchmark's test split (``benchmarks/real/degrade.py``) uses a Born–Wolf family (the
scalar model without aberrations) at NA 0.55–0.65. The randomized optics must never draw from it, so that the
benchmark stays a test of optics the model never saw: no family here is Born–Wolf (the pupil family always
carries spherical aberration and the aberration Gaussian) and the NA range stays below ``HELD_OUT_NA``
(``OpticsRanges.check`` refuses ranges that reach it; tests/synth/test_random.py checks both).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy.special import j1

from blurlatent.synth.optics import BETA_PX_PER_UM, PIXEL_UM, Optics

Range = tuple[float, float]
PSF_FAMILIES = ("disk-gauss", "gauss", "pupil")
CAMERAS = ("scmos", "ccd")
HELD_OUT_NA: Range = (0.55, 0.65)  # the benchmark's held-out Born–Wolf NA range: never drawn
HELD_OUT_FAMILIES = ("born-wolf",)  # the benchmark's held-out family: never a family here
RANDOM_FULL_SCALE = 65535  # 16-bit camera: bright mitotic nuclei at a high exposure stay unclipped
OVERSAMPLE = 3  # pupil PSF grid per pixel (odd: the PSF centre stays a pixel centre after binning)


@dataclass(frozen=True)
class OpticsRanges:
    """The ranges every field's optics and camera are drawn from (uniform in each; log-uniform for gain)."""

    na: Range = (0.30, 0.50)  # below the held-out 0.55–0.65
    z_step_um: Range = (1.0, 2.5)  # µm per plane (BBBC006: 2)
    wavelength_um: dict[str, Range] = field(default_factory=lambda: {"w1": (0.43, 0.50), "w2": (0.52, 0.62)})
    beta_scale: Range = (0.5, 1.5)  # x the calibrated aberration β
    asymmetry: Range = (-0.3, 0.3)  # aberration above vs below focus
    spherical_waves: Range = (0.2, 0.6)  # |Zernike spherical| of the pupil family, random sign
    read_noise: dict[str, Range] = field(default_factory=lambda: {"scmos": (1.0, 2.5), "ccd": (3.0, 10.0)})
    gain: dict[str, Range] = field(default_factory=lambda: {"scmos": (0.25, 0.8), "ccd": (0.6, 2.0)})
    offset: Range = (80.0, 250.0)  # ADU
    exposure: Range = (0.4, 1.6)  # x the scene's signal
    background: Range = (5.0, 150.0)  # ADU above the offset, before the haze of many cells
    gradient: Range = (0.0, 0.3)  # the background changes by this fraction across the field
    vignetting: Range = (0.0, 0.3)  # illumination lost at the corners

    def check(self) -> OpticsRanges:
        """``self`` when no NA can reach ``HELD_OUT_NA``, else ValueError (the benchmark's held-out rule)."""
        if not (self.na[1] < HELD_OUT_NA[0] or self.na[0] > HELD_OUT_NA[1]):
            raise ValueError(f"NA range {self.na} reaches the benchmark's held-out {HELD_OUT_NA}")
        return self


RANGES = OpticsRanges().check()


@dataclass(frozen=True)
class FieldOptics:
    """One field's drawn microscope (``draw``); ``record()`` is its plain-data record."""

    psf: str
    na: float
    z_step_um: float
    wavelength_um: dict[str, float]
    beta_scale: float
    asymmetry: float
    spherical_waves: float
    camera: str
    read_noise: float
    gain: float
    offset: float
    exposure: float
    background: float
    gradient: float
    gradient_angle: float
    vignetting: float

    def record(self) -> dict:
        """The drawn values, rounded, as plain data (``spherical_waves`` only for the pupil family)."""
        out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        out["wavelength_um"] = {c: round(v, 4) for c, v in self.wavelength_um.items()}
        if self.psf != "pupil":
            out["spherical_waves"] = None
        return out

    def optics(self) -> Optics:
        """The fixed-model parameters this field shares (NA, z step; ``defocused_plane`` reads the z step)."""
        return Optics(na=self.na, z_step_um=self.z_step_um)


def draw(rng: np.random.Generator, ranges: OpticsRanges = RANGES) -> FieldOptics:
    """One field's optics and camera from ``ranges``, in a fixed order of draws."""
    psf = PSF_FAMILIES[int(rng.integers(len(PSF_FAMILIES)))]
    camera = CAMERAS[int(rng.integers(len(CAMERAS)))]
    u = lambda r: float(rng.uniform(*r))
    return FieldOptics(
        psf=psf, na=u(ranges.na), z_step_um=u(ranges.z_step_um),
        wavelength_um={c: u(r) for c, r in sorted(ranges.wavelength_um.items())},
        beta_scale=u(ranges.beta_scale), asymmetry=u(ranges.asymmetry),
        spherical_waves=u(ranges.spherical_waves) * (1 if rng.random() < 0.5 else -1),
        camera=camera, read_noise=u(ranges.read_noise[camera]),
        gain=float(math.exp(rng.uniform(*np.log(ranges.gain[camera])))), offset=u(ranges.offset),
        exposure=u(ranges.exposure), background=u(ranges.background), gradient=u(ranges.gradient),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)), vignetting=u(ranges.vignetting),
    )


# --- PSFs ------------------------------------------------------------------------------------------


def aberration_sigma_px(fo: FieldOptics, distance_um: float) -> float:
    """σ_ab(d) in px: the aberration Gaussian (module docstring)."""
    return BETA_PX_PER_UM * fo.beta_scale * (1 + fo.asymmetry * float(np.sign(distance_um))) * abs(distance_um)


def core_sigma_px(fo: FieldOptics, channel: str) -> float:
    """In-focus Airy core (Gaussian approximation 0.21 λ/NA) and pixel integration, in quadrature (px)."""
    return math.hypot(0.21 * fo.wavelength_um[channel] / fo.na / PIXEL_UM, math.sqrt(1 / 12))


def disk_radius(fo: FieldOptics, distance_um: float) -> float:
    """Geometric defocus radius |d| tan(asin NA) in px."""
    return abs(distance_um) * math.tan(math.asin(fo.na)) / PIXEL_UM


def pupil_psf(fo: FieldOptics, distance_um: float, channel: str, size: int) -> np.ndarray:
    """float64 [size, size] (size odd) scalar defocus PSF of a circular pupil with Zernike spherical aberration,
    centred at size // 2, integrated over pixels, summing to 1 (no aberration Gaussian yet)."""
    lam = fo.wavelength_um[channel]
    m = OVERSAMPLE * size
    f = np.fft.fftfreq(m, d=PIXEL_UM / OVERSAMPLE)  # cycles/µm
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    cutoff = fo.na / lam
    inside = f2 <= cutoff**2
    rho2 = f2 / cutoff**2
    # defocus of a dry objective (exact, not paraxial) and spherical aberration Z(4,0) = 6ρ⁴ − 6ρ² + 1, less its
    # least-squares share of that defocus: the smallest wavefront error, and so the sharpest image, stays at d = 0
    defocus = np.sqrt(np.clip(1 / lam**2 - f2, 0, None)) - 1 / lam  # waves per µm
    spherical = 6 * rho2**2 - 6 * rho2 + 1
    d0, s0 = defocus[inside] - defocus[inside].mean(), spherical[inside] - spherical[inside].mean()
    spherical = spherical - defocus * (s0 @ d0) / (d0 @ d0)
    waves = distance_um * defocus + fo.spherical_waves * spherical
    amplitude = np.fft.ifft2(np.where(inside, np.exp(2j * np.pi * waves), 0))
    fine = np.roll(np.abs(amplitude) ** 2, (OVERSAMPLE // 2, OVERSAMPLE // 2), axis=(0, 1))
    psf = fine.reshape(size, OVERSAMPLE, size, OVERSAMPLE).sum(axis=(1, 3))  # centre at [0, 0]
    psf = np.fft.fftshift(psf)
    return psf / psf.sum()


class FieldOTF:
    """OTF(distance, channel) of one field's PSF on the ``rfft2`` grid of a canvas of ``shape`` (cached per
    distance and channel): a drop-in for ``optics.RadialOTF`` in ``generator.defocused_plane``."""

    def __init__(self, shape: tuple[int, int], fo: FieldOptics):
        self.shape = shape
        self.fo = fo
        self.optics = fo.optics()
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        self.f = np.sqrt(fy**2 + fx**2)  # cycles/px
        self.cache: dict[tuple[float, str], np.ndarray] = {}

    def __call__(self, distance_um: float, channel: str) -> np.ndarray:
        key = (round(distance_um, 6), channel)
        if key not in self.cache:
            self.cache[key] = self.compute(distance_um, channel)
        return self.cache[key]

    def compute(self, distance_um: float, channel: str) -> np.ndarray:
        """[H, W // 2 + 1] OTF (float32, complex64 for the pupil family), 1 at f = 0."""
        fo, f = self.fo, self.f
        sigma_ab = aberration_sigma_px(fo, distance_um)
        radius = disk_radius(fo, distance_um)
        if fo.psf == "gauss":
            var = radius**2 / 4 + core_sigma_px(fo, channel) ** 2 + sigma_ab**2
            return np.exp(-2 * np.pi**2 * var * f**2).astype(np.float32)
        if fo.psf == "disk-gauss":
            x = 2 * np.pi * radius * f
            jinc = np.ones_like(x)
            nz = x > 1e-8
            jinc[nz] = 2 * j1(x[nz]) / x[nz]
            var = core_sigma_px(fo, channel) ** 2 + sigma_ab**2
            return (jinc * np.exp(-2 * np.pi**2 * var * f**2)).astype(np.float32)
        # pupil: a PSF image big enough for the disk and the rings around it, wrapped onto the canvas
        size = min(2 * int(1.3 * radius + 12) + 1, 2 * (min(self.shape) // 2) - 1)
        psf = pupil_psf(fo, distance_um, channel, size)
        canvas = np.zeros(self.shape)
        canvas[:size, :size] = psf
        canvas = np.roll(canvas, (-(size // 2), -(size // 2)), axis=(0, 1))
        otf = sfft.rfft2(canvas, workers=1) * np.exp(-2 * np.pi**2 * sigma_ab**2 * f**2)
        return otf.astype(np.complex64)


# --- the camera ------------------------------------------------------------------------------------


def illumination(fo: FieldOptics, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat float32 [H, W]: vignetting, 1 at the centre and 1 − ``vignetting`` at the corners; background
    float32 [H, W] in ADU: ``background`` with a linear gradient of ``gradient`` across the field)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v, u = yy / max(height - 1, 1) - 0.5, xx / max(width - 1, 1) - 0.5
    flat = 1 - fo.vignetting * (u**2 + v**2) / 0.5
    along = u * math.cos(fo.gradient_angle) + v * math.sin(fo.gradient_angle)
    return flat, fo.background * (1 + fo.gradient * along / 0.71)  # |along| ≤ 0.71 at the corners


def read_noise_map(fo: FieldOptics, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 [H, W] read noise per pixel (ADU): sCMOS pixels each have their own (log-normal around the drawn
    value); a CCD reads every pixel through one amplifier."""
    if fo.camera == "scmos":
        return (fo.read_noise * rng.lognormal(0.0, 0.35, shape)).astype(np.float32)
    return np.full(shape, fo.read_noise, np.float32)


def random_camera(signal: np.ndarray, fo: FieldOptics, read: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Expected signal (ADU above the offset, background included, float [H, W]) → uint16 frame: Poisson shot
    noise of ``signal / gain`` photoelectrons, Gaussian read noise ``read`` [H, W], offset, rounding, 16 bits."""
    electrons = rng.poisson(np.clip(signal, 0, None) / fo.gain).astype(np.float32)
    counts = electrons * fo.gain + fo.offset + read * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.clip(np.rint(counts), 0, RANDOM_FULL_SCALE).astype(np.uint16)
