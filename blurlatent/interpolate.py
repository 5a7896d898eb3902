"""Eq. 2 and Eq. 3 of the paper, α from focal planes, and whole-image inference.

Eq. 2 (blur synthesis):  z3' = α z1 + (1 − α) z2,   x1 the sharper image, x2 the blurrier.
Eq. 3 (deblurring):      z_sharp = z3' / (1 − α) − α / (1 − α) · z1,   z1 the blurriest, z3' the less blurry.

The public API works on numpy arrays of any size::

    model = load_model("runs/weak/best.pt")                  # Autoencoder, eval mode, on the best device
    levels = blur(model, sharp, blurry, [0.25, 0.5, 0.75])  # [3, H, W], sharp.dtype
    focused = deblur(model, blurriest, less_blurry, 0.5)     # [H, W]

How a whole image goes through a fully convolutional model trained on 128x128 crops:

* Each input is scaled to [0, 1] with the method the checkpoint's training data used
  (``config["data"]["normalize"]``, per-image ``minmax`` by default), reflect-padded at the bottom and
  right to a multiple of ``model.multiple`` (2**depth), and cropped back at the end.
* Large images are cut into overlapping tiles whose origins sit on the 2**depth grid, so each tile's
  stride-2 grids match the whole image's. In eval mode BatchNorm is a per-channel affine map, so a
  tile's output equals the whole image's wherever the receptive field stays inside the tile; the blend
  window is zero within ``receptive_radius(model)`` of an inner tile edge and ramps up smoothly (a
  raised cosine) after it, so tiled and whole inference agree to float rounding. Both inputs are
  encoded tile by tile, their latents combined (Eq. 2/3) per tile, then decoded.
* The output is mapped back to the input's intensity scale (``intensity=``): ``conserve`` (default)
  scales it so its total signal above background equals the reference input's — defocus spreads light
  but does not remove it (on real BBBC006 the in-focus plane's total above background matches a
  strongly defocused plane's within 5 %), so a deblurred nucleus gets a *higher* peak than the blurry
  input, which a range mapping cannot give; ``minmax`` maps [0, 1] back to the range the reference
  input was normalized with ([min, max], or its percentiles for ``percentile`` checkpoints), so a
  deblurred peak is capped at the blurry image's maximum.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import UsageError

log = logging.getLogger(__name__)

INTENSITY_MODES = ("conserve", "minmax")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
NORMALIZATIONS = ("minmax", "percentile")
# Beyond this many (padded) pixels an image is tiled by default: one 2048x2048 image through the
# paper-size model holds ~1 GiB per full-resolution 64-channel activation.
MAX_WHOLE_PIXELS = 2048 * 2048
DEFAULT_TILE = 512
# Deblurring multiplies latent differences by 1/(1 − α); past this the result is mostly amplified error.
MAX_GAIN = 8.0
# Background = the 1st percentile of the 15x15-box-smoothed image. Smoothing first keeps camera noise
# (which the autoencoder's smooth output lacks) from biasing it low: on real BBBC006 w1 files (noise
# sigma 3-8 counts) the raw 1st percentile sits 2-5 counts under the 15x15 one, which moves within
# 0.4 counts from 5x5 to 31x31 windows; 0.4 counts over 696x520 pixels is ~3 % of a field's signal.
BACKGROUND_PERCENTILE = 1.0
BACKGROUND_SMOOTH = 15


def interpolate_latents(z_sharper, z_blurrier, alpha: float):
    """Eq. 2: α·z_sharper + (1 − α)·z_blurrier. α=1 gives the sharper code, α=0 the blurrier."""
    return alpha * z_sharper + (1.0 - alpha) * z_blurrier


def extrapolate_sharp(z_blurriest, z_less_blurry, alpha: float):
    """Eq. 3: z_less_blurry/(1 − α) − α/(1 − α)·z_blurriest, the inverse of Eq. 2 for the sharp end."""
    if not 0.0 <= alpha < 1.0:
        raise UsageError(f"alpha {alpha} is outside [0, 1): deblurring needs 0 <= alpha < 1")
    return z_less_blurry / (1.0 - alpha) - (alpha / (1.0 - alpha)) * z_blurriest


def alpha_from_planes(blurriest: float, less_blurry: float, target: float) -> float:
    """α for Eq. 2/3 from focal positions: (target − less_blurry) / (target − blurriest).

    Planes 0 and 8 toward 16 give α = 0.5; planes 32 and 24 toward 16 (the other side of focus) too.
    Raises UsageError when the planes are not ordered blurriest → less blurry → target on one side.
    """
    span = target - blurriest
    if span == 0:
        raise UsageError(f"planes {blurriest} and target {target} coincide; the blurriest plane must differ from the target")
    alpha = (target - less_blurry) / span
    if not 0.0 <= alpha < 1.0:
        raise UsageError(
            f"planes {blurriest}, {less_blurry} do not lead to target {target}: the less-blurry plane must lie "
            f"between the blurriest plane and the target (alpha would be {alpha:.3g})"
        )
    return alpha


def steps_to_alphas(steps: int) -> list[float]:
    """``steps`` evenly spaced α strictly inside (0, 1): 7 → 1/8, 2/8, …, 7/8 (the paper's Fig. 2)."""
    if steps < 1:
        raise UsageError(f"--steps {steps}: give at least 1 level")
    return [k / (steps + 1) for k in range(1, steps + 1)]


def check_blur_alpha(alpha: float, extrapolate: bool = False) -> float:
    """α for Eq. 2 as a float; outside [0, 1] (extrapolation past an input) only with ``extrapolate``."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise UsageError(f"alpha {alpha} is not a finite number")
    if not extrapolate and not 0.0 <= alpha <= 1.0:
        raise UsageError(f"alpha {alpha} is outside [0, 1], which extrapolates past an input; pass --extrapolate (extrapolate=True) to allow it")
    return alpha


def check_deblur_alpha(alpha: float, warn: bool = True) -> float:
    """α for Eq. 3 as a float: 0 <= α < 1, else UsageError; logs a warning (``warn``) when 1/(1 − α) > 8."""
    alpha = float(alpha)
    if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
        raise UsageError(f"alpha {alpha} is outside [0, 1): deblurring needs 0 <= alpha < 1 (alpha = (target - less_blurry) / (target - blurriest))")
    if warn and 1.0 / (1.0 - alpha) > MAX_GAIN:
        log.warning(
            "alpha %.3g amplifies latent differences %.1fx (1/(1 - alpha) > %g): expect artefacts; "
            "use a less-blurry image closer to the blurriest one", alpha, 1.0 / (1.0 - alpha), MAX_GAIN,
        )
    return alpha


# --- padding and tiling -----------------------------------------------------------------------


def pad_to_multiple(image: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the last two axes at the bottom/right up to multiples of ``multiple``.

    Returns (padded array, original (H, W)); ``crop_to(padded, hw)`` undoes it exactly.
    """
    h, w = image.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image, (h, w)
    # numpy reflects repeatedly when the pad exceeds the image (torch's reflect refuses).
    widths = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(image, widths, mode="reflect"), (h, w)


def crop_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The top-left (H, W) of the last two axes."""
    return image[..., : hw[0], : hw[1]]


def receptive_radius(model) -> int:
    """An output pixel depends only on inputs closer than this: 2·2**depth px (``2 * model.multiple``).

    The encoder's 3x3 stride-2 convs reach 2**depth − 1 px, the decoder's transposed convs about as far
    again; gradients of the autoencoder give exactly 2·2**depth − 1 for depth 3 and 5 (a test checks it).
    """
    return 2 * model.multiple


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Origins of tiles of size ``tile`` covering ``length``, on the ``multiple`` grid, overlapping by ≥ ``overlap``.

    ``length``, ``tile`` and ``overlap`` are multiples of ``multiple``; spacing is as even as the grid allows.
    """
    if length <= tile:
        return [0]
    span, stride = (length - tile) // multiple, (tile - overlap) // multiple
    if stride < 1:
        raise UsageError(f"tile {tile} is too small: it must exceed the overlap {overlap} by at least {multiple}")
    gaps = math.ceil(span / stride)
    return [round(k * span / gaps) * multiple for k in range(gaps + 1)]


def _edge_weights(start: int, size: int, length: int, margin: int, ramp: int) -> np.ndarray:
    """1-D blend weights: 0 within ``margin`` of an inner tile edge, raised cosine over ``ramp``, then 1."""
    d = np.arange(size, dtype=np.float64)
    w = np.ones(size)
    u = lambda dist: np.clip((dist - margin) / ramp, 0.0, 1.0)  # noqa: E731
    if start > 0:
        w = np.minimum(w, 0.5 - 0.5 * np.cos(np.pi * u(d)))
    if start + size < length:
        w = np.minimum(w, 0.5 - 0.5 * np.cos(np.pi * u(size - 1 - d)))
    return w


def plan_tiles(shape: tuple[int, int], multiple: int, radius: int, tile: int | None) -> list[tuple[slice, slice, np.ndarray | None]]:
    """Tiles for a padded (H, W): a list of (rows, cols, weight [h, w] or None for the single whole tile).

    ``tile=None`` runs whole unless H·W > MAX_WHOLE_PIXELS (then tiles of DEFAULT_TILE); ``0`` forces
    whole; ``N`` uses tiles of N px (rounded up to ``multiple``) when the image is larger than that.
    """
    h, w = shape
    if tile is None:
        tile = 0 if h * w <= MAX_WHOLE_PIXELS else DEFAULT_TILE
    if tile < 0:
        raise UsageError(f"--tile {tile}: give a tile size in pixels, or 0 for whole-image inference")
    if tile == 0 or (h <= tile and w <= tile):
        return [(slice(0, h), slice(0, w), None)]
    tile = -(-tile // multiple) * multiple
    margin, ramp = radius, multiple
    overlap = 2 * margin + ramp  # at any pixel of an overlap one of the two tiles is past its margin
    if tile < overlap + multiple:
        raise UsageError(f"--tile {tile} is too small for this model: use at least {overlap + multiple} (the receptive field needs a {margin}-px margin)")
    th, tw = min(tile, h), min(tile, w)
    plan = []
    for y in tile_starts(h, th, overlap, multiple):
        wy = _edge_weights(y, th, h, margin, ramp)
        for x in tile_starts(w, tw, overlap, multiple):
            wx = _edge_weights(x, tw, w, margin, ramp)
            plan.append((slice(y, y + th), slice(x, x + tw), np.outer(wy, wx).astype(np.float32)))
    return plan


# --- the model --------------------------------------------------------------------------------


def fuse_batchnorm(model):
    """Fold every eval-mode BatchNorm2d into the convolution before it, in place; returns ``model``.

    In eval mode BatchNorm is y = (x − mean)·γ/√(var + ε) + β per channel, so it can be folded into the
    preceding conv's weights and bias (output channels: dim 0 for Conv2d, dim 1 for ConvTranspose2d)
    and replaced by Identity; LeakyReLU then runs in place. Same outputs to float rounding, one to two
    fewer passes over each activation: 28 % less time per 696x520 deblur on this CPU (1.07 s vs
    1.48 s, interleaved runs on a shared 2-core AMD EPYC). For inference
    only: the state_dict loses its BatchNorm entries, so do not train or re-save a fused model.
    """
    import torch
    from torch import nn

    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.children())
        for i in range(len(children) - 1):
            conv, bn = children[i], children[i + 1]
            if not (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d)):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (1, -1, 1, 1) if isinstance(conv, nn.ConvTranspose2d) else (-1, 1, 1, 1)
            with torch.no_grad():
                conv.weight.mul_(scale.view(shape))
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            seq[i + 1] = nn.Identity()
        for child in seq.children():
            if isinstance(child, nn.LeakyReLU):
                child.inplace = True
    model.fused = True
    return model


