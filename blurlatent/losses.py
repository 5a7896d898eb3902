"""The paper's training losses (L1 means; x_l, x_t, x_r the left, target and right planes of a triplet,
z = E(x), z' = Eq. 2 of z_r and z_l)::

    recon  = ½ (L1(G(z_l), x_l) + L1(G(z_r), x_r))        every run ("none" is recon alone)
    interp = L1(G(z'), x_t),   z' = α z_r + (1 − α) z_l     added by "weak" (Eq. 4)
    latent = L1(z', E(x_t))                                 added by "strong" (Eq. 5)

One step encodes every image it needs in ONE batched encoder call and decodes the reconstructions and
the interpolation in ONE decoder call (the paper's code makes three of each). In training mode
BatchNorm therefore normalizes over the whole concatenated batch rather than per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Reg, check_choice
from .latent import interpolate_latents


def term_names(reg: str) -> list[str]:
    """The figures a training step of ``reg`` computes and logs: loss, recon, then interp and latent."""
    return ["loss", "recon"] + (["interp"] if reg != "none" else []) + (["latent"] if reg == "strong" else [])


def loss_terms(model, left: torch.Tensor, target: torch.Tensor, right: torch.Tensor, reg: str = "none",
               alpha: float = 0.5, all_terms: bool = False) -> dict[str, torch.Tensor]:
    """The loss of ``reg`` and its terms, as 0-d float32 tensors.

    ``model`` has ``encode``/``decode``; ``left``, ``target``, ``right``: float [B, C, H, W] in [0, 1];
    the right plane is the sharper side of Eq. 2 (weight ``alpha``). Returns ``{"loss", "recon"}`` plus
    ``"interp"`` (weak, strong) and ``"latent"`` (strong); with ``all_terms`` all three terms are computed
    (validation logs them for every run) while ``"loss"`` still sums only those of ``reg``.
    Raises UsageError for an unknown ``reg``.
    """
    check_choice(Reg, reg, "reg")
    need_interp = all_terms or reg != "none"
    need_latent = all_terms or reg == "strong"
    b = left.shape[0]
    # One encoder call for every image needed; E(x_t) only when the latent term uses it.
    z = model.encode(torch.cat([left, right, target]) if need_latent else torch.cat([left, right]))
    z_l, z_r = z[:b], z[b:2 * b]
    if need_interp:
        z_i = interpolate_latents(z_r, z_l, alpha)
        y = model.decode(torch.cat([z[:2 * b], z_i]))
    else:
        y = model.decode(z[:2 * b])
    y = y.float()  # losses in fp32 whatever autocast chose
    terms = {"recon": 0.5 * (F.l1_loss(y[:b], left.float()) + F.l1_loss(y[b:2 * b], right.float()))}
    if need_interp:
        terms["interp"] = F.l1_loss(y[2 * b:], target.float())
    if need_latent:
        terms["latent"] = F.l1_loss(z_i.float(), z[2 * b:].float())
    loss = terms["recon"]
    if reg != "none":
        loss = loss + terms["interp"]
    if reg == "strong":
        loss = loss + terms["latent"]
    return {"loss": loss, **terms}


class LossModule(nn.Module):
    """The autoencoder plus its loss, so one ``forward`` runs a whole step: DDP syncs gradients through forward.

    ``forward(left, target, right)`` returns ``loss_terms(model, left, target, right, reg, alpha)``.
    """

    def __init__(self, model: nn.Module, reg: str, alpha: float):
        super().__init__()
        self.model, self.reg, self.alpha = model, check_choice(Reg, reg, "reg"), alpha

    def forward(self, left: torch.Tensor, target: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
        return loss_terms(self.model, left, target, right, self.reg, self.alpha)
