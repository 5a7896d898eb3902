"""`blurlatent evaluate`: the paper's Tables 1 and 2 and Figs 2/5/6/7, with classical baselines beside them.

For every test field (centre crops by default, whole fields with ``whole=True``) and every model:
encode all planes z_n = E(x_n), then

- blur synthesis (Eq. 2): z'_n = α_n z_T + (1 − α_n) z_F for each plane n strictly between the far plane F
  (the one furthest from focus, 0 in the paper) and the in-focus plane T = 16, α_n = (n − F)/(T − F);
- deblurring (Eq. 3): from (z_F, z_k) with α = (T − k)/(T − F), ẑ_T = z_k/(1 − α) − α/(1 − α)·z_F;
- latent geometry: LDS (Eq. 6) and APD (Eq. 7).

Baselines on the same fields and truth: a Gaussian blur of x_T (σ, gain and offset fitted per plane on the
train split) for blur synthesis; the less-blurry input x_k itself, Richardson–Lucy and Wiener deconvolution
(scikit-image, Gaussian PSF with the train-fitted σ) for deblurring.

The report folder holds report.json (every number, per field and per plane/k), report.md (tables and
definitions) and figures/*.png. It is written to a temp folder and renamed into place at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import metrics as M
from .errors import UsageError
from .files import check_output_location, make_temp_dir, replace_folder

log = logging.getLogger(__name__)

IN_FOCUS_PLANE = 16
# Cap on latent floats kept for the PCA figure (fields × planes × code size), so whole-field runs with the
# paper's 1024-channel codes stay within a few hundred MB.
PCA_FLOAT_BUDGET = 40_000_000
BASELINE_FIT_CROPS = 16
DECONV_FIT_CROPS = 8
RL_ITERATIONS = (10, 30)
WIENER_BALANCES = tuple(float(b) for b in np.logspace(-3, 0, 7))


# --- which planes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanePlan:
    """The planes of an evaluation: ``far`` (blurriest), ``between`` (far → target order), ``target`` (in focus)."""

    target: int
    far: int
    between: tuple[int, ...]

    @property
    def sequence(self) -> tuple[int, ...]:
        """far, between…, target: the blur-order sequence APD walks along."""
        return (self.far, *self.between, self.target)

    def synth_alpha(self, plane: int) -> float:
        """α of Eq. 2 (weight of the in-focus code) that should reproduce ``plane``: (n − F)/(T − F)."""
        return (plane - self.far) / (self.target - self.far)

    def deblur_alpha(self, plane: int) -> float:
        """α of Eq. 3 for the pair (far, plane): (T − k)/(T − F)."""
        from .interpolate import alpha_from_planes

        return alpha_from_planes(self.far, plane, self.target)


def plan_planes(planes: Sequence[int], target: int = IN_FOCUS_PLANE) -> PlanePlan:
    """Target = the in-focus plane, far = the store plane furthest from it (the lower side on a tie).

    Raises UsageError when the target is missing or no plane lies strictly between far and target.
    """
    planes = sorted(set(int(p) for p in planes))
    if target not in planes:
        raise UsageError(f"store planes {planes} do not include the in-focus plane {target}; prepare with --planes that include it (e.g. 0:16:2)")
    others = [p for p in planes if p != target]
    if not others:
        raise UsageError(f"store holds only plane {target}; evaluation needs defocused planes too (prepare with --planes 0:16:2)")
    far = min(others, key=lambda p: (-abs(p - target), p))
    lo, hi = sorted((far, target))
    between = [p for p in planes if lo < p < hi]
    if not between:
        raise UsageError(f"no store plane lies between planes {far} and {target}; blur synthesis and deblurring need at least one (prepare with --planes 0:16:2)")
    between.sort(key=lambda p: abs(p - far))
    return PlanePlan(target=target, far=far, between=tuple(between))


# --- classical baselines -----------------------------------------------------------------------------


def gaussian_blur(images, sigma: float) -> np.ndarray:
    """float64 images [..., H, W] blurred by a Gaussian of ``sigma`` px over the last two axes (reflect edges)."""
    from scipy.ndimage import gaussian_filter

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


def _affine_fit(pred: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
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

    def synthesize(self, sharp) -> np.ndarray:
        """float64 [..., H, W]: the baseline's version of plane n from the in-focus images, clipped to [0, 1]."""
        return np.clip(self.gain * gaussian_blur(sharp, self.sigma) + self.offset, 0.0, 1.0)


def fit_blur(sharp, blurred, plane: int = -1, sigma_max: float | None = None) -> BlurFit:
    """Fit σ (and a global gain/offset) so that gain·G_σ(sharp) + offset ≈ blurred in the least-squares sense.

    ``sharp``, ``blurred``: float [N, H, W] in [0, 1], aligned. The gain/offset absorb the per-image
    intensity scaling of the store, so σ measures blur only. Coarse log grid, then a bounded Brent refine.
    """
    from scipy.optimize import minimize_scalar

    sharp = np.asarray(sharp, np.float64)
    blurred = np.asarray(blurred, np.float64)
    if sharp.shape != blurred.shape or sharp.ndim != 3 or len(sharp) == 0:
        raise ValueError(f"fit_blur needs two aligned [N>0, H, W] stacks, got {sharp.shape} and {blurred.shape}")
    # Defocus at the far plane can reach tens of pixels; beyond a third of the image σ is no longer identifiable.
    sigma_max = sigma_max or max(2.0, min(sharp.shape[-2:]) / 3.0)

    def loss(sigma: float) -> float:
        return _affine_fit(gaussian_blur(sharp, sigma), blurred)[2]

    grid = np.concatenate([[0.0], np.geomspace(0.25, sigma_max, 10)])
    losses = [loss(s) for s in grid]
    i = int(np.argmin(losses))
    best_sigma, best_loss = float(grid[i]), losses[i]
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    if hi > lo:
        res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
        if res.fun < best_loss:
            best_sigma, best_loss = float(res.x), float(res.fun)
    gain, offset, mse = _affine_fit(gaussian_blur(sharp, best_sigma), blurred)
    return BlurFit(plane=plane, sigma=best_sigma, gain=gain, offset=offset, mse=mse)


