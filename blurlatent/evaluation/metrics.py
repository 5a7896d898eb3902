"""Evaluation metrics: PSNR, SSIM, calibrated (structure-only) PSNR/SSIM, FFL, Fréchet distance/FID, LDS, APD.

Pure functions, always in (pred, target) order. Images are float arrays in [0, 1], one image ``[H, W]`` or a
batch ``[N, H, W]``; latents are arrays ``[..., C, h, w]`` (anything that flattens per code).

Two PSNRs, and the report says which is which:

- ``psnr`` / ``psnr_per_image``: the usual per-image PSNR with a fixed data range (1.0 for [0, 1] images),
  identical to ``skimage.metrics.peak_signal_noise_ratio``; a set is summarised by the mean of these.
- ``PooledPSNR`` / ``psnr_pooled``: what the paper's code reports (torchmetrics ``PeakSignalNoiseRatio()``
  with no data range): ONE figure over the whole set, 10·log10(range² / MSE) with the MSE pooled over every
  pixel of every image and range = max − min of all *targets* seen. Not the mean of per-image PSNRs.

FID needs pytorch-fid's Inception weights, which it would download on first use. Here nothing is ever
downloaded: ``find_fid_weights`` looks only at an explicit path and the torch hub cache, and
``inception_extractor`` loads that file itself; ``FidUnavailable`` carries the exact fix.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from blurlatent.errors import UsageError
from blurlatent.files.atomic import sha256_file

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
# torch hub names cached files <name>-<first 8 hex of sha256>.<ext>; we check the same prefix.
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
SSIM_WINDOW = 7  # structural_similarity's default window: images need at least this many pixels a side
EVAL_EXTRA = ("matplotlib", "focal_frequency_loss")  # the modules of pyproject's eval extra


def check_eval_extra(command: str) -> None:
    """UsageError, before any work, when the eval extra (the report's figures, FFL) is not installed."""
    missing = [name for name in EVAL_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{command} needs blurlatent's eval extra ({', '.join(missing)} missing): "
                         "pip install 'blurlatent[eval]'")


# --- PSNR ------------------------------------------------------------------------------------


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise UsageError(f"pred {pred.shape} and target {target.shape} differ in shape; compare images of one size")
    return pred, target


def psnr(pred, target, data_range: float = 1.0) -> float:
    """PSNR in dB of one image (or the whole array as one image): 10·log10(data_range² / MSE).

    Equal to ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=data_range)``;
    ``inf`` when the images are identical. Raises UsageError on a shape mismatch.
    """
    pred, target = _pair(pred, target)
    mse = float(np.mean((pred - target) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def psnr_per_image(pred, target, data_range: float = 1.0) -> np.ndarray:
    """float64 [N]: ``psnr`` of each image of two [N, H, W] (or [N, ...]) batches."""
    pred, target = _pair(pred, target)
    mse = np.mean((pred - target).reshape(len(pred), -1) ** 2, axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


class PooledPSNR:
    """The paper's PSNR (torchmetrics ``PeakSignalNoiseRatio()`` with ``data_range=None``), accumulated.

    ``update`` with any number of batches, then ``compute``: 10·log10((max_t − min_t)² / (SSE / n)) with
    SSE and n summed over every pixel seen and min_t/max_t over every target seen. Batching does not
    change the result.
    """

    def __init__(self):
        self.sse = 0.0
        self.count = 0
        self.min_target = np.inf
        self.max_target = -np.inf

    def update(self, pred, target) -> None:
        pred, target = _pair(pred, target)
        self.sse += float(np.sum((pred - target) ** 2))
        self.count += pred.size
        if target.size:
            self.min_target = min(self.min_target, float(target.min()))
            self.max_target = max(self.max_target, float(target.max()))

    def compute(self) -> float | None:
        """The pooled PSNR in dB; None before any update, ``inf`` when every pixel matched."""
        if self.count == 0:
            return None
        if self.sse == 0.0:
            return float("inf")
        data_range = self.max_target - self.min_target
        return float(10.0 * np.log10(data_range**2 / (self.sse / self.count)))


def psnr_pooled(pred, target) -> float | None:
    """One-shot ``PooledPSNR`` over two equal-shape arrays (a whole set of images)."""
    acc = PooledPSNR()
    acc.update(pred, target)
    return acc.compute()


# --- SSIM and calibrated figures ----------------------------------------------------------------


def ssim(pred, target, data_range: float = 1.0) -> float:
    """SSIM of two [H, W] images by ``skimage.metrics.structural_similarity`` (7×7 window, its defaults).

    Raises UsageError when an image is smaller than 7×7 (scikit-image's window) or the shapes differ.
    """
    pred, target = _pair(pred, target)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise UsageError(f"pred and target are {pred.shape[-2]}x{pred.shape[-1]} px; SSIM needs at least "
                         f"{SSIM_WINDOW}x{SSIM_WINDOW} (scikit-image's window)")
    return float(structural_similarity(target, pred, data_range=data_range))


def ssim_per_image(pred, target, data_range: float = 1.0) -> np.ndarray:
    """float64 [N]: ``ssim`` of each image of two [N, H, W] batches."""
    pred, target = _pair(pred, target)
    return np.array([ssim(p, t, data_range) for p, t in zip(pred, target, strict=True)], dtype=np.float64)


def calibrate(pred, target) -> np.ndarray:
    """``a·pred + b`` with (a, b) the least-squares fit of the prediction to the truth, per image.

    [H, W] or [N, H, W] float64 out. Removes any global gain/offset error, so what is left to measure is
    structure: a model whose recovered peaks are too dim but in the right places scores well here. A flat
    prediction gets a = 0, b = mean(target).
    """
    pred, target = _pair(pred, target)
    single = pred.ndim == 2
    p = pred.reshape(1 if single else len(pred), -1)
    t = target.reshape(p.shape)
    pm, tm = p.mean(axis=1, keepdims=True), t.mean(axis=1, keepdims=True)
    var = np.sum((p - pm) ** 2, axis=1, keepdims=True)
    cov = np.sum((p - pm) * (t - tm), axis=1, keepdims=True)
    a = np.divide(cov, var, out=np.zeros_like(var), where=var > 0)
    fitted = a * (p - pm) + tm
    return fitted.reshape(pred.shape)


def psnr_calibrated(pred, target, data_range: float = 1.0) -> np.ndarray:
    """float64 [N] (or a 0-d array for one image): PSNR after ``calibrate``."""
    pred, target = _pair(pred, target)
    fitted = calibrate(pred, target)
    if pred.ndim == 2:
        return np.asarray(psnr(fitted, target, data_range))
    return psnr_per_image(fitted, target, data_range)


def ssim_calibrated(pred, target, data_range: float = 1.0) -> np.ndarray:
    """float64 [N] (or a 0-d array for one image): SSIM after ``calibrate``."""
    pred, target = _pair(pred, target)
    fitted = calibrate(pred, target)
    if pred.ndim == 2:
        return np.asarray(ssim(fitted, target, data_range))
    return ssim_per_image(fitted, target, data_range)


# --- focal frequency loss -------------------------------------------------------------------------


def ffl(pred, target) -> float:
    """Focal frequency loss (Jiang et al., the official ``focal_frequency_loss`` package, its defaults).

    ``pred``/``target``: [H, W], [N, H, W] or [N, C, H, W] arrays or tensors. With the defaults the
    spectrum weights are normalised per image, so the loss of a batch is the mean of per-image losses
    (for images of one size). Returns a float. Raises UsageError on a shape mismatch.
    """

    def as_nchw(x):
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float32)
        while x.ndim < 4:
            x = x.unsqueeze(0 if x.ndim < 3 else 1)
        return x

    p, t = as_nchw(pred), as_nchw(target)
    if p.shape != t.shape:
        raise UsageError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} differ in shape")
    from focal_frequency_loss import FocalFrequencyLoss  # the eval extra (check_eval_extra said so before any work)

    with torch.no_grad():
        return float(FocalFrequencyLoss()(p.cpu(), t.cpu()))


def ffl_per_image(pred, target) -> np.ndarray:
    """float64 [N]: ``ffl`` of each image of two [N, H, W] batches."""
    return np.array([ffl(p, t) for p, t in zip(pred, target, strict=True)], dtype=np.float64)


# --- latent geometry (Table 2) ----------------------------------------------------------------------


def _flat(z) -> np.ndarray:
    return np.asarray(z, dtype=np.float64)


def cosine_similarity(a, b, eps: float = 1e-8) -> np.ndarray:
    """Cosine similarity over the last axis (torch's convention: norms clamped at ``eps``)."""
    a, b = _flat(a), _flat(b)
    na = np.maximum(np.linalg.norm(a, axis=-1), eps)
    nb = np.maximum(np.linalg.norm(b, axis=-1), eps)
    return np.sum(a * b, axis=-1) / (na * nb)


def lds_per_field(z_interp, z_true) -> np.ndarray:
    """float64 [M]: Eq. 6's inner mean, (1/N) Σ_n cos_sim(z'_n, z_n), for each of M fields.

    ``z_interp``, ``z_true``: [M, N, ...] — the N interpolated codes z'_n (Eq. 2) and the encoder's codes
    z_n of the same planes; each code is flattened before the cosine. Endpoints (where z' = z by
    construction) should not be included: they would pull LDS towards 1.
    """
    zi, zt = _flat(z_interp), _flat(z_true)
    if zi.shape != zt.shape or zi.ndim < 3:
        raise UsageError(f"z_interp and z_true must be two [M, N, ...] arrays of one shape (LDS), "
                         f"got {zi.shape} and {zt.shape}")
    m, n = zi.shape[:2]
    return cosine_similarity(zi.reshape(m, n, -1), zt.reshape(m, n, -1)).mean(axis=1)


def lds(z_interp, z_true) -> float:
    """Linear Dependence Score (Eq. 6): mean over M fields and N planes of cos_sim(z'_n, z_n). 1 is linear."""
    return float(lds_per_field(z_interp, z_true).mean())


def apd_per_field(z_interp_seq, z_true_seq) -> np.ndarray:
    """float64 [M]: Eq. 7's inner mean, the mean over consecutive planes of |d(z_n, z_n+1) − d(z'_n, z'_n+1)|.

    ``z_interp_seq``, ``z_true_seq``: [M, P, ...], the whole plane sequence in blur order, endpoints
    included (z'_0 = z_0 and z'_P-1 = z_P-1), so there are P − 1 = N + 1 consecutive pairs, matching
    Eq. 7's 1/(N + 1). d is the mean squared difference of the flattened codes, as the paper's code does.
    """
    zi, zt = _flat(z_interp_seq), _flat(z_true_seq)
    if zi.shape != zt.shape or zi.ndim < 3 or zi.shape[1] < 2:
        raise UsageError(f"z_interp_seq and z_true_seq must be two [M, P>=2, ...] arrays of one shape (APD), "
                         f"got {zi.shape} and {zt.shape}")
    m, p = zi.shape[:2]
    zi, zt = zi.reshape(m, p, -1), zt.reshape(m, p, -1)
    d_true = np.mean((zt[:, 1:] - zt[:, :-1]) ** 2, axis=-1)
    d_interp = np.mean((zi[:, 1:] - zi[:, :-1]) ** 2, axis=-1)
    return np.abs(d_true - d_interp).mean(axis=1)


def apd(z_interp_seq, z_true_seq) -> float:
    """Average Pairwise Distance (Eq. 7): ``apd_per_field`` averaged over fields. 0 is evenly spaced."""
    return float(apd_per_field(z_interp_seq, z_true_seq).mean())


# --- Fréchet distance and FID ---------------------------------------------------------------------


def activation_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) of features [N, D], N >= 2, as pytorch-fid (unbiased covariance)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UsageError(f"features must be [N >= 2, D] to estimate a covariance, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in closed form:

        ||mu1 − mu2||² + Tr(sigma1 + sigma2 − 2 (sigma1 sigma2)^½)

    Tr((Σ1Σ2)^½) is computed as Σ sqrt(eig(Σ1^½ Σ2 Σ1^½)), a symmetric PSD matrix with the same
    eigenvalues as Σ1Σ2, so singular covariances (fewer images than feature dimensions, as in any small
    test set) give a finite real answer without pytorch-fid's ad-hoc diagonal offset.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise UsageError(f"mismatched statistics: means {mu1.shape}/{mu2.shape}, covariances {s1.shape}/{s2.shape}")
    root1 = _sqrt_psd(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    tr_covmean = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def fid_from_features(features_pred, features_target) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*activation_statistics(features_pred), *activation_statistics(features_target))


Extractor = Callable[[torch.Tensor], torch.Tensor]  # [B, 3, H, W] in [0, 1] -> [B, D]


def extract_features(images, extractor: Extractor, batch_size: int = 32, device="cpu") -> np.ndarray:
    """float64 [N, D]: ``extractor`` over grayscale images [N, H, W] (or [N, 1, H, W]) in [0, 1].

    Grayscale is replicated to 3 channels (pytorch-fid's Inception expects RGB in [0, 1]).
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[:, 0]
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[start : start + batch_size]).to(device)
            batch = batch.unsqueeze(1).expand(-1, 3, -1, -1)
            feats = extractor(batch)
            out.append(feats.reshape(len(batch), -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


class FidUnavailable(UsageError):
    """FID cannot be computed here; the message is the exact fix, shown instead of a number."""


def fid_fix_text(searched: list[Path]) -> str:
    """The one-line fix shown in place of an FID value, a message template naming ``fid_weights``
    (``FidUnavailable(text, "fid_weights")``); ``searched``: the paths that were tried."""
    hub = _hub_checkpoints()
    where = ", ".join(str(p) for p in searched) or str(hub / FID_WEIGHTS_NAME)
    return (
        f"FID unavailable: pytorch-fid's Inception weights {FID_WEIGHTS_NAME} were not found (looked at {where}) "
        f"and this tool never downloads. On a machine with internet run "
        f"`curl -L -o {FID_WEIGHTS_NAME} {FID_WEIGHTS_URL}`, "
        f"copy the file here, then either pass {{fid_weights=/path/to/{FID_WEIGHTS_NAME}}} or place it at "
        f"{hub / FID_WEIGHTS_NAME} (mkdir -p {hub})"
    )


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_fid_weights(path: str | Path | None = None) -> Path:
    """The Inception weights file: ``path`` if given, else the torch hub cache copy.

    Raises FidUnavailable (with the fix) when ``path`` is missing or neither place has the file. Never
    downloads.
    """
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        raise FidUnavailable(fid_fix_text([path]), "fid_weights")
    cached = _hub_checkpoints() / FID_WEIGHTS_NAME
    if cached.is_file():
        return cached
    raise FidUnavailable(fid_fix_text([cached]), "fid_weights")


def _check_sha256(path: Path) -> None:
    digest = sha256_file(path)
    if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
        raise FidUnavailable(
            f"FID unavailable: {path} is not pytorch-fid's {FID_WEIGHTS_NAME} (sha256 {digest[:8]}…, "
            f"expected {FID_WEIGHTS_SHA256_PREFIX}…); download it again from {FID_WEIGHTS_URL}; pass "
            "{fid_weights=PATH}", "fid_weights"
        )


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _offline_inception_loader(weights: Path):
    """pytorch-fid builds its Inception by calling ``load_state_dict_from_url``, which downloads when the
    file is not cached. It has no argument for a local file, so for the duration of the build we point
    that module-level name at a loader that reads ``weights`` and refuses any other URL."""
    # pytorch-fid imports torchvision (over a second): only a run that computes FID pays for it.
    from pytorch_fid import inception as fid_inception

    def load_local(url, *args, **kwargs):
        if not url.endswith(FID_WEIGHTS_NAME):
            raise FidUnavailable(f"FID unavailable: pytorch-fid asked for {url}, which is not available offline")
        return torch.load(weights, map_location="cpu", weights_only=True)

    with _PATCH_LOCK:
        original = fid_inception.load_state_dict_from_url
        fid_inception.load_state_dict_from_url = load_local
        try:
            yield
        finally:
            fid_inception.load_state_dict_from_url = original


def inception_extractor(weights: str | Path | None = None, device="cpu", check_hash: bool = True) -> Extractor:
    """pytorch-fid's InceptionV3 (2048-d pool features) loaded from a local file, as an ``Extractor``.

    Raises FidUnavailable (never downloads) when the file cannot be found, does not match, or fails to load.
    """
    path = find_fid_weights(weights)  # before importing pytorch-fid (3 s of torchvision) when there is nothing to load
    if check_hash:
        _check_sha256(path)
    try:  # the fid extra; torchvision behind it (see _offline_inception_loader), which fails to import beside a
        # torch build it was not made for (RuntimeError)
        from pytorch_fid.inception import InceptionV3
    except (ImportError, RuntimeError) as exc:
        why = f"{type(exc).__name__}: {str(exc)[:80]}".replace("{", "(").replace("}", ")")  # not template fields
        raise FidUnavailable(f"FID unavailable: pytorch-fid could not be imported ({why}); "
                             "pip install 'blurlatent[fid]'") from None

    try:
        with _offline_inception_loader(path):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).to(device).eval()
    except FidUnavailable:
        raise
    except Exception as exc:
        raise FidUnavailable(
            f"FID unavailable: {path} could not be loaded as pytorch-fid's Inception ({type(exc).__name__}: "
            f"{str(exc)[:120]}); download {FID_WEIGHTS_URL} again and pass {{fid_weights=PATH}}", "fid_weights"
        ) from None

    def extract(batch: torch.Tensor) -> torch.Tensor:
        return model(batch)[0].flatten(1)

    return extract

