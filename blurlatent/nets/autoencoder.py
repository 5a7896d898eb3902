"""The paper's convolutional autoencoder (§4.2).

Encoder: ``depth`` × [Conv2d 3x3 stride 2 pad 1, BatchNorm2d, LeakyReLU] with ``widths`` filters
(64, 128, 256, 512, 1024 by default), so a 128x128 crop becomes a 1024×4×4 latent.
Decoder, mirrored: [ConvTranspose2d 3x3 stride 2 pad 1 output_padding 1, BatchNorm2d, LeakyReLU]
from widths[-1] down to widths[0], one more such layer widths[0]→widths[0], then Conv2d 3x3 → 1
channel and a Sigmoid (5 down, 6 up). Fully convolutional: any H, W divisible by 2**depth.

``build_autoencoder(config)`` builds the net ``config.arch`` names: this one (``paper``) or
``multiscale.MultiScaleAutoencoder``.
"""

from __future__ import annotations

import torch
from torch import nn

from blurlatent.config import ModelConfig
from blurlatent.errors import UsageError
from blurlatent.nets.multiscale import MultiScaleAutoencoder
from blurlatent.nets.tiling import receptive_radius


def _down(cin: int, cout: int, slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU(slope)
    )


def _up(cin: int, cout: int, slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(slope),
    )


class Autoencoder(nn.Module):
    """E (``encode``) and G (``decode``). Input/output: float [B, C, H, W] in [0, 1]."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig(arch="paper")
        w, s = list(self.config.widths or ()), self.config.negative_slope  # ModelConfig fills widths; None: refused
        if not w:
            raise UsageError("{model.widths} must list at least one layer", "model.widths")
        chans = [self.config.in_channels] + w
        self.encoder = nn.Sequential(*[_down(chans[i], chans[i + 1], s) for i in range(len(w))])
        ups = [_up(w[i], w[i - 1], s) for i in range(len(w) - 1, 0, -1)]
        ups.append(_up(w[0], w[0], s))
        self.decoder = nn.Sequential(
            *ups, nn.Conv2d(w[0], self.config.in_channels, 3, padding=1), nn.Sigmoid()
        )

    @property
    def multiple(self) -> int:
        """Input height and width must be divisible by this (2**depth)."""
        return 2 ** self.config.depth

    @property
    def radius(self) -> int:
        """An output pixel depends only on inputs closer than this (the tiling margin, ``tiling.receptive_radius``)."""
        return receptive_radius(self.multiple)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
            raise UsageError(
                f"input {x.shape[-2]}x{x.shape[-1]} is not divisible by 2**depth = {self.multiple}; "
                "pad it (tiling.pad_to_multiple) or crop it"
            )
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# what ``build_autoencoder`` returns: either net has ``encode``, ``decode``, ``encoder``, ``multiple`` and ``radius``
AnyAutoencoder = Autoencoder | MultiScaleAutoencoder


def build_autoencoder(config: ModelConfig | None = None) -> AnyAutoencoder:
    """The autoencoder of ``config.arch``: ``Autoencoder`` (paper) or ``MultiScaleAutoencoder`` (multiscale)."""
    config = config or ModelConfig()
    return MultiScaleAutoencoder(config) if config.arch == "multiscale" else Autoencoder(config)