def load_model(ckpt_path, device: str = "auto", fuse: bool = True):
    """The checkpoint's Autoencoder in eval mode on ``device`` (auto: CUDA, then MPS, then CPU).

    The training data's normalization (``config["data"]["normalize"]``, default ``minmax``) is kept as
    ``model.normalize``; ``model.source`` is the checkpoint path. ``fuse`` folds BatchNorm into the
    convolutions (``fuse_batchnorm``: faster, inference only; pass False to fine-tune the model).
    Raises UsageError for a missing, corrupt or foreign checkpoint, an unknown normalization, or a
    device that does not exist.
    """
    import torch

    from .checkpoint import build_model, load_checkpoint
    from .device import assign_device

    dev = assign_device(device)
    ckpt = load_checkpoint(ckpt_path, map_location="cpu")
    model = build_model(ckpt, str(ckpt_path))
    data = ckpt["config"].get("data") or {}
    normalize = data.get("normalize", "minmax") if isinstance(data, dict) else "minmax"
    if normalize not in NORMALIZATIONS:
        raise UsageError(f"{ckpt_path}: unknown config.data.normalize {normalize!r}; expected one of {', '.join(NORMALIZATIONS)}")
    model = model.eval()
    if fuse:
        fuse_batchnorm(model)
    # channels_last lets oneDNN (CPU) and cuDNN pick their NHWC kernels: 1.25x on this CPU once fused.
    model = model.to(dev, memory_format=torch.channels_last)
    model.normalize = normalize
    model.source = str(ckpt_path)
    return model


