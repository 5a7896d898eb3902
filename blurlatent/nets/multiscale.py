"""The multiscale autoencoder (``arch: multiscale``): a latent at every resolution, Eq. 2/3 on each.

The paper's net squeezes a 128x128 crop into a 1024×4×4 code (32× per side), so fine nuclear texture
cannot come back, and its stride-2 transposed convolutions draw a checkerboard. This one keeps the
paper's idea — blur synthesis and deblurring are Eq. 2 and Eq. 3 in a latent space trained to be
linear — with a latent that is a LIST of feature maps, one per scale:

Encoder E, ``widths`` = (w0, …, w_{D−1}): a full-resolution stem [Conv 3x3, BN, LeakyReLU] × 2 with w0
filters, then D − 1 stages [Conv 3x3 stride 2, BN, LReLU; Conv 3x3, BN, LReLU] with w1 … w_{D−1}: scale s
is 2**s times coarser. The latent is the list of the stage outputs (``skips``, below, picks which).

Decoder G, U-Net-like, but every skip is a latent — after Eq. 2/3 an interpolated one, never a copy of
an input: from the coarsest scale up, each level upsamples by bilinear resize (×2) then [Conv 3x3, BN,
LReLU] to w_s, concatenates the latent of scale s and fuses with [Conv 3x3, BN, LReLU]; a Conv 3x3 → 1
channel and a Sigmoid end it. No transposed convolution anywhere: resize + conv has no checkerboard.

``skips`` (ModelConfig): fine-scale latents mix almost like pixels, so Eq. 2 there superposes two images
instead of blurring one (issue 13's prototype: −1.8 dB in blur synthesis against the paper model). So:
``coarse`` (what a version-1 config without ``skips`` meant) leaves the full-resolution scale
out of the latent — the finest code is ½ resolution and the stem's features reach the decoder only through
the stages; ``all`` uses every scale; ``gated`` every scale, each skip scaled by a learned gate sigmoid(g_s)
that starts small at the fine scales (0.12, 0.27, 0.5, 0.73, …), so training decides how much of the
interpolation they carry;
``quarter`` leaves out ½ resolution as well: the finest code is ¼ resolution — this arch's default
(``config.DEFAULT_SKIPS``), which measured best in blur synthesis and deblurring alike.

Cost per full-resolution pixel (multiply-accumulates): E ≈ 9 w0 + 9 w0² + 13.5 w0² (D − 1), G ≈ 36 w0²
(D − 1) (less 9 w0² with ``coarse``) for widths doubling per scale; one deblur = 2 E + G. Widths 12, 24, … 192
give ≈ 27 GFLOP per 696x520 deblur; the default 12, 24, 64, 128, 256 with ``quarter`` (width where pixels are
few) 40.2, the paper model 50.1 (``benchmarks/bench_infer.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blurlatent.config import DEFAULT_SKIPS, ModelConfig
from blurlatent.errors import UsageError


def _block(cin: int, cout: int, slope: float, stride: int = 1) -> nn.Sequential:
    """Conv 3x3 + BatchNorm + LeakyReLU: one Sequential, so ``inference.fuse_batchnorm`` folds the BN."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(slope))


def first_scale(skips: str) -> int:
    """The finest scale in the latent: 1 for ``coarse`` (no full-resolution code), 2 for ``quarter``, else 0."""
    return {"coarse": 1, "quarter": 2}.get(skips, 0)


class MultiScaleEncoder(nn.Module):
    """x [B, 1, H, W] → the latent: a list of [B, w_s, H/2**s, W/2**s] for s = first_scale(skips) … D − 1."""

    def __init__(self, widths: list[int], in_channels: int, slope: float, skips: str):
        super().__init__()
        self.stem = nn.Sequential(_block(in_channels, widths[0], slope), _block(widths[0], widths[0], slope))
        self.stages = nn.ModuleList(
            nn.Sequential(_block(widths[i - 1], widths[i], slope, stride=2), _block(widths[i], widths[i], slope))
            for i in range(1, len(widths)))
        self.first = first_scale(skips)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(x)
        scales = [h]
        for stage in self.stages:
            h = stage(h)
            scales.append(h)
        return scales[self.first:]