def deconvolve(image, fit: BlurFit, method: str, param: float | None = None) -> np.ndarray:
    """float64 [H, W]: undo ``fit`` on one image (gain/offset, then RL or Wiener with the Gaussian PSF).

    ``method``: ``"rl"`` (``param`` = iterations, default the fitted one) or ``"wiener"`` (``param`` = balance).
    The image is reflect-padded by the PSF radius first so that the deconvolution does not ring at the borders.
    """
    from skimage.restoration import richardson_lucy, wiener

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
    elif method == "wiener":
        balance = float(param if param is not None else (fit.wiener_balance or 0.1))
        out = wiener(padded, psf, balance=balance, clip=True)
    else:
        raise ValueError(f"unknown deconvolution {method!r}; use rl or wiener")
    return np.clip(out[r:-r, r:-r], 0.0, 1.0)


def fit_deconvolution(fit: BlurFit, blurred, sharp) -> BlurFit:
    """Choose RL iterations and the Wiener balance for ``fit`` by the MSE to ``sharp`` on train images [N, H, W]."""

    def mse(method, param):
        return float(np.mean([np.mean((deconvolve(b, fit, method, param) - s) ** 2) for b, s in zip(blurred, sharp)]))

    fit.rl_iterations = min(RL_ITERATIONS, key=lambda n: mse("rl", n))
    fit.wiener_balance = min(WIENER_BALANCES, key=lambda b: mse("wiener", b))
    return fit


def fit_baselines(train: np.ndarray, plan: PlanePlan, plane_index: Callable[[int], int], progress=None) -> dict[int, BlurFit]:
    """Per plane n between far and target: a ``BlurFit`` (σ, gain, offset, RL iterations, Wiener balance).

    ``train``: uint8 [crops, planes, H, W]; at most BASELINE_FIT_CROPS evenly spaced crops are used.
    """
    n = len(train)
    take = np.unique(np.linspace(0, n - 1, min(n, BASELINE_FIT_CROPS)).round().astype(int))
    t = plane_index(plan.target)
    sharp = np.asarray(train[take, t], np.float64) / 255.0
    fits = {}
    for plane in plan.between:
        blurred = np.asarray(train[take, plane_index(plane)], np.float64) / 255.0
        fit = fit_blur(sharp, blurred, plane=plane)
        k = min(len(take), DECONV_FIT_CROPS)
        fits[plane] = fit_deconvolution(fit, blurred[:k], sharp[:k])
        if progress is not None:
            progress()
    return fits


# --- models -----------------------------------------------------------------------------------------


@dataclass
class ModelOutputs:
    """One batch through one model. Images float32 in [0, 1], cropped back to the input size.

    z [B, P, C, h, w] (store plane order), recon [B, P, H, W], z_synth [B, N, C, h, w] and synth [B, N, H, W]
    for plan.between, deblur [B, N, H, W] for the pairs (far, k), k in plan.between.
    """

    z: np.ndarray
    recon: np.ndarray
    z_synth: np.ndarray
    synth: np.ndarray
    deblur: np.ndarray


def run_model(model, x: np.ndarray, plan: PlanePlan, index: dict[int, int], device) -> ModelOutputs:
    """Encode every plane of ``x`` (float32 [B, P, H, W] in [0, 1]), synthesize blur (Eq. 2) and deblur (Eq. 3)."""
    import torch

    from .interpolate import crop_to, extrapolate_sharp, interpolate_latents, pad_to_multiple

    b, p = x.shape[:2]
    # Whole fields (696x520) are not divisible by 2**depth: reflect-pad, run, crop back (as `blur`/`deblur` do).
    padded, hw = pad_to_multiple(x, model.multiple)
    hp, wp = padded.shape[-2:]

    def decode(z):
        out = model.decode(z.reshape(-1, *z.shape[2:])).reshape(z.shape[0], z.shape[1], hp, wp)
        return crop_to(out.float().cpu().numpy(), hw)

    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32)).to(device)
        z = model.encode(xt.reshape(b * p, 1, hp, wp))
        z = z.reshape(b, p, *z.shape[1:])
        zf, zt = z[:, index[plan.far]], z[:, index[plan.target]]
        z_synth = torch.stack([interpolate_latents(zt, zf, plan.synth_alpha(n)) for n in plan.between], 1)
        z_deblur = torch.stack([extrapolate_sharp(zf, z[:, index[k]], plan.deblur_alpha(k)) for k in plan.between], 1)
        return ModelOutputs(
            z=z.float().cpu().numpy(),
            recon=decode(z),
            z_synth=z_synth.float().cpu().numpy(),
            synth=decode(z_synth),
            deblur=decode(z_deblur),
        )


# --- accumulating numbers -----------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    group: str
    higher_is_better: bool
    definition: str
    scale: float = 1.0  # shown multiplied by this (FFL ×10⁴, as Table 1)


