"""Classical baselines beside the model columns of ``evaluate``: a Gaussian PSF fitted per plane.

Blur synthesis: x_n ≈ gain · Gaussian_σ(x_T) + offset, with σ, gain and offset fitted per plane n on the
train split (``fit_blur``). Deblurring: the less-blurry input itself, and Richardson–Lucy or Wiener
deconvolution (scikit-image) of (x_k − offset)/gain with that Gaussian PSF, iterations and balance chosen
on train (``fit_deconvolution``). Images are float arrays in [0, 1].

Two planes at once: ``multiframe_wiener``, the classical counterpart of Eq. 3 (both defocused planes, each with
its own PSF, combined in one least-squares filter); ``psf_otf`` is the kernel's transfer function it uses.
``two_plane_wiener`` applies it to the far plane and plane k with their fitted Gaussians (the ``wiener2``
baseline, λ chosen on train by ``fit_two_plane_balance``; also the real-content benchmark's two-plane column).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.optimize import minimize_scalar
from skimage.restoration import richardson_lucy, wiener

from blurlatent.errors import UsageError
from blurlatent.evaluation.plan import PlanePlan

BASELINE_FIT_CROPS = 16
DECONV_FIT_CROPS = 8
RL_ITERATIONS = (10, 30)
WIENER_BALANCES = tuple(float(b) for b in np.logspace(-3, 0, 7))
WIENER2_BALANCES = tuple(float(b) for b in np.logspace(-4, 0, 9))  # λ of the two-plane filter, 10^0.5 apart
WIENER_PRIORS = ("white", "laplacian")
LAPLACIAN = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])  # skimage's default Wiener ``reg``
DECONVOLUTIONS = ("rl", "wiener")


def gaussian_blur(images, sigma: float) -> np.ndarray:
    """float64 images [..., H, W] blurred by a Gaussian of ``sigma`` px over the last two axes (reflect edges)."""
    images = np.asarray(images, dtype=np.float64)
    if sigma <= 0:
        return images.copy()
    return gaussian_filter(images, sigma=(0,) * (images.ndim - 2) + (sigma, sigma), mode="reflect")


def gaussian_psf(sigma: float) -> np.ndarray:
    """float64 [2r+1, 2r+1] normalised Gaussian kernel, r = int(4σ + 0.5): the kernel ``gaussian_blur`` applies."""
    radius = max(int(4.0 * sigma + 0.5), 1)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / max(sigma, 1e-12)) ** 2)
    psf = np.outer(g, g)
    return psf / psf.sum()


def affine_fit(pred: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """(gain, offset, mse) of the least-squares fit gain·pred + offset ≈ target, pooled over all pixels."""
    p, t = pred.ravel(), target.ravel()
    pm, tm = p.mean(), t.mean()
    var = float(np.sum((p - pm) ** 2))
    gain = float(np.sum((p - pm) * (t - tm)) / var) if var > 0 else 0.0
    offset = float(tm - gain * pm)
    mse = float(np.mean((gain * p + offset - t) ** 2))
    return gain, offset, mse


@dataclass
class BlurFit:
    """x_n ≈ gain · Gaussian_σ(x_T) + offset, fitted on the train split for one plane n."""

    plane: int
    sigma: float
    gain: float
    offset: float
    mse: float
    rl_iterations: int | None = None
    wiener_balance: float | None = None
    two_plane_balance: float | None = None  # λ of ``two_plane_wiener`` on the pair (far plane, this plane)

    def synthesize(self, sharp) -> np.ndarray:
        """float64 [..., H, W]: the baseline's version of plane n from the in-focus images, clipped to [0, 1]."""
        return np.clip(self.gain * gaussian_blur(sharp, self.sigma) + self.offset, 0.0, 1.0)


