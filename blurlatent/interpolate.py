"""Eq. 2 and Eq. 3 of the paper, α from focal planes, and whole-image inference.

Eq. 2 (blur synthesis):  z3' = α z1 + (1 − α) z2,   x1 the sharper image, x2 the blurrier.
Eq. 3 (deblurring):      z_sharp = z3' / (1 − α) − α / (1 − α) · z1,   z1 the blurriest, z3' the less blurry.
"""

from __future__ import annotations

from .errors import UsageError


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