ROWS = [
    Row("ffl_blur", "FFL (10⁻⁴)", "Blur synthesis (paper: vs reconstruction)", False,
        "Focal frequency loss (official package, defaults) between G(z'_n) and G(z_n), mean over images, shown ×10⁴", 1e4),
    Row("fid_blur", "FID", "Blur synthesis (paper: vs reconstruction)", False,
        "Fréchet Inception distance between the sets {G(z'_n)} and {G(z_n)} (pytorch-fid InceptionV3 pool features, grayscale ×3); "
        "with fewer images than its 2048 features FID is biased upward, so compare FIDs only over the same test set"),
    Row("psnr_blur_pooled", "PSNR-blur (pooled, paper)", "Blur synthesis (paper: vs reconstruction)", True,
        "PSNR(G(z'_n), G(z_n)), one figure pooled over all images, range from the targets (the paper's code)"),
    Row("psnr_blur_mean", "PSNR-blur (mean per image)", "Blur synthesis (paper: vs reconstruction)", True,
        "PSNR(G(z'_n), G(z_n)) per image (range 1), mean"),
    Row("psnr_blur_quality_pooled", "PSNR-blur-quality (pooled, paper)", "Blur synthesis vs the real plane x_n", True,
        "PSNR(synthesized, x_n) pooled over all images (the paper's PSNR_blur-quality)"),
    Row("psnr_blur_quality_mean", "PSNR-blur-quality (mean per image)", "Blur synthesis vs the real plane x_n", True,
        "PSNR(synthesized, x_n) per image (range 1), mean"),
    Row("ssim_blur_quality", "SSIM-blur-quality", "Blur synthesis vs the real plane x_n", True,
        "SSIM(synthesized, x_n), scikit-image defaults, mean"),
    Row("psnr_blur_quality_cal", "PSNR-blur-quality, calibrated", "Blur synthesis vs the real plane x_n", True,
        "PSNR after the least-squares fit a·synthesized + b ≈ x_n per image: structure only, gain/offset errors removed"),
    Row("ssim_blur_quality_cal", "SSIM-blur-quality, calibrated", "Blur synthesis vs the real plane x_n", True,
        "SSIM after the same per-image fit a·synthesized + b ≈ x_n"),
    Row("ffl_blur_real", "FFL vs real (10⁻⁴)", "Blur synthesis vs the real plane x_n", False,
        "Focal frequency loss between the synthesized image and x_n, shown ×10⁴", 1e4),
    Row("fid_blur_real", "FID vs real", "Blur synthesis vs the real plane x_n", False,
        "FID between {synthesized} and {x_n}"),
    Row("psnr_deblur_pooled", "PSNR-deblur (pooled, paper)", "Deblurring (paper: vs reconstruction)", True,
        "PSNR(G(ẑ_16), G(z_16)), ẑ_16 from Eq. 3 on (z_0, z_k), pooled over all images and k"),
    Row("psnr_deblur_mean", "PSNR-deblur (mean per image)", "Deblurring (paper: vs reconstruction)", True,
        "PSNR(G(ẑ_16), G(z_16)) per image (range 1), mean over images and k"),
    Row("psnr_deblur_quality_pooled", "PSNR-deblur-quality (pooled, paper)", "Deblurring vs the true in-focus x_16", True,
        "PSNR(deblurred, x_16) pooled over all images and k (the paper's PSNR_deblur-quality)"),
    Row("psnr_deblur_quality_mean", "PSNR-deblur-quality (mean per image)", "Deblurring vs the true in-focus x_16", True,
        "PSNR(deblurred, x_16) per image (range 1), mean over images and k: the honest end-to-end figure"),
    Row("ssim_deblur_quality", "SSIM-deblur-quality", "Deblurring vs the true in-focus x_16", True,
        "SSIM(deblurred, x_16), mean"),
    Row("psnr_deblur_quality_cal", "PSNR-deblur-quality, calibrated", "Deblurring vs the true in-focus x_16", True,
        "PSNR after the per-image least-squares fit a·deblurred + b ≈ x_16"),
    Row("ssim_deblur_quality_cal", "SSIM-deblur-quality, calibrated", "Deblurring vs the true in-focus x_16", True,
        "SSIM after the same fit"),
    Row("psnr_recon_sharp", "PSNR reconstruction G(z_16) vs x_16", "Reconstruction", True,
        "PSNR(G(E(x_16)), x_16) per image, mean: the ceiling for anything decoded by G"),
    Row("lds", "LDS (Eq. 6)", "Latent geometry (Table 2)", True,
        "mean over fields and the N between-planes of cos_sim(flatten z'_n, flatten z_n); 1 = on the straight line"),
    Row("apd", "APD (Eq. 7)", "Latent geometry (Table 2)", False,
        "mean over fields and the N+1 consecutive pairs (z_0..z_16, endpoints included) of |d(z_n,z_n+1) − d(z'_n,z'_n+1)|, d = mean squared difference"),
]
ROW_BY_KEY = {r.key: r for r in ROWS}
# Per-image metrics and the per-plane/per-k tables they feed.
BLUR_KEYS = ("psnr_blur", "psnr_blur_quality", "ssim_blur_quality", "psnr_blur_quality_cal", "ssim_blur_quality_cal", "ffl_blur", "ffl_blur_real")
DEBLUR_KEYS = ("psnr_deblur", "psnr_deblur_quality", "ssim_deblur_quality", "psnr_deblur_quality_cal", "ssim_deblur_quality_cal")


def blur_metrics(synth, real, recon=None) -> dict[str, np.ndarray]:
    """Per-image blur-synthesis figures for [N, H, W] stacks; ``recon`` (G(z_n)) None for baselines."""
    out = {
        "psnr_blur_quality": M.psnr_per_image(synth, real),
        "ssim_blur_quality": M.ssim_per_image(synth, real),
        "psnr_blur_quality_cal": M.psnr_calibrated(synth, real),
        "ssim_blur_quality_cal": M.ssim_calibrated(synth, real),
        "ffl_blur_real": M.ffl_per_image(synth, real),
    }
    if recon is not None:
        out["psnr_blur"] = M.psnr_per_image(synth, recon)
        out["ffl_blur"] = M.ffl_per_image(synth, recon)
    return out


def deblur_metrics(deblurred, truth, recon_sharp=None) -> dict[str, np.ndarray]:
    """Per-image deblurring figures for [N, H, W] stacks; ``recon_sharp`` (G(z_16)) None for baselines."""
    out = {
        "psnr_deblur_quality": M.psnr_per_image(deblurred, truth),
        "ssim_deblur_quality": M.ssim_per_image(deblurred, truth),
        "psnr_deblur_quality_cal": M.psnr_calibrated(deblurred, truth),
        "ssim_deblur_quality_cal": M.ssim_calibrated(deblurred, truth),
    }
    if recon_sharp is not None:
        out["psnr_deblur"] = M.psnr_per_image(deblurred, recon_sharp)
    return out