def fit_blur(sharp, blurred, plane: int = -1, sigma_max: float | None = None) -> BlurFit:
    """Fit σ (and a global gain/offset) so that gain·G_σ(sharp) + offset ≈ blurred in the least-squares sense.

    ``sharp``, ``blurred``: float [N, H, W] in [0, 1], aligned. The gain/offset absorb the per-image
    intensity scaling of the store, so σ measures blur only. Coarse log grid, then a bounded Brent refine.
    Raises UsageError when the stacks are not two aligned, non-empty [N, H, W] arrays.
    """
    sharp = np.asarray(sharp, np.float64)
    blurred = np.asarray(blurred, np.float64)
    if sharp.shape != blurred.shape or sharp.ndim != 3 or len(sharp) == 0:
        raise UsageError(f"sharp and blurred must be two aligned [N>0, H, W] stacks, got {sharp.shape} "
                         f"and {blurred.shape}")
    # Defocus at the far plane can reach tens of pixels; beyond a third of the image σ is no longer identifiable.
    sigma_max = sigma_max or max(2.0, min(sharp.shape[-2:]) / 3.0)

    def loss(sigma: float) -> float:
        return affine_fit(gaussian_blur(sharp, sigma), blurred)[2]

    grid = np.concatenate([[0.0], np.geomspace(0.25, sigma_max, 10)])
    losses = [loss(s) for s in grid]
    i = int(np.argmin(losses))
    best_sigma, best_loss = float(grid[i]), losses[i]
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi > lo:
        res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
        if res.fun < best_loss:
            best_sigma, best_loss = float(res.x), float(res.fun)
    gain, offset, mse = affine_fit(gaussian_blur(sharp, best_sigma), blurred)
    return BlurFit(plane=plane, sigma=best_sigma, gain=gain, offset=offset, mse=mse)


def deconvolve(image, fit: BlurFit, method: str, param: float | None = None) -> np.ndarray:
    """float64 [H, W]: undo ``fit`` on one image (gain/offset, then RL or Wiener with the Gaussian PSF).

    ``method``: ``"rl"`` (``param`` = iterations, default the fitted one) or ``"wiener"`` (``param`` = balance).
    The image is reflect-padded by the PSF radius first so that the deconvolution does not ring at the borders.
    Raises UsageError for another ``method``.
    """
    if method not in DECONVOLUTIONS:
        raise UsageError(f"method {method!r} is not a deconvolution this module knows; "
                         f"use one of {', '.join(DECONVOLUTIONS)}")
    image = np.asarray(image, np.float64)
    y = np.clip((image - fit.offset) / fit.gain, 0.0, 1.0) if abs(fit.gain) > 1e-6 else image.copy()
    if fit.sigma < 0.3:  # the fitted blur is below a third of a pixel: nothing to undo
        return y
    psf = gaussian_psf(fit.sigma)
    r = psf.shape[0] // 2
    padded = np.pad(y, r, mode="reflect")
    if method == "rl":
        iterations = int(param if param is not None else (fit.rl_iterations or RL_ITERATIONS[-1]))
        out = richardson_lucy(padded, psf, num_iter=iterations, clip=True)
    else:
        balance = float(param if param is not None else (fit.wiener_balance or 0.1))
        out = wiener(padded, psf, balance=balance, clip=True)
    return np.clip(out[r:-r, r:-r], 0.0, 1.0)


def fit_deconvolution(fit: BlurFit, blurred, sharp) -> BlurFit:
    """Choose RL iterations and the Wiener balance for ``fit`` by the MSE to ``sharp`` on train images [N, H, W]."""

    def mse(method, param):
        pairs = zip(blurred, sharp, strict=True)
        return float(np.mean([np.mean((deconvolve(b, fit, method, param) - s) ** 2) for b, s in pairs]))

    fit.rl_iterations = min(RL_ITERATIONS, key=lambda n: mse("rl", n))
    fit.wiener_balance = min(WIENER_BALANCES, key=lambda b: mse("wiener", b))
    return fit


def psf_otf(psf, shape: tuple[int, int]) -> np.ndarray:
    """complex128 [H, W // 2 + 1]: the ``rfft2`` of ``psf`` (float [h, w], odd sizes, h ≤ H, w ≤ W) zero-padded to
    ``shape`` with its centre moved to the origin, so multiplying a spectrum by it convolves circularly
    without shifting the image. Raises UsageError for an even-sized or too large kernel."""
    psf = np.asarray(psf, np.float64)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise UsageError(f"psf must be one 2-D kernel of odd sizes (centred), got shape {psf.shape}")
    if psf.shape[0] > shape[0] or psf.shape[1] > shape[1]:
        raise UsageError(f"psf {psf.shape} is larger than the image {tuple(shape)}; use a smaller kernel")
    full = np.zeros(shape, np.float64)
    full[: psf.shape[0], : psf.shape[1]] = psf
    full = np.roll(full, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), axis=(0, 1))
    return np.fft.rfft2(full)


