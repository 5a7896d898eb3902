"""A tiny trained autoencoder for the inference tests (not train.py: its loop is tested on its own).

Widths [4, 8, 8] (2**3 = 8 px grid), trained for a few dozen Adam steps on smooth random 32x32 fields
and their Gaussian-blurred versions with the paper's weak loss, so encode/decode are far from identity
maps and from constants, and BatchNorm's running statistics are real.

``tiny_checkpoint(tmp_path_factory)`` trains it once per test session and normalization, so the
inference test modules (latent, tiling, intensity, inference, batch, CLI) share one file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from blurlatent.config import ModelConfig
from blurlatent.nets.autoencoder import Autoencoder
from blurlatent.nets.checkpoint import save_checkpoint

TINY = [4, 8, 8]


def smooth_field(rng: np.random.Generator, shape, sigma: float = 2.0) -> np.ndarray:
    """A smooth random image in [0, 1], float32."""
    x = gaussian_filter(rng.random(shape), sigma)
    x = (x - x.min()) / (x.max() - x.min())
    return x.astype(np.float32)


def pair(seed: int, shape=(40, 48)) -> tuple[np.ndarray, np.ndarray]:
    """A sharp field and its Gaussian-blurred (sigma 3) version, both float32 exactly spanning [0, 1]
    (so minmax normalization is the identity on them)."""
    sharp = smooth_field(np.random.default_rng(seed), shape, 1.0)
    blurry = gaussian_filter(sharp, 3.0)
    blurry = (blurry - blurry.min()) / (blurry.max() - blurry.min())
    return sharp, blurry.astype(np.float32)


def train_tiny_checkpoint(path, steps: int = 40, seed: int = 0, normalize: str = "minmax") -> None:
    """Train the tiny model and save it as a checkpoint whose config.data.normalize is ``normalize``."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sharp = np.stack([smooth_field(rng, (32, 32), 1.0) for _ in range(16)])
    mid = np.stack([gaussian_filter(s, 1.5) for s in sharp])
    blurry = np.stack([gaussian_filter(s, 3.0) for s in sharp])
    xs, xm, xb = (torch.from_numpy(a).unsqueeze(1) for a in (sharp, mid, blurry))
    model = Autoencoder(ModelConfig(widths=list(TINY)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        idx = torch.from_numpy(rng.choice(len(sharp), 8, replace=False))
        zs, zb = model.encode(xs[idx]), model.encode(xb[idx])
        loss = (
            0.5 * ((model.decode(zs) - xs[idx]).abs().mean() + (model.decode(zb) - xb[idx]).abs().mean())
            + (model.decode(0.5 * zs + 0.5 * zb) - xm[idx]).abs().mean()
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_checkpoint(
        path,
        {
            "config": {"model": {"widths": list(TINY)}, "data": {"normalize": normalize}},
            "model": model.state_dict(),
            "epoch": 0,
        },
    )


def tiny_checkpoint(tmp_path_factory, normalize: str = "minmax") -> Path:
    """The tiny checkpoint (40 steps, seed 0) under this session's temp folder, trained on first use."""
    path = tmp_path_factory.getbasetemp() / "tiny-checkpoints" / f"tiny-{normalize}.pt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        train_tiny_checkpoint(path, normalize=normalize)
    return path