class Column:
    """Everything one model (or baseline) scores: per-field numbers, pooled PSNRs, FID features."""

    def __init__(self, name: str, kind: str, tasks: tuple[str, ...]):
        self.name, self.kind, self.tasks = name, kind, tasks
        self.per_field: dict[str, dict[str, Any]] = {}
        self.pooled: dict[str, M.PooledPSNR] = {}
        self.features: dict[str, list[np.ndarray]] = {}

    def _pool(self, key: str, pred, target) -> None:
        self.pooled.setdefault(key, M.PooledPSNR()).update(pred, target)

    def add_blur(self, names, plan: PlanePlan, synth, real, recon=None) -> None:
        """synth/real/recon: [B, N, H, W] for plan.between."""
        for j, plane in enumerate(plan.between):
            values = blur_metrics(synth[:, j], real[:, j], None if recon is None else recon[:, j])
            for i, name in enumerate(names):
                self.per_field.setdefault(name, {}).setdefault("blur", {})[plane] = {k: float(v[i]) for k, v in values.items()}
            self._pool("psnr_blur_quality", synth[:, j], real[:, j])
            self._pool(f"psnr_blur_quality@{plane}", synth[:, j], real[:, j])
            if recon is not None:
                self._pool("psnr_blur", synth[:, j], recon[:, j])

    def add_deblur(self, names, plan: PlanePlan, deblurred, truth, recon_sharp=None) -> None:
        """deblurred: [B, N, H, W] for k in plan.between; truth/recon_sharp: [B, H, W]."""
        for j, k in enumerate(plan.between):
            values = deblur_metrics(deblurred[:, j], truth, recon_sharp)
            for i, name in enumerate(names):
                self.per_field.setdefault(name, {}).setdefault("deblur", {})[k] = {key: float(v[i]) for key, v in values.items()}
            self._pool("psnr_deblur_quality", deblurred[:, j], truth)
            self._pool(f"psnr_deblur_quality@{k}", deblurred[:, j], truth)
            if recon_sharp is not None:
                self._pool("psnr_deblur", deblurred[:, j], recon_sharp)

    def add_features(self, key: str, feats: np.ndarray) -> None:
        self.features.setdefault(key, []).append(feats)

    def _values(self, section: str, key: str, at=None) -> list[float]:
        return [v[key] for f in self.per_field.values() for p, v in f.get(section, {}).items() if key in v and (at is None or p == at)]

    def summary(self, fid: dict[str, float | None]) -> dict[str, float | None]:
        """Row key → the column's figure (None where it does not apply); ``fid`` holds the FID rows."""
        out: dict[str, float | None] = {}
        for key in BLUR_KEYS:
            vals = self._values("blur", key)
            out[key + ("_mean" if key.startswith("psnr_blur") and "cal" not in key else "")] = _mean(vals)
        for key in DEBLUR_KEYS:
            vals = self._values("deblur", key)
            out[key + ("_mean" if key.startswith("psnr_deblur") and "cal" not in key else "")] = _mean(vals)
        for key in ("psnr_blur", "psnr_blur_quality", "psnr_deblur", "psnr_deblur_quality"):
            out[key + "_pooled"] = self.pooled[key].compute() if key in self.pooled else None
        for key in ("psnr_recon_sharp", "lds", "apd"):
            out[key] = _mean([f[key] for f in self.per_field.values() if key in f])
        out.update(fid)
        return {r.key: out.get(r.key) for r in ROWS}

    def per_plane(self, plan: PlanePlan) -> dict[str, dict[int, dict[str, float | None]]]:
        blur = {}
        deblur = {}
        for n in plan.between:
            row = {k: _mean(self._values("blur", k, n)) for k in BLUR_KEYS}
            if any(v is not None for v in row.values()):
                acc = self.pooled.get(f"psnr_blur_quality@{n}")
                row["psnr_blur_quality_pooled"] = acc.compute() if acc else None
                blur[n] = row
            row = {k: _mean(self._values("deblur", k, n)) for k in DEBLUR_KEYS}
            if any(v is not None for v in row.values()):
                acc = self.pooled.get(f"psnr_deblur_quality@{n}")
                row["psnr_deblur_quality_pooled"] = acc.compute() if acc else None
                row["alpha"] = plan.deblur_alpha(n)
                deblur[n] = row
        return {"blur_per_plane": blur, "deblur_per_k": deblur}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def best_columns(summary: dict[str, dict[str, float | None]]) -> dict[str, list[str]]:
    """Row key → the column names holding the best value of that row (ties all marked)."""
    best = {}
    for row in ROWS:
        vals = {c: s.get(row.key) for c, s in summary.items() if s.get(row.key) is not None and np.isfinite(s[row.key])}
        if not vals:
            continue
        target = max(vals.values()) if row.higher_is_better else min(vals.values())
        best[row.key] = [c for c, v in vals.items() if np.isclose(v, target, rtol=0, atol=1e-12)]
    return best


# --- the evaluation ----------------------------------------------------------------------------------


