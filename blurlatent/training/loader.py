"""Training data over the memory-mapped store: the triplet dataset, each epoch's batches, the loader.

Kept apart from store.py so the store needs no torch. A batch travels as uint8 [B, 3, H, W] (one
memmap gather, 4× fewer bytes to pin and copy than float) and becomes float on the device
(``to_device``). The batch order of an epoch depends only on (seed, epoch, rank, world), never on the
global RNG, so a resumed run sees exactly the batches an uninterrupted one sees.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from blurlatent.errors import UsageError
from blurlatent.nets.latent import triplet_alphas
from blurlatent.prepare.store import Store


class TripletDataset(Dataset):
    """Item i = (crop i // T, triplet i % T) → (left, target, right), each float32 [1, H, W] in [0, 1].

    ``crops`` is uint8 [N, planes, H, W] (a memmap is fine: nothing is decoded, only sliced);
    ``index`` lists triplets as plane *indices* into axis 1; ``alphas``: Eq. 2's α of each triplet
    (``latent.triplet_alphas``; default 0.5 for all).
    """

    def __init__(self, crops: np.ndarray, index: list[tuple[int, int, int]], alphas: list[float] | None = None):
        self.crops = crops
        self.index = list(index)
        self.alphas = np.asarray(alphas if alphas is not None else [0.5] * len(self.index), dtype=np.float32)
        if len(self.alphas) != len(self.index):
            raise ValueError(f"{len(self.alphas)} alphas for {len(self.index)} triplets")

    @property
    def fixed_alpha(self) -> float | None:
        """The one α every triplet shares (the paper's case: a plain number reaches the loss), else None."""
        return float(self.alphas[0]) if len(self.alphas) and np.all(self.alphas == self.alphas[0]) else None

    def alphas_of(self, indices) -> np.ndarray:
        """Eq. 2's α of items ``indices``, float32 [B]."""
        return self.alphas[np.asarray(indices, dtype=np.int64) % len(self.index)]

    def __len__(self) -> int:
        return len(self.crops) * len(self.index)

    def __getitem__(self, i: int):
        crop, t = divmod(i, len(self.index))
        planes = np.asarray(self.crops[crop, list(self.index[t])], dtype=np.float32) / 255.0
        x = torch.from_numpy(planes).unsqueeze(1)  # [3, 1, H, W]
        return x[0], x[1], x[2]

    def batch(self, indices) -> np.ndarray:
        """Items ``indices`` at once as uint8 [B, 3, H, W] (left, target, right), not yet divided by 255.

        One fancy index into the memmap instead of B Python calls, and 4× fewer bytes to pin and copy:
        the training loop converts on the device (``u8.float() / 255`` equals ``__getitem__`` exactly).
        """
        idx = np.asarray(indices, dtype=np.int64)
        crop, t = np.divmod(idx, len(self.index))
        planes = np.asarray(self.index, dtype=np.int64)[t]  # [B, 3]
        return np.asarray(self.crops[crop[:, None], planes])


class BatchDataset(Dataset):
    """A TripletDataset indexed by a *list* of item indices: one memmap gather per batch → (uint8 [B, 3, H, W],
    float32 [B] α of each item)."""

    def __init__(self, triplets: TripletDataset):
        self.triplets = triplets

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.triplets.batch(indices)), torch.from_numpy(self.triplets.alphas_of(indices))


class EpochBatches:
    """Batch sampler of one epoch: DistributedSampler order (seeded by seed + epoch, so a resumed run sees
    the same order), split into per-process batches of ``batch`` item indices, the first ``skip`` left
    out (mid-epoch resume). ``rank``/``world``: this process's share of the items."""

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1):
        # the sampler only takes len() of its dataset: the item indices stand in for it
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)  # type: ignore[arg-type]
        self.batch, self.skip = batch, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.skip = skip

    def total(self) -> int:
        """Batches in the whole epoch, skipped ones included."""
        return math.ceil(len(self.sampler) / self.batch)

    def __len__(self) -> int:
        return self.total() - self.skip

    def __iter__(self):
        idx = list(self.sampler)
        for start in range(self.skip * self.batch, len(idx), self.batch):
            yield idx[start:start + self.batch]


def val_batches(n: int, batch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """Every ``world``-th item from ``rank`` in batches of ``batch``: each validation item seen once overall."""
    index = list(range(rank, n, world))
    return [index[i:i + batch] for i in range(0, len(index), batch)]


def make_loader(triplets: TripletDataset, batches, workers: int, pin: bool, seed: int) -> DataLoader:
    """A DataLoader yielding (uint8 [B, 3, H, W], float32 [B] α) for the index lists ``batches`` yields."""
    g = torch.Generator()
    g.manual_seed(seed)  # keeps DataLoader from drawing on the global RNG (exact resume)
    return DataLoader(BatchDataset(triplets), batch_size=None, sampler=batches, num_workers=workers,
                      pin_memory=pin, generator=g, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def default_workers(workers: int | None, device: torch.device, world: int = 1) -> int:
    """``workers`` if given; else 0 on CPU (compute needs the cores), up to 4 per process on a GPU."""
    if workers is not None:
        return workers
    return 0 if device.type == "cpu" else min(4, max(0, (os.cpu_count() or 1) // world - 1))


def to_device(u8: torch.Tensor, device: torch.device, channels_last: bool) -> list[torch.Tensor]:
    """uint8 [B, 3, H, W] → float [left, target, right], each [B, 1, H, W] in [0, 1] on ``device``."""
    x = u8.to(device, non_blocking=True).float().div_(255.0)
    parts = [x[:, i:i + 1] for i in range(3)]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [p.contiguous(memory_format=fmt) for p in parts]


def triplet_dataset(store: Store, triplets, channel: str, split: str, alpha: float | str = 0.5) -> TripletDataset:
    """A torch Dataset over (crop, triplet) pairs of ``store``: (left, target, right) float [1, H, W] in [0, 1].

    ``triplets`` are (left, target, right) focal planes; ``alpha`` Eq. 2's α for all, or "planes" (each
    triplet's own). Raises UsageError for a plane or channel the store lacks.
    """
    store.check_channel(channel)
    return TripletDataset(store.array(channel, split), store.triplet_index(triplets), triplet_alphas(triplets, alpha))


def check_triplet_planes(store: Store, triplets) -> None:
    """UsageError when ``triplets`` need planes ``store`` lacks (a store of fewer planes, e.g. own stacks prepared
    with ``--planes -4:0:2``), naming them and both fixes: triplets of the store's planes, given as the docs give
    them (``data.triplets`` in a config file), or a store prepared with the planes."""
    missing = sorted({int(p) for t in triplets for p in t} - set(store.planes))
    if not missing:
        return
    planes = sorted(store.planes)
    needs = f"plane{'s' * (len(missing) > 1)} {', '.join(map(str, missing))}"
    fix = "a triplet takes 3 planes: prepare with {prepare:planes} that include them"
    if len(planes) >= 3:
        example = [planes[0], planes[len(planes) // 2], planes[-1]]
        fix = (f"give data.triplets of its planes in a {{config}} file, e.g. `data: {{triplets: [{example}]}}`, "
               "or prepare with {prepare:planes} that include them")
    raise UsageError(f"{store.path}: the training triplets need {needs}, which this store lacks (its planes: "
                     f"{', '.join(map(str, planes))}; the focus and paper triplet sets need 0..16); {fix}",
                     "config", "prepare:planes")
