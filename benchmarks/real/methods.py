"""The methods compared on each field and pair (0, k) → 16, and the classical fits they need.

Deblurring (every output in counts, the input's scale, so that ``scores.intensity_error`` compares light):

* ``identity``: the less-blurry input z_k itself;
* ``rl`` / ``wiener``: Richardson–Lucy / Wiener (``baselines.deconvolve``) of z_k with a Gaussian PSF whose σ
  (and a gain/offset) was fitted per plane on the family's TRAIN fields, iterations and balance chosen there;
* ``two-plane``: ``baselines.two_plane_wiener`` (``multiframe_wiener`` of z_0 and z_k with those two fitted
  Gaussians: the filter of ``evaluate``'s ``wiener2`` column, here with a white prior, ``TWO_PLANE_PRIOR``), λ
  per k chosen on the train fields (least MSE, on this benchmark's own λ grid): the classical counterpart of Eq. 3;
* ``oracle``: the same filter given each field's TRUE PSFs (per plane, its depth layers' PSFs weighted by their
  light) and its true additive floor, λ per k chosen on the train fields: what a known, shift-invariant PSF allows;
* the learned models, through ``Predictor.deblur`` at α = (16 − k)/16 with ``intensity='conserve'``;
* ``care``: predictions read from files (``care_prediction``), when a folder is given.

Classical methods work on ``signal_unit`` images, (counts − background)/4095, and are brought back by × 4095.
Blur synthesis: the models' Eq. 2 between z16 and z0 at plane k's α, and ``gaussian``, z16 blurred by the σ
fitted (train) from z16 to plane k.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import IN_FOCUS_PLANE
from blurlatent.evaluation.baselines import (
    BlurFit,
    deconvolve,
    fit_blur,
    fit_deconvolution,
    multiframe_wiener,
    two_plane_wiener,
)
from blurlatent.inference.predictor import Predictor, load_model
from blurlatent.intensity import background
from blurlatent.nets.latent import alpha_from_planes

FULL = 4095.0  # the source fields' 12-bit full scale: classical methods work on (counts − background) / FULL
TWO_PLANE_BALANCES = tuple(float(b) for b in np.logspace(-6, 0, 13))  # λ for the white prior, 10^0.5 apart
# The published runs used a white prior; evaluate's wiener2 uses the Laplacian (single-plane Wiener's). Switch
# only with a full rerun (a 2-field smoke moved two-plane by −0.3 dB at k = 2 and +0.2 dB at k = 8).
TWO_PLANE_PRIOR = "white"
CLASSICAL = ("identity", "rl", "wiener", "two-plane", "oracle")
BLURRIEST = 0


def signal_unit(image: np.ndarray) -> np.ndarray:
    """float64: (image − background(image)) / FULL, the classical methods' working scale."""
    image = np.asarray(image, np.float64)
    return (image - background(image)) / FULL