def _column_names(paths: Sequence[Path]) -> list[str]:
    """Short unique column names: the file stem, or parent/stem when stems collide (runs/weak/best.pt)."""
    stems = [p.stem for p in paths]
    names = [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if names.count(n) > 1:
            seen[n] = seen.get(n, 0) + 1
            names[i] = f"{n}#{seen[n]}"
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is a file; choose a folder for --out")
    if out.exists() and not force:
        raise UsageError(f"{out}: report folder already exists; pass --force to replace it or choose another --out")
    if out.exists() and any(out.iterdir()) and not (out / "report.json").exists():
        raise UsageError(f"{out}: is a non-empty folder that is not a blurlatent report; refusing to replace it even with --force — choose another --out")
    check_output_location(out)


def _test_names(store, channel: str, count: int) -> list[str]:
    """A name per row of the test array: the field (``a01_s1``), with ``/cropJ`` when a field has several crops.

    Rows follow the manifest's per-field ``index`` (prepare writes field i at rows i·n .. (i+1)·n).
    """
    records = sorted(store.fields("test", channel), key=lambda r: r.get("index", 0))
    fields = [r.get("field", r.get("name", f"field{i}")) for i, r in enumerate(records)]
    if len(fields) == count:
        return fields
    if fields and count % len(fields) == 0:  # ten crops per field (prepare --test-crops ten)
        per = count // len(fields)
        return [f"{name}/crop{j}" for name in fields for j in range(per)]
    return [f"test{i}" for i in range(count)]


def evaluate(
    store,
    checkpoints: Sequence[str | Path],
    channel: str,
    out: str | Path,
    whole: bool = False,
    fid_weights: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 8,
    progress: bool = True,
    force: bool = False,
    feature_extractor: M.Extractor | None = None,
    examples: int = 2,
) -> dict[str, Any]:
    """Evaluate ``checkpoints`` on the test split of ``store`` and write ``out``/report.json, report.md, figures/.

    ``store``: a path or ``Store``; ``checkpoints``: one or more .pt files (one table column each);
    ``whole``: full-size test fields (padded to a multiple of 2**depth, cropped back) instead of centre
    crops; ``fid_weights``: pytorch-fid's Inception file (else the torch hub cache; if neither, FID is
    reported as unavailable with the fix); ``feature_extractor``: replaces Inception (tests, other
    feature networks), a callable Tensor [B, 3, H, W] → [B, D].

    Returns the report dict (also written as report.json). Raises UsageError for a bad store, channel,
    checkpoint, batch size or an existing ``out`` without ``force`` — before any heavy work.
    """
    from .checkpoint import build_model, load_checkpoint
    from .device import assign_device
    from .store import Store

    store = store if isinstance(store, Store) else Store(store)
    out = Path(out)
    if not checkpoints:
        raise UsageError("no checkpoint given; pass --checkpoint A.pt (repeat it to compare models)")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be at least 1")
    _check_out(out, force)
    plan = plan_planes(store.planes)
    index = {p: store.plane_index(p) for p in plan.sequence}
    dev = assign_device(device)
    store._check_channel(channel)

    paths = [Path(c) for c in checkpoints]
    names = _column_names(paths)
    models, ckpt_info = [], []
    store_norm = store.manifest.get("normalize", store.manifest.get("normalization"))
    for path, name in zip(paths, names):
        ckpt = load_checkpoint(path)
        model = build_model(ckpt, str(path)).to(dev)
        models.append(model)
        norm = (ckpt["config"].get("data") or {}).get("normalize")
        if norm is not None and store_norm is not None and norm != store_norm:
            log.warning("%s was trained on %r-normalized data but the store is %r; numbers may not transfer", path, norm, store_norm)
        ckpt_info.append({"name": name, "path": str(path), "sha256": _sha256(path), "epoch": ckpt.get("epoch"),
                          "config": ckpt["config"], "normalize": norm})

    data = store.full_test(channel) if whole else store.array(channel, "test")
    if len(data) == 0:
        raise UsageError(f"{store.path}: the test split of channel {channel} is empty; prepare with a split that gives test fields")
    field_names = _test_names(store, channel, len(data))
    train = store.array(channel, "train")

    extractor, fid_note = feature_extractor, None
    if extractor is None:
        try:
            extractor = M.inception_extractor(fid_weights, device=dev)
        except M.FidUnavailable as exc:
            fid_note = str(exc)
            log.info("%s", fid_note)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not progress, transient=False)
    n_batches = math.ceil(len(data) / batch_size)
    seq_idx = [index[p] for p in plan.sequence]
    between_idx = [index[p] for p in plan.between]
    with bar:
        fits: dict[int, BlurFit] = {}
        baseline_note = None
        if len(train):
            fit_task = bar.add_task("fitting baselines on train", total=len(plan.between))
            fits = fit_baselines(train, plan, store.plane_index, progress=lambda: bar.advance(fit_task))
        else:
            baseline_note = "baselines skipped: the train split is empty, so no σ could be fitted"
        columns = [Column(n, "model", ("blur", "deblur", "latent")) for n in names]
        baselines = {
            "gaussian": Column("Gaussian blur (σ fitted)", "baseline", ("blur",)),
            "input": Column("less-blurry input x_k", "baseline", ("deblur",)),
            "rl": Column("Richardson–Lucy", "baseline", ("deblur",)),
            "wiener": Column("Wiener", "baseline", ("deblur",)),
        } if fits else {}
        real_features: list[np.ndarray] = []
        ex = _Examples(examples)
        pca = _PcaKeeper()
        task = bar.add_task("evaluating", total=n_batches * (len(models) + 1))
        for bi in range(n_batches):
            start = bi * batch_size
            batch_names = field_names[start : start + batch_size]
            x = np.asarray(data[start : start + batch_size], dtype=np.float32) / 255.0
            real = x[:, between_idx]
            truth = x[:, index[plan.target]]
            ex.keep("real", start, x[:, seq_idx], batch_names)
            if extractor is not None:
                real_features.append(M.extract_features(_flat_images(real), extractor, device=dev))
            if fits:
                gauss = np.stack([fits[n].synthesize(truth) for n in plan.between], 1)
                baselines["gaussian"].add_blur(batch_names, plan, gauss, real)
                ex.keep("gaussian", start, gauss)
                if extractor is not None:
                    baselines["gaussian"].add_features("synth", M.extract_features(_flat_images(gauss), extractor, device=dev))
                baselines["input"].add_deblur(batch_names, plan, real, truth)
                for key in ("rl", "wiener"):
                    dec = np.stack([np.stack([deconvolve(img, fits[k], key) for img in real[:, j]]) for j, k in enumerate(plan.between)], 1)
                    baselines[key].add_deblur(batch_names, plan, dec, truth)
                    ex.keep(key, start, dec)
            bar.advance(task)
            for model, col in zip(models, columns):
                mo = run_model(model, x, plan, index, dev)
                recon_between = mo.recon[:, between_idx]
                recon_sharp = mo.recon[:, index[plan.target]]
                col.add_blur(batch_names, plan, mo.synth, real, recon_between)
                col.add_deblur(batch_names, plan, mo.deblur, truth, recon_sharp)
                z_seq = mo.z[:, seq_idx]
                # z' along the whole sequence: the endpoints are the encoder's own codes (α = 0 and 1 in Eq. 2)
                z_seq_interp = np.concatenate([z_seq[:, :1], mo.z_synth, z_seq[:, -1:]], 1)
                lds = M.lds_per_field(mo.z_synth, mo.z[:, between_idx])
                apd = M.apd_per_field(z_seq_interp, z_seq)
                recon_psnr = M.psnr_per_image(recon_sharp, truth)
                for i, name in enumerate(batch_names):
                    col.per_field[name].update(lds=float(lds[i]), apd=float(apd[i]), psnr_recon_sharp=float(recon_psnr[i]))
                if extractor is not None:
                    col.add_features("synth", M.extract_features(_flat_images(mo.synth), extractor, device=dev))
                    col.add_features("recon", M.extract_features(_flat_images(recon_between), extractor, device=dev))
                ex.keep(f"{col.name}:recon", start, mo.recon[:, seq_idx])
                ex.keep(f"{col.name}:synth", start, mo.synth)
                ex.keep(f"{col.name}:deblur", start, mo.deblur)
                pca.keep(col.name, z_seq)
                bar.advance(task)

    fid = _fid_values(columns, list(baselines.values()), real_features, fid_note)
    all_columns = columns + list(baselines.values())
    summary = {c.name: c.summary(fid.get(c.name, {})) for c in all_columns}
    best = best_columns(summary)
    report = {
        "format_version": 1,
        "config": {
            "store": str(store.path), "channel": channel, "whole": whole, "device": str(dev), "batch_size": batch_size,
            "planes": {"target": plan.target, "far": plan.far, "between": list(plan.between)},
            "alpha_synth": {str(n): plan.synth_alpha(n) for n in plan.between},
            "alpha_deblur": {str(k): plan.deblur_alpha(k) for k in plan.between},
            "fields": len(field_names), "image_size": list(data.shape[-2:]), "store_normalize": store_norm,
            "fid": {"available": fid_note is None, "note": fid_note,
                    "extractor": "custom" if feature_extractor is not None else "pytorch-fid InceptionV3 pool3 (2048-d)",
                    "weights": None if feature_extractor is not None or fid_note else str(M.find_fid_weights(fid_weights))},
            "baselines": {str(k): asdict(v) for k, v in fits.items()}, "baseline_note": baseline_note,
            "psnr": "'pooled' = the paper's torchmetrics PSNR (one figure over the set, range = max−min of the targets); "
                    "'mean per image' = mean of per-image PSNRs with range 1 (images in [0, 1])",
        },
        "checkpoints": ckpt_info,
        "columns": [{"name": c.name, "kind": c.kind, "tasks": list(c.tasks)} for c in all_columns],
        "rows": [asdict(r) for r in ROWS],
        "summary": summary,
        "best": best,
        "per_plane": {c.name: c.per_plane(plan) for c in all_columns},
        "per_field": {c.name: c.per_field for c in all_columns},
    }
    report = _plain(report)
    _write_report(out, force, report, ex, pca, plan, names)
    return report


