"""Tiny stores, checkpoints, BBBC006-layout sources and a small report for the evaluate, report, figures
and baseline tests.

``make_store`` writes a store directly (no prepare), with per-plane Gaussian blur σ = |16 − n| / 4;
``make_checkpoint`` an untrained tiny model; ``write_bbbc_source`` 16-bit files in BBBC006's folder
layout whose 8-bit store copy is exact, so evaluate (store / 255) and `blurlatent deblur` (the files,
min–max scaled) see the same [0, 1] images; ``stand_in_extractor`` replaces Inception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from blurlatent.config import ModelConfig
from blurlatent.evaluation.baselines import BlurFit
from blurlatent.evaluation.columns import ColumnScorer, best_columns
from blurlatent.evaluation.plan import plan_planes
from blurlatent.evaluation.report import CheckpointInfo, FidInfo, Report, ReportConfig
from blurlatent.files.images import write_image
from blurlatent.nets.autoencoder import Autoencoder
from blurlatent.nets.checkpoint import save_checkpoint
from blurlatent.prepare.store import write_store

TINY_WIDTHS = [4, 8, 8]


def field(rng, size, planes, sigma_per_plane=0.25) -> np.ndarray:
    """float64 [planes, H, W] (``size``: H = W, or (H, W)): ten blurred spots, each plane blurred by
    σ = |16 − n|·sigma_per_plane."""
    h, w = (size, size) if np.ndim(size) == 0 else size
    img = np.zeros((h, w))
    for _ in range(10):
        y, x = rng.randint(2, h - 2, 2) if h == w else (rng.randint(2, h - 2), rng.randint(2, w - 2))
        img[y, x] = rng.uniform(0.5, 1.0)
    img = gaussian_filter(img, 1.2)
    return np.stack([gaussian_filter(img, sigma_per_plane * abs(16 - p)) for p in planes])


def u8(stack) -> np.ndarray:
    stack = stack / stack.max(axis=(-2, -1), keepdims=True)  # per-image min-max, as the store's default
    return (stack * 255).round().astype(np.uint8)


def make_store(root, planes=(0, 8, 16), n_train=4, n_test=3, size=32, full=40, seed=0) -> Path:
    rng = np.random.RandomState(seed)
    arrays = {
        "w1_train": u8(np.stack([field(rng, size, planes) for _ in range(n_train)])),
        "w1_val": u8(np.stack([field(rng, size, planes)])),
        "w1_test": u8(np.stack([field(rng, size, planes) for _ in range(n_test)])),
        "w1_test_full": u8(np.stack([field(rng, full, planes) for _ in range(n_test)])),
    }
    fields = [{"name": f"test{i}", "split": "test", "channel": "w1"} for i in range(n_test)]
    fields += [{"name": f"train{i}", "split": "train", "channel": "w1"} for i in range(n_train)]
    write_store(root, {"planes": list(planes), "channels": ["w1"], "fields": fields, "normalize": "minmax"}, arrays)
    return root


def make_checkpoint(path, seed=0, model=None) -> Path:
    torch.manual_seed(seed)
    model = model or Autoencoder(ModelConfig(widths=TINY_WIDTHS))
    save_checkpoint(path, {"config": {"model": {"widths": TINY_WIDTHS}, "data": {"normalize": "minmax"}},
                           "model": model.state_dict(), "epoch": 0})
    return path


def stand_in_extractor(batch):
    """A 4-d feature (mean, std, gradient energy, max) instead of Inception: no weights, no download."""
    gy = (batch[..., 1:, :] - batch[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return torch.stack([batch.mean(dim=(1, 2, 3)), batch.std(dim=(1, 2, 3)), gy, batch.amax(dim=(1, 2, 3))], 1)


def write_bbbc_source(root, fields=5, planes=(0, 8, 16), shape=(44, 52), seed=0) -> Path:
    """BBBC006-layout folders ``BBBC006_v1_images_z_XX/`` of uint16 w1 files (H, W = ``shape``).

    Every file holds 257·k for k in 0..255 with both 0 and 65535 present, so prepare's min–max 8-bit copy
    is exactly k and `blurlatent deblur`'s min–max scaling gives exactly k / 255, as evaluate's store / 255 does.
    """
    rng = np.random.RandomState(seed)
    for f in range(fields):
        stack = field(rng, shape, planes)
        lo, hi = stack.min(axis=(-2, -1), keepdims=True), stack.max(axis=(-2, -1), keepdims=True)
        levels = np.rint((stack - lo) / (hi - lo) * 255).astype(np.uint16) * 257
        well, site = f"a{f // 2 + 1:02d}", f % 2 + 1
        for p, image in zip(planes, levels, strict=True):
            name = f"mcf-z-stacks-03212011_{well}_s{site}_w1{f:08x}-0000-4000-8000-{p:012x}.tif"
            write_image(Path(root) / f"BBBC006_v1_images_z_{p:02d}" / name, image)
    return Path(root)


def small_report():
    """A typed Report without a model run: a model column, the less-blurry input and a 'perfect'
    deblurring column (PSNR inf) scored on random 16x16 images of two fields, planes 0, 8, 12, 16."""
    names = ["f0", "f1"]
    plan = plan_planes([0, 8, 12, 16])
    rng = np.random.RandomState(0)
    real, truth = rng.rand(2, 2, 16, 16), rng.rand(2, 16, 16)
    model = ColumnScorer("weak", "model", ("blur", "deblur", "latent"))
    model.add_blur(names, plan, np.clip(real + 0.02, 0, 1), real, rng.rand(2, 2, 16, 16))
    model.add_deblur(names, plan, rng.rand(2, 2, 16, 16), truth, rng.rand(2, 16, 16))
    model.add_latent(names, [0.9, 0.95], [1e-4, 2e-4], [25.0, 26.0])
    given = ColumnScorer("less-blurry input x_k", "baseline", ("deblur",))
    given.add_deblur(names, plan, real, truth)
    perfect = ColumnScorer("perfect", "baseline", ("deblur",))
    perfect.add_deblur(names, plan, np.stack([truth, truth], 1), truth)
    columns = [c.result(plan, {}) for c in (model, given, perfect)]
    fits = {n: BlurFit(n, 2.0 / i, 0.9, 0.05, 1e-3, 10, 0.01) for i, n in enumerate(plan.between, 1)}
    config = ReportConfig(store="prepared", channel="w1", whole=False, device="cpu", batch_size=2, plan=plan, fields=2,
                          image_size=(16, 16), store_normalize="minmax",
                          fid=FidInfo(False, "FID unavailable: no weights here", "custom", None), baselines=fits)
    ckpt = CheckpointInfo("weak", "runs/weak/best.pt", "ab" * 32, 3, {"model": {"widths": [4, 8, 8]}}, "minmax")
    return Report(config=config, checkpoints=[ckpt], columns=columns, best=best_columns(columns))