@dataclass
class FamilyFit:
    """What the classical methods learn on one family's train fields: per plane a ``BlurFit`` from the truth
    (``deconv``; σ, gain, offset, RL iterations, Wiener balance), per k a ``BlurFit`` from z16 (``synth``, blur
    synthesis), and per k the two-plane and oracle λ."""

    family: str
    fields: list[str]
    deconv: dict[int, BlurFit] = field(default_factory=dict)
    synth: dict[int, BlurFit] = field(default_factory=dict)
    two_plane: dict[int, float] = field(default_factory=dict)
    oracle: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"family": self.family, "fields": self.fields,
                "deconv": {str(p): asdict(f) for p, f in self.deconv.items()},
                "synth": {str(k): asdict(f) for k, f in self.synth.items()},
                "two_plane": {str(k): v for k, v in self.two_plane.items()},
                "oracle": {str(k): v for k, v in self.oracle.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> FamilyFit:
        return cls(data["family"], list(data["fields"]),
                   {int(p): BlurFit(**f) for p, f in data["deconv"].items()},
                   {int(k): BlurFit(**f) for k, f in data["synth"].items()},
                   {int(k): float(v) for k, v in data["two_plane"].items()},
                   {int(k): float(v) for k, v in data["oracle"].items()})


@dataclass
class FitSample:
    """One train field (cropped) as the fits see it: ``truth`` [h, w] counts and its degraded stack's planes
    {plane: counts [h, w]}, true PSFs {plane: [n, n]} and floor [h, w]."""

    truth: np.ndarray
    planes: dict[int, np.ndarray]
    psfs: dict[int, np.ndarray]
    floor: np.ndarray


def two_plane(z0: np.ndarray, zk: np.ndarray, fit0: BlurFit, fitk: BlurFit, balance: float) -> np.ndarray:
    """float64 unit image: ``two_plane_wiener`` of the two planes on the classical methods' working scale."""
    return two_plane_wiener(signal_unit(z0), signal_unit(zk), fit0, fitk, balance, prior=TWO_PLANE_PRIOR)


def oracle(z0, zk, floor, psf0, psfk, balance: float) -> np.ndarray:
    """float64 unit image: ``multiframe_wiener`` given the true PSFs and the true additive floor (same prior)."""
    views = [(np.asarray(z, np.float64) - floor) / FULL for z in (z0, zk)]
    return np.clip(multiframe_wiener(views, [psf0, psfk], balance, prior=TWO_PLANE_PRIOR), 0.0, 1.0)


def best_balance(run, truths: list[np.ndarray]) -> float:
    """The λ of ``TWO_PLANE_BALANCES`` with the least mean squared error of ``run(i, λ)`` to ``truths[i]``."""
    def mse(lam):
        return float(np.mean([np.mean((run(i, lam) - t) ** 2) for i, t in enumerate(truths)]))

    return min(TWO_PLANE_BALANCES, key=mse)


def fit_family(name: str, samples: list[FitSample], stems: list[str], ks: list[int]) -> FamilyFit:
    """``FamilyFit`` of one family from its train samples (each plane's σ by least squares of the blurred truth
    against the plane, RL/Wiener parameters and the λs by the MSE to the truth)."""
    fit = FamilyFit(name, stems)
    truth = np.stack([signal_unit(s.truth) for s in samples])
    unit = {p: np.stack([signal_unit(s.planes[p]) for s in samples]) for p in (BLURRIEST, *ks, IN_FOCUS_PLANE)}
    for p in (BLURRIEST, *ks):
        fit.deconv[p] = fit_deconvolution(fit_blur(truth, unit[p], plane=p), unit[p], truth)
    for k in ks:
        fit.synth[k] = fit_blur(unit[IN_FOCUS_PLANE], unit[k], plane=k)
        fit.two_plane[k] = best_balance(
            lambda i, lam, k=k: two_plane(samples[i].planes[BLURRIEST], samples[i].planes[k], fit.deconv[BLURRIEST],
                                          fit.deconv[k], lam), list(truth))
        fit.oracle[k] = best_balance(
            lambda i, lam, k=k: oracle(samples[i].planes[BLURRIEST], samples[i].planes[k], samples[i].floor,
                                       samples[i].psfs[BLURRIEST], samples[i].psfs[k], lam), list(truth))
    return fit


def classical_outputs(planes: dict[int, np.ndarray], psfs: dict[int, np.ndarray], floor: np.ndarray, k: int,
                      fit: FamilyFit) -> dict[str, np.ndarray]:
    """{method: float64 [H, W] in counts} for ``CLASSICAL`` on the pair (0, k) of one field."""
    z0, zk = planes[BLURRIEST], planes[k]
    yk = signal_unit(zk)
    return {
        "identity": np.asarray(zk, np.float64),
        "rl": deconvolve(yk, fit.deconv[k], "rl") * FULL,
        "wiener": deconvolve(yk, fit.deconv[k], "wiener") * FULL,
        "two-plane": two_plane(z0, zk, fit.deconv[BLURRIEST], fit.deconv[k], fit.two_plane[k]) * FULL,
        "oracle": oracle(z0, zk, floor, psfs[BLURRIEST], psfs[k], fit.oracle[k]) * FULL,
    }


def gaussian_blur_synthesis(z16: np.ndarray, fit: FamilyFit, ks: list[int]) -> dict[int, np.ndarray]:
    """{k: float64 unit image}: z16 blurred by the Gaussian fitted from z16 to plane k (the blur baseline)."""
    y = signal_unit(z16)
    return {k: fit.synth[k].synthesize(y) for k in ks}


# --- learned models -----------------------------------------------------------------------------------


def load_predictors(checkpoints: dict[str, Path], builtins: list[str], device: str) -> dict[str, Predictor]:
    """{column name: Predictor in ``conserve`` mode with float32 output}: ``builtin-NAME`` for each built-in model
    (checksum verified), then each ``--checkpoint NAME=PATH``."""
    out = {}
    for name in builtins:
        out[f"builtin-{name}"] = load_model(device=device, builtin=name)
    for name, path in checkpoints.items():
        out[name] = load_model(path, device=device)
    return {name: p.with_options(intensity="conserve", out_dtype="float32") for name, p in out.items()}


def model_deblur(predictor: Predictor, z0: np.ndarray, zk: np.ndarray, k: int) -> np.ndarray:
    """float32 [H, W] in counts: Eq. 3 on (z0, zk) at α = (16 − k)/(16 − 0)."""
    return predictor.deblur(z0, zk, alpha_from_planes(BLURRIEST, k, IN_FOCUS_PLANE))


def model_blur(predictor: Predictor, z16: np.ndarray, z0: np.ndarray, ks: list[int]) -> dict[int, np.ndarray]:
    """{k: float32 [H, W]}: Eq. 2 between z16 (sharp) and z0 at plane k's level, α_blur = 1 − (16 − k)/16."""
    levels = [1.0 - alpha_from_planes(BLURRIEST, k, IN_FOCUS_PLANE) for k in ks]
    return dict(zip(ks, predictor.blur(z16, z0, levels), strict=True))


# --- CARE's predictions -------------------------------------------------------------------------------


def care_path(folder: Path, family: str, stem: str, k: int) -> Path:
    """Where CARE's prediction of the pair (0, k) of a field is expected: ``DIR/<family>/<field-stem>_k<k>.npy``."""
    return Path(folder) / family / f"{stem}_k{k}.npy"


def care_prediction(folder: Path | None, family: str, stem: str, k: int,
                    shape: tuple[int, int]) -> np.ndarray | None:
    """float64 [H, W] read from ``care_path``, or None when there is no folder or no such file. A file of another
    shape raises ValueError naming it (it belongs to another crop or field)."""
    if folder is None:
        return None
    path = care_path(folder, family, stem, k)
    if not path.is_file():
        return None
    pred = np.squeeze(np.load(path)).astype(np.float64)
    if pred.shape != tuple(shape):
        raise ValueError(f"{path}: CARE prediction of shape {pred.shape}, the field is {tuple(shape)}; predict "
                         "the same (uncropped, or --smoke-cropped) field")
    return pred