def _device(model):
    return next(model.parameters()).device


def _autocast(device, precision: str):
    """The autocast context for ``precision``; ``auto`` is fp32 on every device.

    Measured on the paper-size model (random weights, BatchNorm calibrated), 696x520 deblur, against
    fp32 on the [0, 1] scale: bf16 autocast is off by up to 0.05 and fp16 by 0.009 at α = 0.5 (0.085
    and 0.014 at α = 0.75), since Eq. 3 multiplies code differences by 1/(1 − α); on this AVX2 CPU
    (no AVX512-BF16/AMX) bf16 and fp16 also ran 13x slower. So reduced precision is opt-in (``bf16``, ``fp16``:
    autocast on CUDA or CPU, latents always combined in fp32) and ``auto`` never picks it. On CUDA,
    fp32 convolutions follow torch's TF32 setting (cuDNN allows TF32 by default).
    """
    import contextlib

    import torch

    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision in ("auto", "fp32"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def infer_unit(
    model,
    first: np.ndarray,
    second: np.ndarray,
    alphas: Sequence[float],
    combine: Callable,
    *,
    tile: int | None = None,
    precision: str = "auto",
    batch_size: int = 4,
) -> np.ndarray:
    """G(combine(E(first), E(second), α)) for each α, on [0, 1] images of any size.

    first, second: float32 [N, H, W] (N image pairs) in [0, 1]. Returns float32 [N, K, H, W] in [0, 1]
    for K = len(alphas). Latents are combined in float32 even under bf16 autocast. ``batch_size``
    bounds how many images go through the decoder at once (memory). Raises UsageError on a bad tile.
    """
    import torch

    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"inputs must be two [N, H, W] arrays of one shape, got {first.shape} and {second.shape}")
    device = _device(model)
    n, k = first.shape[0], len(alphas)
    pair, hw = pad_to_multiple(np.stack([first, second], axis=1).astype(np.float32, copy=False), model.multiple)
    plan = plan_tiles(pair.shape[-2:], model.multiple, receptive_radius(model), tile)
    out = np.zeros((n, k) + pair.shape[-2:], dtype=np.float32)
    wsum = np.zeros(pair.shape[-2:], dtype=np.float32) if plan[0][2] is not None else None
    step = max(1, int(batch_size))
    with torch.inference_mode():
        for rows, cols, weight in plan:
            piece = np.ascontiguousarray(pair[:, :, rows, cols])  # [N, 2, h, w]
            x = torch.from_numpy(piece).to(device).reshape(2 * n, 1, *piece.shape[-2:])
            x = x.contiguous(memory_format=torch.channels_last)
            zs = []
            with _autocast(device, precision):
                for i in range(0, 2 * n, step):
                    zs.append(model.encode(x[i : i + step]).float())
            z = torch.cat(zs).reshape(n, 2, *zs[0].shape[1:])
            codes = torch.stack([combine(z[:, 0], z[:, 1], a) for a in alphas], dim=1)  # [N, K, C, h', w']
            codes = codes.reshape(n * k, *codes.shape[2:]).contiguous(memory_format=torch.channels_last)
            ys = []
            with _autocast(device, precision):
                for i in range(0, n * k, step):
                    ys.append(model.decode(codes[i : i + step]).float().cpu())
            y = torch.cat(ys).reshape(n, k, *piece.shape[-2:]).numpy()
            if weight is None:
                out[:, :, rows, cols] = y
            else:
                out[:, :, rows, cols] += y * weight
                wsum[rows, cols] += weight
    if wsum is not None:
        out /= wsum
    return crop_to(out, hw)


