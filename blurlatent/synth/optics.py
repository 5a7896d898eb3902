"""The synthetic microscope: a calibrated widefield defocus PSF and a calibrated camera (used by ``synth``).

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
  Gaussian of σ ≈ 18 px (the real BBBC006 samples: tests/data/bbbc006/README.md), so the PSF's second moment at
  d = 32 µm, ``sqrt(R²/4 + σ²)``, is set to 18 px, giving β = 0.405 px/µm.

Why not a Born–Wolf (Airy defocus) PSF: at 10–35 µm of defocus (40–50 waves of defocus aberration) its
rings are sub-pixel-fine and are washed out by the aberrations the data show; the disk–Gaussian pair has
the same width law (linear in |d| far from focus, σ₀ at focus), conserves energy exactly and has a closed
form OTF, ``OTF(f) = 2 J₁(2πRf)/(2πRf) · exp(−2π²σ²f²)``, so each plane is one FFT product (no PSF
images are sampled or normalised). OTF(0) = 1, so the convolution conserves the total signal exactly;
the width grows monotonically with |d| on both sides of focus (symmetric: the set is not known to be
asymmetric enough to model).

Camera (calibrated on the 25 real w1 samples): offset 100 ADU, gain 0.39 ADU per photoelectron and read
noise 1.4 ADU (the real variance-vs-mean line: var = 1.9 + 0.39·(I − 100), measured from neighbour
differences), 12-bit (clipped at 4095). Shot noise is drawn in its normal approximation, exact to well
under 1 % here since every pixel holds ≥ 20 photoelectrons of background.

Other microscopes (``Optics``, the ``synth`` flags): NA, emission wavelength, µm between planes, read
noise, gain (photon level) and an extra background are parameters of the model above, defaulting to the
calibrated values; ``Optics()`` gives exactly the calibrated images. β stays calibrated whatever they
are: it is the sample's and plate's share of the blur, so a higher NA (a wider disk) or a larger z step
(more defocus per plane) blurs more, as they would on a real microscope.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft as sfft
from scipy.special import j1

from blurlatent.bbbc006 import IN_FOCUS_PLANE, PIXEL_SIZE_UM, PLANE_STEP_UM
from blurlatent.errors import UsageError

# --- fixed facts of the synthetic microscope ------------------------------------------------------
PIXEL_UM = PIXEL_SIZE_UM  # BBBC006's
WAVELENGTH_UM = {"w1": 0.46, "w2": 0.57}  # Hoechst 33342 and rhodamine/Alexa-phalloidin emission peaks
CALIBRATION_DISTANCE_UM = 32.0  # z00 is 16 planes x 2 µm below focus ...
CALIBRATION_SIGMA_PX = 18.0  # ... and matches the in-focus plane blurred by a Gaussian of this sigma
CAMERA_OFFSET = 100.0
FULL_SCALE = 4095  # 12 bits


@dataclass(frozen=True)
class Optics:
    """What ``synth --na/--wavelength/--z-step/--read-noise/--gain/--background`` may change; the defaults
    are the microscope calibrated on BBBC006 (module docstring), and ``Optics()`` renders it byte for byte.

    ``wavelength_um`` None: each channel's dye (``WAVELENGTH_UM``); a number: that emission for every
    channel. ``gain`` (ADU per photoelectron) sets the photon level: a higher gain means fewer photons per
    grey level, so more shot noise for the same image. ``background`` is ADU added to every plane on top of
    each field's drawn 8–18 ADU and haze (it brings its own shot noise). β, the aberration term, stays the
    calibrated one whatever the NA or wavelength: it models the sample and the plate, not the objective.
    """

    na: float = 0.45
    wavelength_um: float | None = None
    z_step_um: float = PLANE_STEP_UM
    read_noise: float = 1.4  # ADU
    gain: float = 0.39  # ADU per photoelectron
    background: float = 0.0  # ADU

    # (field, low, high, what it is): every numeric field's range, checked by ``check``
    RANGES = (
        ("na", 0.05, 0.95, "the numerical aperture of a dry objective (the calibrated 0.45)"),
        ("wavelength_um", 0.3, 1.0, "the emission wavelength in µm (the dyes': w1 0.46, w2 0.57)"),
        ("z_step_um", 0.1, 5.0, "µm between planes (BBBC006: 2)"),
        ("read_noise", 0.0, 100.0, "the camera read noise in ADU (the calibrated 1.4)"),
        ("gain", 0.01, 10.0, "ADU per photoelectron (the calibrated 0.39; higher: fewer photons, more shot noise)"),
        ("background", 0.0, 3000.0, "extra background in ADU on every plane (0: the drawn 8-18 ADU and haze)"),
    )

    def check(self) -> Optics:
        """``self`` when every value is finite and in range, else UsageError naming the field and its range."""
        for name, low, high, what in self.RANGES:
            value = getattr(self, name)
            if value is None and name == "wavelength_um":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise UsageError(f"{{{name}}} {value}: {what} must lie in [{low:g}, {high:g}]", name)
        return self

    def wavelength(self, channel: str) -> float:
        """Emission wavelength (µm) of ``channel``: ``wavelength_um`` if set, else the dye's (0.5 if unknown)."""
        return self.wavelength_um if self.wavelength_um is not None else WAVELENGTH_UM.get(channel, 0.5)

    def changed(self) -> dict:
        """The fields that differ from the calibrated defaults (what a record needs to add)."""
        return {k: v for k, v in asdict(self).items() if v != getattr(DEFAULT, k)}


