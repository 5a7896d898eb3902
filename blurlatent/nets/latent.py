"""The paper's interpolation rule in latent space, and α — plus two helpers for latents that are lists.

Eq. 2 (blur synthesis):  z3' = α z1 + (1 − α) z2,   x1 the sharper image, x2 the blurrier.
Eq. 3 (deblurring):      z_sharp = z3' / (1 − α) − α / (1 − α) · z1,   z1 the blurriest, z3' the less blurry.

Both work on numpy arrays and torch tensors alike, and on latents that are lists (or tuples) of them — the
multiscale net's code, one array per resolution: the rule applies to every scale with the same α, and a
list comes back.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, SupportsFloat

import numpy as np

from blurlatent.errors import Message, UsageError

if TYPE_CHECKING:  # the latents may be torch tensors; this module itself runs without torch
    import torch

log = logging.getLogger(__name__)

# Deblurring multiplies latent differences by 1/(1 − α); past this the result is mostly amplified error.
MAX_GAIN = 8.0


def interpolate_latents(z_sharper, z_blurrier, alpha: float | torch.Tensor):
    """Eq. 2: α·z_sharper + (1 − α)·z_blurrier. α=1 gives the sharper code, α=0 the blurrier. Lists: per scale."""
    if isinstance(z_sharper, (list, tuple)):
        check_scales(z_sharper, z_blurrier)
        return [interpolate_latents(a, b, alpha) for a, b in zip(z_sharper, z_blurrier, strict=True)]
    return alpha * z_sharper + (1.0 - alpha) * z_blurrier


def extrapolate_sharp(z_blurriest, z_less_blurry, alpha: float | torch.Tensor):
    """Eq. 3: z_less_blurry/(1 − α) − α/(1 − α)·z_blurriest, the inverse of Eq. 2 for the sharp end.
    Lists: per scale."""
    if getattr(alpha, "ndim", 0) == 0:  # a number; training passes one α per sample (a tensor), checked there
        check_deblur_alpha(alpha, warn=False)
    if isinstance(z_blurriest, (list, tuple)):
        check_scales(z_blurriest, z_less_blurry)
        return [extrapolate_sharp(a, b, alpha) for a, b in zip(z_blurriest, z_less_blurry, strict=True)]
    return z_less_blurry / (1.0 - alpha) - (alpha / (1.0 - alpha)) * z_blurriest


def check_scales(first, second) -> None:
    """UsageError unless two latents are both lists (or tuples) with one entry per scale, of equal length."""
    if not isinstance(second, (list, tuple)) or len(first) != len(second):
        raise UsageError(f"latents of {len(first)} scales and {len(second) if isinstance(second, (list, tuple)) else 1}"
                         " scale(s) cannot be combined; encode both images with one model")


def map_scales(fn, *latents):
    """``fn(*arrays)`` on each scale of list latents (a list back), or once on array latents."""
    if isinstance(latents[0], (list, tuple)):
        return [fn(*parts) for parts in zip(*latents, strict=True)]
    return fn(*latents)


def flatten_latent(z) -> np.ndarray:
    """A list latent of [N, ...] arrays as ONE [N, D] numpy array, the scales' codes concatenated (fine to
    coarse); an array latent is returned as it is. Eq. 2/3 commute with it (they act element-wise)."""
    if not isinstance(z, (list, tuple)):
        return z
    return np.concatenate([np.asarray(s).reshape(len(s), -1) for s in z], axis=1)


def alpha_from_planes(blurriest: float, less_blurry: float, target: float, *, param: str = "planes") -> float:
    """α for Eq. 2/3 from focal positions: (target − less_blurry) / (target − blurriest).

    Planes 0 and 8 toward 16 give α = 0.5; planes 32 and 24 toward 16 (the other side of focus) too.
    Raises UsageError, naming ``param`` (what gave the planes: ``planes``, or ``z`` for stack planes), when the
    planes are not ordered blurriest → less blurry → target on one side.
    """
    span = target - blurriest
    if span == 0:
        raise UsageError(f"{{{param}}} {blurriest:g} and target {target:g} coincide; the blurriest plane must differ "
                         "from the target", param)
    alpha = (target - less_blurry) / span
    if not 0.0 <= alpha < 1.0:
        raise UsageError(
            f"{{{param}}} {blurriest:g} {less_blurry:g} do not lead to target {target:g}: the less-blurry plane must "
            f"lie between the blurriest plane and the target (alpha would be {alpha:.3g})", param
        )
    return alpha


def triplet_weight(triplet) -> float:
    """Eq. 2's α for a (left, target, right) triplet of focal positions, left the blurriest: (t − l) / (r − l),
    the weight of the right (sharper) plane's latent — 0.5 for evenly spaced planes such as (0, 8, 16).

    A latent linear in focal position makes the target plane's code the mix of its neighbours' weighted by
    distance; Eq. 3 with α' = 1 − this weight (``alpha_from_planes``) inverts it.
    """
    left, target, right = triplet
    if not left < target < right:
        raise UsageError(f"triplet {list(triplet)}: planes must be ordered left < target < right")
    return 1.0 - alpha_from_planes(left, target, right)


def triplet_alphas(triplets, alpha) -> list[float]:
    """Eq. 2's α for each triplet: ``alpha`` for all of them, or with ``alpha="planes"`` each triplet's own
    (``triplet_weight``)."""
    if isinstance(alpha, str):
        if alpha != "planes":
            raise UsageError(f"{{alpha}} {alpha!r}: give a number in [0, 1] or 'planes' (each triplet's own)", "alpha")
        return [triplet_weight(t) for t in triplets]
    return [float(alpha)] * len(triplets)


def steps_to_alphas(steps: int) -> list[float]:
    """``steps`` evenly spaced α strictly inside (0, 1): 7 → 1/8, 2/8, …, 7/8 (the paper's Fig. 2)."""
    if steps < 1:
        raise UsageError(f"{{steps}} {steps}: give at least 1 level", "steps")
    return [k / (steps + 1) for k in range(1, steps + 1)]


def check_blur_alpha(alpha: float, extrapolate: bool = False) -> float:
    """α for Eq. 2 as a float; outside [0, 1] (extrapolation past an input) only with ``extrapolate``."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise UsageError(f"{{alpha}} {alpha} is not a finite number", "alpha")
    if not extrapolate and not 0.0 <= alpha <= 1.0:
        raise UsageError(f"{{alpha}} {alpha} is outside [0, 1], which extrapolates past an input; pass "
                         "{extrapolate=True} to allow it", "alpha", "extrapolate")
    return alpha


def check_deblur_alpha(value: SupportsFloat, warn: bool = True) -> float:
    """α for Eq. 3 as a float: 0 <= α < 1, else UsageError; logs a warning (``warn``) when 1/(1 − α) > 8."""
    alpha = float(value)
    if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
        raise UsageError(f"{{alpha}} {alpha} is outside [0, 1): deblurring needs 0 <= alpha < 1 (alpha = (target - "
                         "less_blurry) / (target - blurriest))", "alpha")
    if warn and 1.0 / (1.0 - alpha) > MAX_GAIN:
        log.warning(Message(
            f"{{alpha}} {alpha:.3g} amplifies latent differences {1.0 / (1.0 - alpha):.1f}x (1/(1 - alpha) > "
            f"{MAX_GAIN:g}): expect artefacts; use a less-blurry image closer to the blurriest one", "alpha"))
    return alpha