class MultiScaleDecoder(nn.Module):
    """The latent list (finest first) → [B, 1, H, W] in [0, 1]."""

    def __init__(self, widths: list[int], out_channels: int, slope: float, skips: str):
        super().__init__()
        self.first = first_scale(skips)
        levels = range(len(widths) - 2, -1, -1)  # the scale each level outputs, coarse to fine
        self.ups = nn.ModuleList(_block(widths[s + 1], widths[s], slope) for s in levels)
        self.fuses = nn.ModuleList(
            _block(widths[s] * (2 if s >= self.first else 1), widths[s], slope) for s in levels)
        self.head = nn.Sequential(nn.Conv2d(widths[0], out_channels, 3, padding=1), nn.Sigmoid())
        # one gate per skip (every scale but the coarsest, which is the decoder's input itself)
        self.gates = nn.Parameter(torch.arange(len(widths) - 1, dtype=torch.float32) - 2.0) \
            if skips == "gated" else None

    def forward(self, z: list[torch.Tensor]) -> torch.Tensor:
        h = z[-1]
        n = len(self.ups)
        for j, (up, fuse) in enumerate(zip(self.ups, self.fuses, strict=True)):
            s = n - 1 - j
            h = up(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False))
            if s >= self.first:
                skip = z[s - self.first]
                if self.gates is not None:
                    skip = skip * torch.sigmoid(self.gates[s])
                h = torch.cat([h, skip], 1)
            h = fuse(h)
        return self.head(h)


class MultiScaleAutoencoder(nn.Module):
    """E (``encode``, a list of feature maps) and G (``decode``). Input/output: float [B, 1, H, W] in [0, 1],
    H and W divisible by ``multiple`` = 2**(D − 1)."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig(arch="multiscale")
        # ModelConfig fills widths and skips on construction; None only in a config built around that
        w, s = list(self.config.widths or ()), self.config.negative_slope
        skips = self.config.skips or DEFAULT_SKIPS["multiscale"]
        if len(w) < 2:
            raise UsageError(f"{{model.widths}} {w}: the multiscale arch needs at least 2 scales", "model.widths")
        self.encoder = MultiScaleEncoder(w, self.config.in_channels, s, skips)
        self.decoder = MultiScaleDecoder(w, self.config.in_channels, s, skips)

    @property
    def multiple(self) -> int:
        """Input height and width must be divisible by this (2**stages)."""
        return 2 ** (self.config.depth - 1)

    @property
    def radius(self) -> int:
        """An output pixel depends only on inputs closer than this (the tiling margin): ``receptive_radius``."""
        return multiscale_receptive_radius(self.config.depth)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise UsageError(
                f"input {x.shape[-2]}x{x.shape[-1]} is not divisible by 2**stages = {self.multiple}; "
                "pad it (tiling.pad_to_multiple) or crop it"
            )
        return self.encoder(x)

    def decode(self, z: list[torch.Tensor]) -> torch.Tensor:
        return self.decoder(list(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def multiscale_receptive_radius(depth: int) -> int:
    """An output pixel depends only on inputs closer than this, for ``depth`` scales (m = 2**(depth − 1)).

    A 3x3 conv reading a grid of spacing g reaches g px. E: the stem 1 + 1, stage s its stride-2 conv
    2**(s−1) and its conv 2**s → 2 + 3 (m − 1) to the coarsest scale. G, level s: the ×2 bilinear resize
    (align_corners=False) of the 2**(s+1) grid reaches one coarse pixel, 2**(s+1), then two convs 2·2**s →
    4 (m − 1), and the head 1. The reach is 7 (m − 1) + 3 exactly (a test measures it from the gradient
    for every phase of the stride grid); the radius is one more.
    """
    m = 2 ** (depth - 1)
    return 7 * (m - 1) + 4
