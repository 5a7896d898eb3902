"""What an evaluation looks at: its planes (``PlanePlan``: the blurriest, those between, the in-focus target) and
the samples it keeps for figures (``Examples``, ``LatentSamples``). The lowest module of ``evaluation``: the
baselines, the columns, the report and the loop all read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blurlatent.bbbc006 import IN_FOCUS_PLANE
from blurlatent.errors import UsageError
from blurlatent.nets.latent import alpha_from_planes


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
        return alpha_from_planes(self.far, plane, self.target)


def plan_planes(planes: Sequence[int], target: int = IN_FOCUS_PLANE) -> PlanePlan:
    """Target = the in-focus plane, far = the store plane furthest from it (the lower side on a tie).

    Raises UsageError when the target is missing or no plane lies strictly between far and target.
    """
    planes = sorted({int(p) for p in planes})
    if target not in planes:
        raise UsageError(f"store planes {planes} do not include the in-focus plane {target}; "
                         "prepare with --planes that include it (e.g. 0:16:2)")
    others = [p for p in planes if p != target]
    if not others:
        raise UsageError(f"store holds only plane {target}; evaluation needs defocused planes too "
                         "(prepare with --planes 0:16:2)")
    far = min(others, key=lambda p: (-abs(p - target), p))
    lo, hi = sorted((far, target))
    between = [p for p in planes if lo < p < hi]
    if not between:
        raise UsageError(f"no store plane lies between planes {far} and {target}; blur synthesis and deblurring "
                         "need at least one (prepare with --planes 0:16:2)")
    between.sort(key=lambda p: abs(p - far))
    return PlanePlan(target=target, far=far, between=tuple(between))


# Cap on latent floats kept for the PCA figure (fields × planes × code size), so whole-field runs with the
# paper's 1024-channel codes stay within a few hundred MB.
PCA_FLOAT_BUDGET = 40_000_000


class Examples:
    """Images of the first ``n`` test fields (global indices 0..n-1), for the transition and deblurring figures.

    ``images[key]`` lists one float32 array per kept field: ``real`` [P_seq, H, W] in blur order far →
    target, ``gaussian``/``rl``/``wiener``/``wiener2`` [N, H, W], and per model ``<name>:recon`` [P_seq, H, W],
    ``<name>:synth`` and ``<name>:deblur`` [N, H, W]; ``names`` the kept fields.
    """

    def __init__(self, n: int):
        self.n = n
        self.names: list[str] = []
        self.images: dict[str, list[np.ndarray]] = {}

    def keep(self, key: str, start: int, images: np.ndarray, names: Sequence[str] | None = None) -> None:
        """Keep ``images[i]`` (batch of fields ``start``, ``start + 1``, …) for the fields below ``n``."""
        take = max(0, min(len(images), self.n - start))
        self.images.setdefault(key, []).extend(np.asarray(images[i], np.float32) for i in range(take))
        if names is not None:
            self.names.extend(names[:take])


class LatentSamples:
    """Flattened latents (float32 [P, D] per field, blur order) of as many fields as PCA_FLOAT_BUDGET allows."""

    def __init__(self):
        self.z: dict[str, list[np.ndarray]] = {}

    def keep(self, name: str, z_seq: np.ndarray) -> None:
        """Keep model ``name``'s codes ``z_seq`` [B, P, C, h, w] while the budget lasts (at least 2 fields)."""
        kept = self.z.setdefault(name, [])
        per_field = int(np.prod(z_seq.shape[1:]))
        room = max(2, PCA_FLOAT_BUDGET // max(per_field, 1)) - len(kept)
        for i in range(max(0, min(room, len(z_seq)))):
            kept.append(z_seq[i].reshape(z_seq.shape[1], -1).astype(np.float32))