def _flat_images(stack: np.ndarray) -> np.ndarray:
    """[B, N, H, W] → [B·N, H, W]."""
    return stack.reshape(-1, *stack.shape[-2:])


def _fid_values(columns, baselines, real_features, note) -> dict[str, dict[str, float | None]]:
    """FID per column: fid_blur (synth vs reconstructions) for models, fid_blur_real (synth vs x_n) for all."""
    out: dict[str, dict[str, float | None]] = {}
    if note is not None or not real_features:
        return out
    real = np.concatenate(real_features)
    for col in list(columns) + list(baselines):
        if "synth" not in col.features:
            continue
        synth = np.concatenate(col.features["synth"])
        if len(synth) < 2:
            continue
        values = {"fid_blur_real": M.fid_from_features(synth, real)}
        if "recon" in col.features:
            values["fid_blur"] = M.fid_from_features(synth, np.concatenate(col.features["recon"]))
        out[col.name] = values
    return out


def _plain(value):
    """JSON-safe: numpy scalars to floats, int keys to str, non-finite floats to None (JSON has no inf)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# --- examples kept for the figures -------------------------------------------------------------------


class _Examples:
    """Images of the first ``n`` test fields (global indices 0..n-1), for the transition and deblurring figures.

    ``images[key]`` lists one array per kept field: ``real`` [P_seq, H, W] in blur order far → target,
    ``gaussian``/``rl``/``wiener`` [N, H, W], and per model ``<name>:recon`` [P_seq, H, W],
    ``<name>:synth`` and ``<name>:deblur`` [N, H, W].
    """

    def __init__(self, n: int):
        self.n = n
        self.names: list[str] = []
        self.images: dict[str, list[np.ndarray]] = {}

    def keep(self, key: str, start: int, images: np.ndarray, names: Sequence[str] | None = None) -> None:
        take = max(0, min(len(images), self.n - start))
        self.images.setdefault(key, []).extend(np.asarray(images[i], np.float32) for i in range(take))
        if names is not None:
            self.names.extend(names[:take])


class _PcaKeeper:
    """Flattened latents (float32 [P, D] per field, blur order) of as many fields as PCA_FLOAT_BUDGET allows."""

    def __init__(self):
        self.z: dict[str, list[np.ndarray]] = {}

    def keep(self, name: str, z_seq: np.ndarray) -> None:
        kept = self.z.setdefault(name, [])
        per_field = int(np.prod(z_seq.shape[1:]))
        room = max(2, PCA_FLOAT_BUDGET // max(per_field, 1)) - len(kept)
        for i in range(max(0, min(room, len(z_seq)))):
            kept.append(z_seq[i].reshape(z_seq.shape[1], -1).astype(np.float32))


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(projected [N, 2], mean [D], components [2, D]) of points [N, D] by SVD. PCA is linear, so the
    projection of the straight segment z_0 → z_16 is the straight segment between the projected endpoints."""
    mean = points.mean(axis=0)
    centred = points - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], points.shape[1]))])
    return centred @ comps.T, mean, comps


