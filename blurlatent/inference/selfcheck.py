"""A deblurred output's self-check, without ground truth: is it consistent with the two planes it came from?

Re-blur consistency. Defocus only blurs, so a good estimate ``x`` of the in-focus field explains both inputs once
blurred: the blurriest plane ``z0 ≈ g·(G_σ0 ⊛ x) + o`` and the less-blurry one ``zk ≈ g·(G_σk ⊛ x) + o`` for some
Gaussian σ and a gain/offset ``g, o`` (least squares: the output's intensity scale is not the plane's). For each
plane the residual ``r`` of the best σ, divided by the plane's noise ``n`` (Immerkær's estimate), says how much of
it the output cannot explain; ``max(r0/n0, rk/nk)``. A second term asks whether the two σ agree with α: Eq. 3 takes
plane k's defocus as (1 − α) of plane 0's, so for blur growing linearly with defocus σk ≈ (1 − α)·σ0.

    score = max(r0/n0, rk/nk) + 0.5·|σk − (1 − α)·σ0|         (σ in px of the 2×2-binned copies)

An output of the planes given in the wrong order, of hot pixels, of an image at the wrong pixel size (structure the
model invented or lost) scores high. Both the output and the planes are 2×2-binned and high-passed (minus a
Gaussian of 8 binned px: a background ramp is no detail to explain), σ searched on a coarse grid, so the check
costs a small fraction of a deblur. The score and its threshold ``WARN_ABOVE`` were chosen on bench_real's val
split and measured on its test split (docs/benchmarks.md, "The deblur self-check"; benchmarks/bench_guard.py).

    check = self_check(output, blurriest, less_blurry, alpha)   # a SelfCheck: .score, .warn, .message()
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from blurlatent.files.provenance import Provenance

# Gaussian σ tried, in binned pixels (×2 in the input's): 0 … 16 px at full resolution.
SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.5, 8.0)
# Scores above this are warned about: chosen on bench_real's val split (docs/benchmarks.md, "The deblur self-check").
WARN_ABOVE = 6.0
SIGMA_WEIGHT = 0.5  # per binned px of σ disagreement, against residual / noise (val)
BACKGROUND_SIGMA = 8.0  # binned px: what ``high_pass`` removes (a nucleus is ~10 binned px across)
TRUNCATE = 3.0  # Gaussian kernels cut at 3σ (99.7 %): a quarter fewer taps than scipy's 4σ
_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def binned(image: np.ndarray, factor: int = 2) -> np.ndarray:
    """float64 mean of ``factor``² blocks (the image's edge rows/columns that do not fill a block are dropped)."""
    a = np.asarray(image, dtype=np.float64)
    h, w = (a.shape[0] // factor) * factor, (a.shape[1] // factor) * factor
    if h == 0 or w == 0:
        return a
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def high_pass(image: np.ndarray) -> np.ndarray:
    """``image`` minus its Gaussian blur of ``BACKGROUND_SIGMA``: the detail, without background and ramps."""
    return image - ndi.gaussian_filter(image, BACKGROUND_SIGMA, mode="reflect", truncate=TRUNCATE)


def noise_sigma(image: np.ndarray) -> float:
    """Immerkær's (1996) fast estimate of additive noise's σ from a Laplacian-difference mask."""
    if min(image.shape) < 3:
        return 0.0
    response = ndi.convolve(image, _LAPLACE, mode="reflect")[1:-1, 1:-1]
    return float(math.sqrt(math.pi / 2) * np.abs(response).mean() / 6)


@dataclass(frozen=True)
class Fit:
    """How well the blurred ``source`` explains a plane: the best σ (binned px) and residual / noise."""

    sigma: float
    ratio: float


def explain(source: np.ndarray, targets: Sequence[tuple[np.ndarray, float]]) -> list[Fit]:
    """For each (target, its noise): the σ of ``SIGMAS`` whose ``G_σ ⊛ source`` fits the target best (gain/offset
    free) and its residual / noise; each blur of ``source`` made once for all targets. The least-squares residual
    of ``t ≈ g·b + o`` is √(var t − cov(b, t)² / var b) (a constant ``b`` leaves all of ``t``'s variance)."""
    centred = [(t - t.mean(), noise) for t, noise in targets]
    energies = [float((t * t).mean()) for t, _ in centred]
    best = [Fit(0.0, math.inf) for _ in targets]
    for sigma in SIGMAS:
        blurred = ndi.gaussian_filter(source, sigma, mode="reflect", truncate=TRUNCATE) if sigma else source
        b = blurred - blurred.mean()
        var = float((b * b).mean())
        for i, ((t, noise), energy) in enumerate(zip(centred, energies, strict=True)):
            explained = float((b * t).mean()) ** 2 / var if var > 0 else 0.0
            ratio = math.sqrt(max(energy - explained, 0.0)) / noise
            if ratio < best[i].ratio:
                best[i] = Fit(sigma, ratio)
    return best


@dataclass(frozen=True)
class SelfCheck:
    """One output's check: ``score`` (see the module) and the fits it came from, to the blurriest plane (``out0``)
    and to the less-blurry one (``outk``)."""

    score: float
    out0: Fit
    outk: Fit

    @property
    def warn(self) -> bool:
        return not self.score <= WARN_ABOVE  # NaN warns too

    def message(self) -> str:
        text = (f"self-check {self.score:.2f} (how far the output, re-blurred, is from explaining both inputs; "
                f"above {WARN_ABOVE:g}: suspect)")
        if self.warn:
            return ("the output may be worse than the less-blurry input: " + text
                    + "; check the planes' order (blurriest first), the pixel size, α")
        return text


def self_check(output: np.ndarray, blurriest: np.ndarray, less_blurry: np.ndarray, alpha: float) -> SelfCheck:
    """``SelfCheck`` of a deblurred [H, W] ``output`` against the two [H, W] planes it came from (any dtypes and
    intensity scales) and Eq. 3's ``alpha``. Raises ValueError for shapes that differ."""
    if not (np.shape(output) == np.shape(blurriest) == np.shape(less_blurry)) or np.ndim(output) != 2:
        raise ValueError(f"self_check needs three [H, W] images of one shape, got {np.shape(output)}, "
                         f"{np.shape(blurriest)}, {np.shape(less_blurry)}")
    out, z0, zk = binned(output), binned(blurriest), binned(less_blurry)
    n0, nk = noise_sigma(z0), noise_sigma(zk)
    detail = high_pass(out)
    d0, dk = high_pass(z0), high_pass(zk)
    # a noise-free (or flat) plane: residuals relative to a thousandth of its detail, never to zero
    n0, nk = max(n0, 1e-3 * float(d0.std()), 1e-12), max(nk, 1e-3 * float(dk.std()), 1e-12)
    out0, outk = explain(detail, [(d0, n0), (dk, nk)])
    score = max(out0.ratio, outk.ratio) + SIGMA_WEIGHT * abs(outk.sigma - (1 - float(alpha)) * out0.sigma)
    return SelfCheck(float(score), out0, outk)

def with_checks(provenance: Provenance | None, checks: Sequence[SelfCheck]) -> Provenance | None:
    """``provenance`` with the scores of ``checks``, the levels its file holds (none: ``provenance`` as it is)."""
    if provenance is None or not checks:
        return provenance
    return replace(provenance, self_check=tuple(round(c.score, 4) for c in checks))