# --- intensity scales -------------------------------------------------------------------------


def background(image: np.ndarray) -> float:
    """Background level: the BACKGROUND_PERCENTILE-th percentile of the image smoothed by a 15x15 box."""
    from scipy.ndimage import uniform_filter

    smooth = uniform_filter(np.asarray(image, dtype=np.float64), size=BACKGROUND_SMOOTH, mode="reflect")
    return float(np.percentile(smooth, BACKGROUND_PERCENTILE))


def total_above_background(image: np.ndarray) -> float:
    """Σ (image − background(image)) in the image's own units: the light that defocus conserves."""
    image = np.asarray(image, dtype=np.float64)
    return float((image - background(image)).sum())


class _Scale:
    """One input's intensity description: its [0, 1] mapping, range, background and total."""

    def __init__(self, image: np.ndarray, normalize: str, need_total: bool):
        from .intensity import intensity_range

        self.lo, self.hi = intensity_range(image, normalize)
        self.bg = background(image) if need_total else 0.0
        self.total = float((np.asarray(image, dtype=np.float64) - self.bg).sum()) if need_total else 0.0

    @staticmethod
    def mix(a: "_Scale", wa: float, b: "_Scale", wb: float) -> "_Scale":
        s = object.__new__(_Scale)
        for name in ("lo", "hi", "bg", "total"):
            setattr(s, name, wa * getattr(a, name) + wb * getattr(b, name))
        return s


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        clipped = np.count_nonzero((values < info.min - 0.5) | (values > info.max + 0.5))
        if clipped > 0.001 * values.size:
            log.warning("%d pixels (%.2f %%) fell outside the %s range and were clipped; pass out_dtype=float32 (--out-dtype float32) to keep them",
                        clipped, 100.0 * clipped / values.size, dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def to_input_scale(unit: np.ndarray, ref: _Scale, intensity: str, dtype) -> np.ndarray:
    """Map one [0, 1] output [H, W] to the reference input's scale (see the module docstring)."""
    unit = unit.astype(np.float64)
    if intensity == "conserve":
        bg_out = background(unit)
        signal = float((unit - bg_out).sum())
        if ref.total > 0 and signal > 1e-12 * unit.size:
            return _to_dtype(ref.bg + (unit - bg_out) * (ref.total / signal), dtype)
        log.warning("no signal above background to conserve (input total %.3g, output %.3g): using the minmax scale", ref.total, signal)
    return _to_dtype(unit * (ref.hi - ref.lo) + ref.lo, dtype)


def _check_inputs(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    from .imageio import check_grayscale

    for arr, name in zip((a, b), names):
        if not isinstance(arr, np.ndarray):
            raise UsageError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if np.squeeze(arr).ndim != 2:
            raise UsageError(f"{name}: image has shape {tuple(arr.shape)}, expected one grayscale plane [H, W]")
        check_grayscale(arr, name)
    if np.squeeze(a).shape != np.squeeze(b).shape:
        raise UsageError(f"{names[0]} is {np.squeeze(a).shape} but {names[1]} is {np.squeeze(b).shape}: pass two images of one field and size")


def _run_pairs(model, firsts, seconds, alphas, combine, mix, *, intensity, tile, precision, batch_size, out_dtype, names):
    """Shared body of blur/deblur for N pairs of one shape: [N, K, H, W] in the inputs' scale.

    ``mix(scale_a, scale_b, alpha)`` gives the reference scale as (a, wa, b, wb); None means "the second input".
    """
    from .intensity import to_unit

    if intensity not in INTENSITY_MODES:
        raise UsageError(f"intensity {intensity!r}: use one of {', '.join(INTENSITY_MODES)}")
    for a, b in zip(firsts, seconds):
        _check_inputs(a, b, names)
    firsts, seconds = [np.squeeze(a) for a in firsts], [np.squeeze(b) for b in seconds]
    if len({a.shape for a in firsts}) > 1:
        raise ValueError("a batch of pairs must share one image shape")
    normalize = getattr(model, "normalize", "minmax")
    need_total = intensity == "conserve"
    sa = [_Scale(a, normalize, need_total) for a in firsts]
    sb = [_Scale(b, normalize, need_total) for b in seconds]
    ua = np.stack([to_unit(a, s.lo, s.hi) for a, s in zip(firsts, sa)])
    ub = np.stack([to_unit(b, s.lo, s.hi) for b, s in zip(seconds, sb)])
    unit = infer_unit(model, ua, ub, alphas, combine, tile=tile, precision=precision, batch_size=batch_size)
    results = []
    for i, (a, b) in enumerate(zip(firsts, seconds)):
        dtype = np.dtype(out_dtype) if out_dtype is not None else np.result_type(a.dtype, b.dtype)
        refs = [sb[i] if mix is None else _Scale.mix(*mix(sa[i], sb[i], al)) for al in alphas]
        results.append(np.stack([to_input_scale(u, ref, intensity, dtype) for u, ref in zip(unit[i], refs)]))
    return np.stack(results)


def _blur_mix(sa, sb, alpha):
    return sa, alpha, sb, 1.0 - alpha


def blur(
    model,
    sharp: np.ndarray,
    blurry: np.ndarray,
    alpha: float | Sequence[float],
    *,
    extrapolate: bool = False,
    intensity: str = "conserve",
    tile: int | None = None,
    precision: str = "auto",
    batch_size: int = 4,
    out_dtype=None,
) -> np.ndarray:
    """Synthesize defocus blur between two planes of one field (Eq. 2): G(α E(sharp) + (1 − α) E(blurry)).

    sharp, blurry: 2-D grayscale arrays of one shape (uint8, uint16 or float), any size. α = 1 gives the
    sharp image's reconstruction, α = 0 the blurry one's; a list of α gives several levels at once.
    Here α weighs the sharp image (the paper's Fig. 2); in ``deblur`` it weighs the blurriest, so blur
    level a is undone by deblur α = 1 − a.
    Returns [H, W] (scalar α) or [K, H, W] (K levels) in the inputs' dtype (``out_dtype`` to change it)
    and intensity scale: ``conserve`` keeps the total signal above background at the α-weighted mean of
    the inputs' totals, ``minmax`` maps [0, 1] to the α-weighted mean of their normalization ranges.
    ``tile``/``precision``/``batch_size``: see ``plan_tiles`` and ``infer_unit``.
    Raises UsageError for α outside [0, 1] without ``extrapolate``, non-2-D or mismatched inputs.
    """
    scalar = np.ndim(alpha) == 0
    alphas = [check_blur_alpha(a, extrapolate) for a in np.atleast_1d(alpha).tolist()]
    if not alphas:
        raise UsageError("give at least one alpha")
    out = _run_pairs(
        model, [sharp], [blurry], alphas, interpolate_latents, _blur_mix,
        intensity=intensity, tile=tile, precision=precision, batch_size=batch_size, out_dtype=out_dtype,
        names=("sharp", "blurry"),
    )[0]
    return out[0] if scalar else out


def deblur(
    model,
    blurriest: np.ndarray,
    less_blurry: np.ndarray,
    alpha: float | Sequence[float],
    *,
    intensity: str = "conserve",
    tile: int | None = None,
    precision: str = "auto",
    batch_size: int = 4,
    out_dtype=None,
) -> np.ndarray:
    """Recover the in-focus image from two defocused planes (Eq. 3).

    z_sharp = E(less_blurry)/(1 − α) − α/(1 − α)·E(blurriest); α = alpha_from_planes(blurriest plane,
    less-blurry plane, target plane), e.g. planes 0 and 8 toward focus 16 give 0.5.
    blurriest, less_blurry: 2-D grayscale arrays of one shape, any size. Returns [H, W] (scalar α) or
    [K, H, W] in the inputs' dtype (``out_dtype`` to change it) on the less-blurry input's scale:
    ``conserve`` (default) gives the output the less-blurry input's total signal above background
    (light is conserved through focus, so the sharp peaks rise above the blurry maximum); ``minmax``
    maps [0, 1] to the less-blurry input's normalization range ([min, max] for minmax checkpoints).
    Raises UsageError for α ≥ 1 or α < 0, non-2-D or mismatched inputs; warns when 1/(1 − α) > 8.
    """
    scalar = np.ndim(alpha) == 0
    alphas = [check_deblur_alpha(a) for a in np.atleast_1d(alpha).tolist()]
    if not alphas:
        raise UsageError("give at least one alpha")
    out = _run_pairs(
        model, [blurriest], [less_blurry], alphas, extrapolate_sharp, None,
        intensity=intensity, tile=tile, precision=precision, batch_size=batch_size, out_dtype=out_dtype,
        names=("blurriest", "less_blurry"),
    )[0]
    return out[0] if scalar else out


# --- files and folders (what the CLI calls) ---------------------------------------------------


def read_pair(path_a, path_b) -> tuple[np.ndarray, np.ndarray]:
    """Read two grayscale images of one shape; UsageError names the file at fault."""
    from .imageio import read_image

    a, b = read_image(path_a), read_image(path_b)
    if a.shape != b.shape:
        raise UsageError(f"{path_b}: image is {b.shape[1]}x{b.shape[0]} but {path_a} is {a.shape[1]}x{a.shape[0]}; pass two planes of one field")
    return a, b


def level_paths(out, alphas: Sequence[float]) -> list[Path]:
    """Where K levels go: one (multi-page) TIFF, or numbered PNGs ``stem_a0.250.png`` for a .png with K > 1."""
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff", ".png"):
        raise UsageError(f"{out}: output must end in .tif, .tiff or .png")
    if out.suffix.lower() == ".png" and len(alphas) > 1:
        return [out.with_name(f"{out.stem}_a{a:.3f}.png") for a in alphas]
    return [out]


def write_levels(out, levels: np.ndarray, alphas: Sequence[float], force: bool = False) -> list[Path]:
    """Write [K, H, W] levels as ``level_paths`` says (K pages in one TIFF); returns the paths written."""
    from .files import check_writable
    from .imageio import write_image

    paths = level_paths(out, alphas)
    for p in paths:
        check_writable(p, force)
    if len(paths) == 1:
        write_image(paths[0], levels[0] if len(levels) == 1 else levels, force=force)
    else:
        for p, level in zip(paths, levels):
            write_image(p, level, force=force)
    return paths


def _image_files(folder: Path) -> list[Path]:
    from .imageio import IMAGE_SUFFIXES

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: folder not found; pass an existing folder of .tif/.png images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise UsageError(f"{folder}: holds no .tif/.tiff/.png images")
    return files


def _field_name(path: Path) -> str:
    from .bbbc006 import parse_bbbc_name

    key = parse_bbbc_name(path.name)
    return key.name if key is not None else path.stem


def pair_folders(sharp_dir, blurry_dir) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """Pair the images of two folders by field: BBBC006 names by (well, site, channel), whatever the
    UUID; other files by identical file name.

    Returns (pairs as (name, sharp_path, blurry_path) sorted by name, files left without a partner).
    Raises UsageError when a folder is missing or empty, a field appears twice, or nothing pairs.
    """
    def index(folder):
        found: dict[str, Path] = {}
        for p in _image_files(folder):
            name = _field_name(p)
            if name in found:
                raise UsageError(f"{p}: field {name} also appears as {found[name].name}; keep one file per field in {folder}")
            found[name] = p
        return found

    sharp, blurry = index(sharp_dir), index(blurry_dir)
    names = sorted(set(sharp) & set(blurry))
    if not names:
        raise UsageError(f"no image in {sharp_dir} has a partner in {blurry_dir}: name files identically or keep BBBC006 names (well, site, channel)")
    unpaired = sorted([sharp[n] for n in set(sharp) - set(names)] + [blurry[n] for n in set(blurry) - set(names)])
    return [(n, sharp[n], blurry[n]) for n in names], unpaired


def folder_outputs(out_dir, pairs, alphas: Sequence[float], suffix: str = ".tif") -> list[list[Path]]:
    """Per pair, one file per level: ``OUT/{field}_a{alpha:.3f}.tif``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder; folder mode writes into a folder")
    return [[out_dir / f"{name}_a{a:.3f}{suffix}" for a in alphas] for name, _, _ in pairs]


def blur_folder(
    model,
    pairs: Sequence[tuple[str, Path, Path]],
    alphas: Sequence[float],
    out_dir,
    *,
    force: bool = False,
    extrapolate: bool = False,
    intensity: str = "conserve",
    tile: int | None = None,
    precision: str = "auto",
    batch_size: int = 4,
    out_dtype=None,
    progress: Callable[[int], None] | None = None,
) -> list[Path]:
    """``blur`` every pair from ``pair_folders`` at every α, writing ``folder_outputs``; returns the paths.

    Every output path is checked before anything is written, so an existing file (without ``force``)
    stops the run with nothing written. ``progress(n)`` is called after each pair.
    """
    from .files import check_writable
    from .imageio import write_image

    alphas = [check_blur_alpha(a, extrapolate) for a in alphas]
    outputs = folder_outputs(out_dir, pairs, alphas)
    for paths in outputs:
        for p in paths:
            check_writable(p, force)
    written = []
    todo = list(zip(pairs, outputs))
    while todo:
        # A batch: up to batch_size pairs of one shape, run through the model together.
        (first, paths0), todo = todo[0], todo[1:]
        batch = [(read_pair(first[1], first[2]), paths0)]
        while todo and len(batch) < max(1, batch_size):
            (name, sp, bp), paths = todo[0]
            images = read_pair(sp, bp)
            if images[0].shape != batch[0][0][0].shape:
                break
            batch.append((images, paths))
            todo = todo[1:]
        levels = _run_pairs(
            model, [im[0] for im, _ in batch], [im[1] for im, _ in batch], alphas, interpolate_latents, _blur_mix,
            intensity=intensity, tile=tile, precision=precision, batch_size=batch_size, out_dtype=out_dtype,
            names=(str(first[1]), str(first[2])),
        )
        for (_, paths), stack in zip(batch, levels):
            for p, level in zip(paths, stack):
                write_image(p, level, force=force)
                written.append(p)
        if progress is not None:
            progress(len(batch))
    return written


def planes_from_paths(path_a, path_b) -> tuple[int, int] | None:
    """Focal planes of two BBBC006 files inside ``..._z_XX`` folders, or None when either is not."""
    from .bbbc006 import plane_from_path

    pa, pb = plane_from_path(path_a), plane_from_path(path_b)
    return None if pa is None or pb is None else (pa, pb)