# --- writing -----------------------------------------------------------------------------------------


def _fmt(value: float | None, row: Row | None = None) -> str:
    if value is None:
        return "n/a"
    value = value * (row.scale if row else 1.0)
    if abs(value) >= 10:
        return f"{value:.2f}"
    if abs(value) >= 0.01 or value == 0:
        return f"{value:.4f}"
    return f"{value:.3g}"  # APD and near-perfect FFL live at 1e-4..1e-6


def table_rows(report: dict) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """(group, label with arrow, [(cell text, is best)] per column) for every row of the main table."""
    cols = [c["name"] for c in report["columns"]]
    rows = []
    for row in ROWS:
        cells = []
        for c in cols:
            v = report["summary"][c].get(row.key)
            cells.append((_fmt(v, row), c in report["best"].get(row.key, []) and v is not None))
        if all(t == "n/a" for t, _ in cells) and not row.key.startswith("fid"):
            continue
        rows.append((row.group, f"{row.label} {'↑' if row.higher_is_better else '↓'}", cells))
    return rows


def _task_columns(report: dict, task: str) -> list[str]:
    return [c["name"] for c in report["columns"] if task in c["tasks"]]


def rich_tables(report: dict):
    """Rich tables for the screen: the main table (best bold) and the per-k PSNR-deblur-quality table."""
    from rich.table import Table

    cols = [c["name"] for c in report["columns"]]
    main = Table(title=f"blurlatent evaluate — {report['config']['channel']}, {report['config']['fields']} test "
                       f"{'fields' if report['config']['whole'] else 'crops'}")
    main.add_column("group", style="dim")
    main.add_column("metric")
    for c in cols:
        main.add_column(c, justify="right")
    last = None
    for group, label, cells in table_rows(report):
        main.add_row(group if group != last else "", label, *[f"[bold green]{t}[/]" if b else t for t, b in cells])
        last = group
    cols = _task_columns(report, "deblur")
    perk = Table(title="PSNR-deblur-quality (mean per image) vs k")
    perk.add_column("k")
    perk.add_column("α")
    for c in cols:
        perk.add_column(c, justify="right")
    for k in report["config"]["planes"]["between"]:
        vals = [report["per_plane"][c]["deblur_per_k"].get(str(k), {}).get("psnr_deblur_quality") for c in cols]
        perk.add_row(str(k), f"{report['config']['alpha_deblur'][str(k)]:.3f}", *[_fmt(v) for v in vals])
    return [main, perk]