def multiframe_wiener(images, psfs, balance: float, pad: bool = True, prior: str = "white") -> np.ndarray:
    """float64 [H, W]: one image estimated from P blurred views of it, each with its own PSF.

    ``images``: float [P, H, W] (or P arrays [H, W]), one field under P blurs (e.g. two planes of a focus series,
    offsets removed); ``psfs``: P kernels [h, w] with odd sizes, each normalised to sum 1 (sizes may differ);
    ``balance``: λ ≥ 0. ``pad``: reflect-pad the images by the largest kernel radius first (then crop), so that
    the circular convolution of the FFT does not wrap one border onto the other; ``pad=False`` takes the images
    as periodic, the filter's exact model. ``prior``: ``"white"`` (λ at every frequency) or ``"laplacian"`` (λ
    weighted by |L(f)|², L the 5-point Laplacian: a smoothness prior, scikit-image's ``wiener`` regulariser).
    Raises UsageError for mismatched inputs, a negative ``balance`` or another ``prior``.

    Notes
    -----
    Model: Y_i = H_i ⊛ X + N_i (i = 1…P) with white noise of one variance in every view and a white prior
    on X. The MAP estimate of the stacked system (equivalently, Tikhonov regularisation of it) is, per frequency,

        X̂(f) = Σ_i conj(H_i(f)) · Y_i(f) / (Σ_i |H_i(f)|² + λ),

    the classical counterpart of Eq. 3: two defocused planes, each with its own PSF, give the in-focus plane.
    Frequencies that one plane's PSF nearly removes (the zeros of a defocus OTF) are filled from the other.
    With P = 1 it is the single-plane Wiener–Tikhonov filter (skimage's ``wiener`` with ``reg`` = the identity);
    for any λ > 0, a second view can only raise Σ|H_i|² and so bring the noiseless transfer
    Σ|H_i|²/(Σ|H_i|² + λ) closer to 1; as λ → 0 it inverts the blur wherever Σ|H_i|² > 0.
    ``prior="laplacian"`` replaces λ by λ|L(f)|² (a prior that penalises roughness, not brightness): with
    P = 1 it is exactly scikit-image's ``wiener`` (its default ``reg``), the single-plane ``wiener`` baseline.
    """
    images = [np.asarray(img, np.float64) for img in images]
    psfs = [np.asarray(p, np.float64) for p in psfs]
    if not images or len(images) != len(psfs) or len({img.shape for img in images}) != 1 or images[0].ndim != 2:
        raise UsageError(f"images and psfs must be P >= 1 aligned [H, W] images and P kernels, got {len(images)} "
                         f"images of shapes {sorted({img.shape for img in images})} and {len(psfs)} kernels")
    if not balance >= 0:
        raise UsageError(f"balance {balance}: λ must be >= 0")
    if prior not in WIENER_PRIORS:
        raise UsageError(f"prior {prior!r} is not one this filter knows; use one of {', '.join(WIENER_PRIORS)}")
    h, w = images[0].shape
    r = max(max(p.shape) // 2 for p in psfs) if pad else 0
    shape = (h + 2 * r, w + 2 * r)
    numerator = np.zeros((shape[0], shape[1] // 2 + 1), np.complex128)
    power = np.zeros(numerator.shape, np.float64)
    for img, psf in zip(images, psfs, strict=True):
        otf = psf_otf(psf, shape)
        spectrum = np.fft.rfft2(np.pad(img, r, mode="reflect") if r else img)
        numerator += np.conj(otf) * spectrum
        power += np.abs(otf) ** 2
    penalty = balance * (np.abs(psf_otf(LAPLACIAN, shape)) ** 2 if prior == "laplacian" else 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(power + penalty > 0, numerator / (power + penalty), 0.0)
    out = np.fft.irfft2(estimate, s=shape)
    return out[r : r + h, r : r + w] if r else out


def two_plane_wiener(far, near, far_fit: BlurFit, near_fit: BlurFit, balance: float,
                     prior: str = "laplacian") -> np.ndarray:
    """float64 [H, W] in [0, 1]: the in-focus plane from two planes of one field by ``multiframe_wiener``.

    ``far``, ``near``: float [H, W], the far plane and plane k on the scale their fits were made on; each is
    mapped to the in-focus plane's scale by its fit's gain/offset, then filtered with the two fitted Gaussian
    PSFs, ``balance`` (λ) and ``prior`` (see ``multiframe_wiener``); clipped to [0, 1] as ``deconvolve`` clips.
    The default Laplacian prior is the regulariser of the single-plane ``wiener`` baseline, so that the two
    columns differ only by the second plane (on smooth test scenes a white prior cost the two-plane filter ~2 dB
    against single-plane Wiener: the prior, not the data). Raises UsageError as ``multiframe_wiener`` does.
    """
    views, psfs = [], []
    for image, fit in ((far, far_fit), (near, near_fit)):
        views.append((np.asarray(image, np.float64) - fit.offset) / (fit.gain if abs(fit.gain) > 1e-6 else 1.0))
        psfs.append(gaussian_psf(max(fit.sigma, 1e-3)))  # σ ≈ 0: a 3×3 delta, the plane taken as it is
    return np.clip(multiframe_wiener(views, psfs, balance, prior=prior), 0.0, 1.0)


def fit_two_plane_balance(far_fit: BlurFit, near_fit: BlurFit, far, near, sharp) -> float:
    """The λ of ``WIENER2_BALANCES`` whose ``two_plane_wiener`` of (``far``, ``near``) has the best mean PSNR
    (range 1) against ``sharp``; all three float [N, H, W] in [0, 1], aligned train images."""

    def mean_psnr(balance: float) -> float:
        mses = [np.mean((two_plane_wiener(f, n, far_fit, near_fit, balance) - s) ** 2)
                for f, n, s in zip(far, near, sharp, strict=True)]
        return float(np.mean(-10.0 * np.log10(np.maximum(mses, 1e-12))))

    return max(WIENER2_BALANCES, key=mean_psnr)


def fit_baselines(train: np.ndarray, plan: PlanePlan, plane_index: Callable[[int], int],
                  progress: Callable[[], None] | None = None) -> dict[int, BlurFit]:
    """Per plane: a ``BlurFit`` of the far plane (σ, gain, offset), first, then of every plane n between far and
    target (also RL iterations, Wiener balance and the λ of ``two_plane_wiener`` on the pair (far, n)).

    ``train``: uint8 [crops, planes, H, W]; at most BASELINE_FIT_CROPS evenly spaced crops are used for σ and
    DECONV_FIT_CROPS of them for the iterations and balances; ``plane_index(plane)`` gives a plane's position on
    axis 1; ``progress()`` is called after each plane (1 + len(plan.between) calls).
    """
    n = len(train)
    take = np.unique(np.linspace(0, n - 1, min(n, BASELINE_FIT_CROPS)).round().astype(int))
    k = min(len(take), DECONV_FIT_CROPS)
    sharp = np.asarray(train[take, plane_index(plan.target)], np.float64) / 255.0
    far = np.asarray(train[take, plane_index(plan.far)], np.float64) / 255.0
    fits = {plan.far: fit_blur(sharp, far, plane=plan.far)}
    if progress is not None:
        progress()
    for plane in plan.between:
        blurred = np.asarray(train[take, plane_index(plane)], np.float64) / 255.0
        fit = fit_deconvolution(fit_blur(sharp, blurred, plane=plane), blurred[:k], sharp[:k])
        fit.two_plane_balance = fit_two_plane_balance(fits[plan.far], fit, far[:k], blurred[:k], sharp[:k])
        fits[plane] = fit
        if progress is not None:
            progress()
    return fits


def apply_baselines(fits: dict[int, BlurFit], plan: PlanePlan, real: np.ndarray, truth: np.ndarray,
                    far: np.ndarray) -> dict[str, np.ndarray]:
    """The baselines' images for one batch: ``gaussian`` [B, N, H, W] (blur synthesis of each plane
    between from ``truth`` [B, H, W]), ``rl``/``wiener`` [B, N, H, W] (deconvolutions of ``real``
    [B, N, H, W], the planes between, each toward the target) and ``wiener2`` [B, N, H, W]
    (``two_plane_wiener`` of ``far`` [B, H, W], the far plane, with each plane between)."""
    out = {"gaussian": np.stack([fits[n].synthesize(truth) for n in plan.between], 1)}
    for method in DECONVOLUTIONS:
        out[method] = np.stack([np.stack([deconvolve(img, fits[k], method) for img in real[:, j]])
                                for j, k in enumerate(plan.between)], 1)
    out["wiener2"] = np.stack([
        np.stack([two_plane_wiener(f, img, fits[plan.far], fits[k], float(fits[k].two_plane_balance or 0.1))
                  for f, img in zip(far, real[:, j], strict=True)])
        for j, k in enumerate(plan.between)], 1)
    return out
