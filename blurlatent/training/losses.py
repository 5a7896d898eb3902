"""The paper's training losses (L1 means; x_l, x_t, x_r the left, target and right planes of a triplet,
z = E(x), z' = Eq. 2 of z_r and z_l)::

    recon  = ½ (L1(G(z_l), x_l) + L1(G(z_r), x_r))        every run ("none" is recon alone)
    interp = L1(G(z'), x_t),   z' = α z_r + (1 − α) z_l     added by "weak" (Eq. 4)
    latent = L1(z', E(x_t))                                 added by "strong" (Eq. 5)
    deblur = L1(G(z''), x_r),  z'' = Eq. 3(z_l, z_t, 1 − α)  added × ``deblur_weight`` when it is > 0

The deblur term trains the job users run (issue 13): recover the sharpest plane of a triplet from its
blurriest and middle planes, Eq. 3 with α' = 1 − α (the weight Eq. 2 gives the blurriest plane), the
exact inverse of the Eq. 2 that ``interp`` trains. For the paper's triplets that end at the in-focus
plane ((0, 8, 16), (8, 12, 16), (12, 14, 16)) x_r IS the in-focus plane; the others train the same
inversion one step away from focus. A batch holds only the triplet's three planes, so this needs no
other data.

Multiscale latents (lists, one tensor per scale): Eq. 2/3 act per scale; the latent term is the MEAN
over scales of each scale's L1 mean, so every scale counts equally whatever its size (an L1 over the
concatenated code would be ruled by the finest, largest scale).

One step encodes every image it needs in ONE batched encoder call and decodes the reconstructions, the
interpolation and the deblurred code in ONE decoder call (the paper's code makes three of each). In
training mode BatchNorm therefore normalizes over the whole concatenated batch rather than per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blurlatent.config import Reg, check_choice
from blurlatent.errors import UsageError
from blurlatent.nets.latent import extrapolate_sharp, interpolate_latents, map_scales


def term_names(reg: str, deblur_weight: float = 0.0) -> list[str]:
    """The figures a training step of ``reg`` computes and logs: loss, recon, then interp, latent, deblur."""
    return (["loss", "recon"] + (["interp"] if reg != "none" else []) + (["latent"] if reg == "strong" else [])
            + (["deblur"] if deblur_weight > 0 else []))


def latent_l1(a, b) -> torch.Tensor:
    """L1 mean between two latents in float32; for list latents the mean over scales of each scale's L1."""
    if isinstance(a, (list, tuple)):
        return torch.stack([F.l1_loss(x.float(), y.float()) for x, y in zip(a, b, strict=True)]).mean()
    return F.l1_loss(a.float(), b.float())


def loss_terms(model, left: torch.Tensor, target: torch.Tensor, right: torch.Tensor, reg: str = "none",
               alpha: float | torch.Tensor = 0.5, all_terms: bool = False,
               deblur_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """The loss of ``reg`` (plus ``deblur_weight`` × the deblur term) and its terms, as 0-d float32 tensors.

    ``model`` has ``encode``/``decode`` (latents: tensors or lists of them); ``left``, ``target``, ``right``:
    float [B, C, H, W] in [0, 1]; the right plane is the sharper side of Eq. 2 (weight ``alpha``: a number, or
    a float tensor [B], one per sample, when triplets are unevenly spaced). Returns
    ``{"loss", "recon"}`` plus ``"interp"`` (weak, strong), ``"latent"`` (strong) and ``"deblur"``
    (``deblur_weight`` > 0); with ``all_terms`` interp and latent are computed too (validation logs them
    for every run) while ``"loss"`` still sums only those of ``reg``. Raises UsageError for an unknown
    ``reg``, and for ``deblur_weight`` > 0 with ``alpha`` = 0 (Eq. 3 needs α' = 1 − α < 1).
    """
    check_choice(Reg, reg, "{reg}")
    if torch.is_tensor(alpha):  # one α per sample, [B]: broadcast over every scale's [B, C, H, W]
        alpha = alpha.to(left.device, torch.float32).view(-1, 1, 1, 1)
    need_interp = all_terms or reg != "none"
    need_latent = all_terms or reg == "strong"
    need_deblur = deblur_weight > 0
    b = left.shape[0]
    # One encoder call for every image needed; E(x_t) only when the latent or deblur term uses it.
    z = model.encode(torch.cat([left, right, target]) if need_latent or need_deblur else torch.cat([left, right]))
    z_l, z_r = map_scales(lambda t: t[:b], z), map_scales(lambda t: t[b:2 * b], z)
    codes = [map_scales(lambda t: t[:2 * b], z)]
    if need_interp:
        z_i = interpolate_latents(z_r, z_l, alpha)
        codes.append(z_i)
    if need_deblur:
        codes.append(extrapolate_sharp(z_l, map_scales(lambda t: t[2 * b:], z), 1.0 - alpha))
    y = model.decode(map_scales(lambda *ts: torch.cat(ts), *codes) if len(codes) > 1 else codes[0])
    y = y.float()  # losses in fp32 whatever autocast chose
    terms = {"recon": 0.5 * (F.l1_loss(y[:b], left.float()) + F.l1_loss(y[b:2 * b], right.float()))}
    if need_interp:
        terms["interp"] = F.l1_loss(y[2 * b:3 * b], target.float())
    if need_latent:
        terms["latent"] = latent_l1(z_i, map_scales(lambda t: t[2 * b:], z))
    if need_deblur:
        terms["deblur"] = F.l1_loss(y[-b:], right.float())
    loss = terms["recon"]
    if reg != "none":
        loss = loss + terms["interp"]
    if reg == "strong":
        loss = loss + terms["latent"]
    if need_deblur:
        loss = loss + deblur_weight * terms["deblur"]
    return {"loss": loss, **terms}


class LossModule(nn.Module):
    """The autoencoder plus its loss, so one ``forward`` runs a whole step: DDP syncs gradients through forward.

    ``forward(left, target, right, alpha=None)`` returns ``loss_terms(model, left, target, right, reg, alpha,
    deblur_weight=)``; a per-sample ``alpha`` [B] (uneven triplets) replaces the module's one α, and is
    required when that is None.
    """

    def __init__(self, model: nn.Module, reg: str, alpha: float | None, deblur_weight: float = 0.0):
        super().__init__()
        self.model, self.reg, self.alpha = model, check_choice(Reg, reg, "{reg}"), alpha
        self.deblur_weight = float(deblur_weight)

    def forward(self, left: torch.Tensor, target: torch.Tensor, right: torch.Tensor,
                alpha: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        weight = self.alpha if alpha is None else alpha
        if weight is None:
            raise UsageError("alpha: this LossModule has no α of its own; pass one per sample (a float tensor [B])")
        return loss_terms(self.model, left, target, right, self.reg, weight, deblur_weight=self.deblur_weight)
