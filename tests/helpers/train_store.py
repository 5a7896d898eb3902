"""A tiny prepared store and run config for the training tests (losses, data, checkpoint, run, distributed, train).

``make_store`` writes smooth random 32x32 fields, 'defocused' towards plane 0 by a box blur and a contrast
loss, so the autoencoder has something learnable (not noise) within a few epochs of widths [4, 8, 8].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import PAPER_TRIPLETS
from blurlatent.config import DataConfig, ModelConfig, OptimConfig, TrainConfig
from blurlatent.prepare.store import write_store

TINY = [4, 8, 8]
PLANES = list(range(0, 17, 2))


def make_store(path: Path, n_train: int = 6, n_val: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Smooth random fields, 'defocused' towards plane 0 by a box blur and a contrast loss (learnable, not noise)."""
    rng = np.random.default_rng(seed)

    def crops(n):
        if n == 0:  # a split without fields (no validation split)
            return np.zeros((0, len(PLANES), size, size), np.uint8)
        base = rng.random((n, size, size))
        k = np.ones(5) / 5
        base = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 2, base)
        planes = []
        for p in PLANES:
            w = (16 - p) / 16
            img = base.copy()
            for _ in range(int(round(4 * w))):
                img = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, img)
            planes.append(np.clip((img * (1 - 0.5 * w) + 0.2 * w) * 255, 0, 255))
        return np.stack(planes, 1).astype(np.uint8)

    manifest = {"planes": PLANES, "channels": ["w1"], "crop": size, "normalization": {"method": "minmax"}, "fields": []}
    write_store(path, manifest, {"w1_train": crops(n_train), "w1_val": crops(n_val), "w1_test": crops(1)})
    return path


def tiny_config(store: Path, **kw) -> TrainConfig:
    """The paper's model of widths [4, 8, 8], trained as the paper did (its seven triplets at α 0.5, no deblur loss:
    the quickest epoch), on CPU, 2 epochs of batch 8, lr 1e-3, no strips, unless ``kw`` says otherwise."""
    optim = OptimConfig(epochs=kw.pop("epochs", 2), batch=kw.pop("batch", 8), lr=kw.pop("lr", 1e-3),
                        step=kw.pop("step", 2))
    data = DataConfig(store=str(store), triplets=[tuple(t) for t in PAPER_TRIPLETS], alpha=0.5)
    return TrainConfig(model=ModelConfig(widths=list(TINY), arch="paper"), data=data, optim=optim, device="cpu",
                       strip_every=kw.pop("strip_every", 0), deblur_weight=kw.pop("deblur_weight", 0.0), **kw)


def metrics(run: Path) -> list[dict]:
    """The lines of a run's metrics.jsonl."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