DEFAULT = Optics()


def sigma0_px(channel: str, optics: Optics = DEFAULT) -> float:
    """In-focus PSF sigma (px): Airy core 0.21 λ/NA and pixel integration, in quadrature."""
    airy = 0.21 * optics.wavelength(channel) / optics.na / PIXEL_UM
    return math.sqrt(airy**2 + 1.0 / 12.0)


def disk_radius_px(distance_um: float, optics: Optics = DEFAULT) -> float:
    """Geometric defocus blur radius R(d) in px (dry objective: tan θ = tan(asin NA))."""
    return abs(distance_um) * math.tan(math.asin(optics.na)) / PIXEL_UM


# β from the calibration: R²/4 + σ₀² + (β d)² = 18² at d = 32 µm (a disk of radius R has variance R²/4 per axis)
BETA_PX_PER_UM = math.sqrt(
    CALIBRATION_SIGMA_PX**2 - disk_radius_px(CALIBRATION_DISTANCE_UM) ** 2 / 4 - sigma0_px("w1") ** 2
) / CALIBRATION_DISTANCE_UM


def gauss_sigma_px(distance_um: float, channel: str = "w1", optics: Optics = DEFAULT) -> float:
    """σ(d) of the Gaussian factor of the PSF, in px."""
    return math.sqrt(sigma0_px(channel, optics) ** 2 + (BETA_PX_PER_UM * distance_um) ** 2)


def equivalent_sigma_px(distance_um: float, channel: str = "w1", optics: Optics = DEFAULT) -> float:
    """Per-axis standard deviation of the whole PSF (disk ⊛ Gaussian): the 'Gaussian σ' it is comparable to."""
    return math.sqrt(disk_radius_px(distance_um, optics) ** 2 / 4 + gauss_sigma_px(distance_um, channel, optics) ** 2)


def plane_distance_um(plane: int, optics: Optics = DEFAULT) -> float:
    """Nominal focus position of plane z relative to the in-focus plane (µm)."""
    return optics.z_step_um * (plane - IN_FOCUS_PLANE)


class RadialOTF:
    """OTF(|f|) on the ``rfft2`` grid of an image of ``shape``, looked up in a fine 1-D table: the OTF is
    radially symmetric, so a table lookup replaces evaluating a Bessel function on every frequency of
    every (plane, depth bin)."""

    STEP = 1e-4  # cycles/px; the table error is far below the 16-bit quantisation

    def __init__(self, shape: tuple[int, int], optics: Optics = DEFAULT):
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        radius = np.sqrt(fy**2 + fx**2)
        self.index = np.rint(radius / self.STEP).astype(np.int32)
        self.table_f = np.arange(int(self.index.max()) + 1) * self.STEP
        self.optics = optics

    def table(self, distance_um: float, channel: str) -> np.ndarray:
        """float32 OTF at the table's radial frequencies ``table_f`` (cycles/px)."""
        f = self.table_f
        x = 2 * np.pi * disk_radius_px(distance_um, self.optics) * f
        jinc = np.ones_like(x)
        nz = x > 1e-8
        jinc[nz] = 2 * j1(x[nz]) / x[nz]
        sigma = gauss_sigma_px(distance_um, channel, self.optics)
        return (jinc * np.exp(-2 * np.pi**2 * sigma**2 * f**2)).astype(np.float32)

    def __call__(self, distance_um: float, channel: str) -> np.ndarray:
        """float32 [H, W // 2 + 1]: the OTF on the ``rfft2`` grid."""
        return np.take(self.table(distance_um, channel), self.index)


def defocus_psf(distance_um: float, size: int = 129, channel: str = "w1", optics: Optics = DEFAULT) -> np.ndarray:
    """The PSF at defocus ``distance_um`` as a float64 [size, size] image centred at size // 2.

    It is the exact inverse FFT of the OTF the synthesiser uses (so it sums to 1 up to float error)."""
    otf = RadialOTF((size, size), optics)(distance_um, channel).astype(np.float64)
    psf = np.fft.irfft2(otf, s=(size, size))
    return np.fft.fftshift(psf)


def defocus_blur(image: np.ndarray, distance_um: float, channel: str = "w1", optics: Optics = DEFAULT) -> np.ndarray:
    """Convolve a float image (periodic boundary) with the defocus PSF: float32, same shape, same sum."""
    spectrum = sfft.rfft2(np.asarray(image, dtype=np.float32))
    otf = RadialOTF(image.shape, optics)(distance_um, channel)
    return sfft.irfft2(spectrum * otf, s=image.shape).astype(np.float32)


def camera(signal: np.ndarray, rng: np.random.Generator, optics: Optics = DEFAULT) -> np.ndarray:
    """Expected signal (ADU above the offset, float [H, W]) → a uint16 camera frame: shot noise (variance
    gain·signal, normal approximation), read noise, offset, rounding and 12-bit clipping."""
    signal = np.clip(np.asarray(signal, dtype=np.float32), 0, None)
    # shot and read noise are independent Gaussians here: one draw with the summed variance
    sigma = np.sqrt(signal * optics.gain + optics.read_noise**2)
    counts = signal + CAMERA_OFFSET + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    return np.clip(np.rint(counts, out=counts), 0, FULL_SCALE).astype(np.uint16)