def _markdown(report: dict, figures: list[str]) -> str:
    cfg = report["config"]
    cols = [c["name"] for c in report["columns"]]
    lines = ["# blurlatent evaluation report", ""]
    lines.append(f"Store `{cfg['store']}`, channel `{cfg['channel']}`, {cfg['fields']} test "
                 f"{'whole fields' if cfg['whole'] else 'crops'} of {cfg['image_size'][1]}×{cfg['image_size'][0]} px; "
                 f"far plane {cfg['planes']['far']}, target plane {cfg['planes']['target']}, between {cfg['planes']['between']}.")
    lines.append("")
    lines.append("Checkpoints: " + "; ".join(f"`{c['name']}` = `{c['path']}` (epoch {c['epoch']}, sha256 {c['sha256'][:12]})" for c in report["checkpoints"]))
    lines.append("")
    if not cfg["fid"]["available"]:
        lines += [f"> {cfg['fid']['note']}", ""]
    if cfg.get("baseline_note"):
        lines += [f"> {cfg['baseline_note']}", ""]
    lines += ["## Table 1 and 2 — one column per model and baseline, best in **bold**", ""]
    lines.append("| group | metric | " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    last = None
    for group, label, cells in table_rows(report):
        lines.append(f"| {group if group != last else ''} | {label} | " + " | ".join(f"**{t}**" if b else t for t, b in cells) + " |")
        last = group
    lines += ["", "n/a: the figure does not apply (e.g. baselines have no reconstruction G(z_n)) or could not be computed.", ""]
    lines += ["## PSNR-deblur-quality vs k (Fig. 6), mean per image; pooled in brackets", ""]
    cols = _task_columns(report, "deblur")
    lines.append("| k | α | " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    for k in cfg["planes"]["between"]:
        cells = []
        for c in cols:
            r = report["per_plane"][c]["deblur_per_k"].get(str(k))
            cells.append("n/a" if not r else f"{_fmt(r['psnr_deblur_quality'])} ({_fmt(r['psnr_deblur_quality_pooled'])})")
        lines.append(f"| {k} | {cfg['alpha_deblur'][str(k)]:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "## PSNR-blur-quality per plane n, mean per image", ""]
    cols = _task_columns(report, "blur")
    lines.append("| n | α | " + " | ".join(cols) + " |")
    lines.append("|---|---|" + "---:|" * len(cols))
    for n in cfg["planes"]["between"]:
        cells = []
        for c in cols:
            r = report["per_plane"][c]["blur_per_plane"].get(str(n))
            cells.append("n/a" if not r else _fmt(r["psnr_blur_quality"]))
        lines.append(f"| {n} | {cfg['alpha_synth'][str(n)]:.3f} | " + " | ".join(cells) + " |")
    lines += ["", "## Definitions", "",
              "x_n: the real image of plane n (store uint8 / 255, in [0, 1]); z_n = E(x_n); G the decoder.",
              f"Blur synthesis, Eq. 2: z'_n = α_n z_16 + (1 − α_n) z_0 with α_n = (n − far)/(16 − far) for the planes between.",
              "Deblurring, Eq. 3: ẑ_16 = z_k/(1 − α) − α/(1 − α)·z_0 with α = (16 − k)/(16 − far), for every k between.",
              "PSNR 'pooled' is the paper's (torchmetrics PeakSignalNoiseRatio() with no data range): one figure over all "
              "images, MSE pooled over all pixels and range = max − min of the targets. 'mean per image' averages per-image "
              "PSNRs with range 1. Calibrated figures first fit a·output + b to the truth per image by least squares.", ""]
    for row in ROWS:
        lines.append(f"- **{row.label}** ({'higher' if row.higher_is_better else 'lower'} is better): {row.definition}.")
    lines += ["", "Baselines (fitted on the train split, per plane): x_n ≈ gain·Gaussian_σ(x_16) + offset; "
              "Richardson–Lucy and Wiener (scikit-image) deconvolve (x_k − offset)/gain with that Gaussian PSF, "
              "iterations/balance chosen on train. Fitted values:", ""]
    lines.append("| plane | σ (px) | gain | offset | RL iterations | Wiener balance |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for plane, f in cfg["baselines"].items():
        lines.append(f"| {plane} | {f['sigma']:.3f} | {f['gain']:.3f} | {f['offset']:.3f} | {f['rl_iterations']} | {f['wiener_balance']:.3g} |")
    lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    return "\n".join(lines)


def write_figures(folder: Path, report: dict, ex: _Examples, pca: _PcaKeeper, plan: PlanePlan, model_names: Sequence[str]) -> list[str]:
    """Write the PNG figures into ``folder``; returns their file names.

    transitions_<model>.png (Fig. 2/3), deblur_<model>.png (Fig. 7/8), deblur_baselines.png, pca_<model>.png
    (Fig. 5) and psnr_deblur_quality_vs_k.png (Fig. 6).
    """
    from . import figures as F

    figs: list[str] = []
    seq = list(plan.sequence)
    between = list(plan.between)
    # Two deblurring inputs as in Fig. 7: the middle plane and the one nearest focus (α 0.5 and 0.125 in the paper).
    ks = sorted({between[len(between) // 2], between[-1]}, key=between.index)
    real = ex.images.get("real", [])
    for name in model_names:
        recon, synth, deblur = (ex.images.get(f"{name}:{k}", []) for k in ("recon", "synth", "deblur"))
        rows, labels = [], []
        for i, field in enumerate(ex.names[: len(recon)]):
            rows += [list(real[i]), list(recon[i]), [recon[i][0], *synth[i], recon[i][-1]]]
            labels += [f"{field}\nreal x_n", "G(z_n)", "G(z'_n) Eq. 2"]
            if "gaussian" in ex.images:
                rows.append([real[i][0], *ex.images["gaussian"][i], real[i][-1]])
                labels.append("Gaussian baseline")
        if rows:
            path = F.save_grid(rows, folder / f"transitions_{_safe(name)}.png", row_labels=labels,
                               col_labels=[f"plane {p}" for p in seq], title=f"{name}: real vs synthesized defocus (Fig. 2)")
            figs.append(path.name)
        rows, labels = [], []
        for i, field in enumerate(ex.names[: len(recon)]):
            for k in ks:
                j = between.index(k)
                rows.append([recon[i][0], recon[i][seq.index(k)], deblur[i][j], recon[i][-1], real[i][-1]])
                labels.append(f"{field} k={k}")
        if rows:
            path = F.save_grid(rows, folder / f"deblur_{_safe(name)}.png", row_labels=labels,
                               col_labels=[f"G(z{plan.far})", "G(z_k)", "deblurred (Eq. 3)", f"G(z{plan.target})", f"truth x{plan.target}"],
                               title=f"{name}: deblurring (Fig. 7)")
            figs.append(path.name)
        points = pca.z.get(name)
        if points:
            stacked = np.stack(points)  # [F, P, D]
            proj, _, _ = pca_2d(stacked.reshape(-1, stacked.shape[-1]).astype(np.float64))
            path = F.save_pca_plot(proj.reshape(stacked.shape[0], stacked.shape[1], 2), [str(p) for p in seq],
                                   folder / f"pca_{_safe(name)}.png", title=f"{name}: PCA of latents, dashed z{plan.far}→z{plan.target}")
            figs.append(path.name)
    if "rl" in ex.images:
        rows, labels = [], []
        for i, field in enumerate(ex.names[: len(ex.images["rl"])]):
            for k in ks:
                j = between.index(k)
                rows.append([real[i][0], real[i][seq.index(k)], ex.images["rl"][i][j], ex.images["wiener"][i][j], real[i][-1]])
                labels.append(f"{field} k={k}")
        path = F.save_grid(rows, folder / "deblur_baselines.png", row_labels=labels,
                           col_labels=[f"x{plan.far}", "x_k", "Richardson–Lucy", "Wiener", f"truth x{plan.target}"],
                           title="classical deconvolution baselines")
        figs.append(path.name)
    series = {c["name"]: [report["per_plane"][c["name"]]["deblur_per_k"].get(str(k), {}).get("psnr_deblur_quality") for k in between]
              for c in report["columns"] if "deblur" in c["tasks"]}
    path = F.save_line_plot(between, series, folder / "psnr_deblur_quality_vs_k.png", xlabel="k (less-blurry input plane)",
                            ylabel="PSNR-deblur-quality (dB, mean per image)", title="Deblurring vs input plane (Fig. 6)")
    figs.append(path.name)
    return figs


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _write_report(out: Path, force: bool, report: dict, ex, pca, plan, model_names) -> None:
    """Write everything into a temp folder beside ``out``, then swap it into place."""
    out = out.resolve()
    tmp = make_temp_dir(out)
    try:
        figdir = tmp / "figures"
        figdir.mkdir()
        figures = [f"figures/{f}" for f in write_figures(figdir, report, ex, pca, plan, model_names)]
        report["figures"] = figures
        (tmp / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
        (tmp / "report.md").write_text(_markdown(report, figures))
        _check_out(out, force)  # the folder may have appeared while we computed
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
