"""data.py: batches fetched at once equal the dataset's items, and an epoch's batch order is fixed by
(seed, epoch) alone, so a mid-epoch resume sees exactly the batches it skipped to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.train_store import make_store

from blurlatent.prepare.store import Store
from blurlatent.training.loader import EpochBatches, make_loader, to_device, triplet_dataset, val_batches


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "prepared")


def test_batch_fetch_equals_items(store):
    ds = triplet_dataset(Store(store), [(0, 8, 16), (4, 6, 8)], "w1", "train")
    idx = [5, 0, 11, 3]
    u8 = ds.batch(idx)
    assert u8.dtype == np.uint8 and u8.shape == (4, 3, 32, 32)
    for row, i in zip(torch.from_numpy(u8).float() / 255, idx, strict=True):
        for k, plane in enumerate(ds[i]):
            assert torch.equal(row[k:k + 1], plane)  # bitwise: the device-side /255 matches the dataset's
    left, target, right = to_device(torch.from_numpy(u8), torch.device("cpu"), channels_last=True)
    for k, part in enumerate((left, target, right)):
        assert part.shape == (4, 1, 32, 32) and torch.equal(part, torch.from_numpy(u8[:, k:k + 1]).float() / 255)


def test_epoch_order_depends_on_seed_and_epoch_only_and_skip_resumes_it(store):
    ds = triplet_dataset(Store(store), [(0, 8, 16)], "w1", "train")
    batches = EpochBatches(len(ds), 4, seed=3)
    batches.set_epoch(1)
    full = list(batches)
    assert len(full) == batches.total() == len(batches) == 2 and sorted(sum(full, [])) == list(range(len(ds)))
    torch.manual_seed(123)  # the global RNG plays no part
    again = EpochBatches(len(ds), 4, seed=3)
    again.set_epoch(1, skip=1)
    assert len(again) == 1 and list(again) == full[1:]
    loader = make_loader(ds, again, workers=0, pin=False, seed=3)
    assert [b.tolist() for b, _ in loader] == [ds.batch(full[1]).tolist()]
    # two ranks split the epoch between them, each item once
    halves = [EpochBatches(len(ds), 4, seed=3, rank=r, world=2) for r in (0, 1)]
    assert sorted(i for h in halves for b in h for i in b) == list(range(len(ds)))
    assert val_batches(5, 2, rank=1, world=2) == [[1, 3]]


def test_alphas_travel_with_each_batch(store):
    """Every batch carries each item's Eq. 2 α: the fixed one, or (``alpha="planes"``) its triplet's own."""
    triplets = [(0, 8, 16), (0, 2, 16), (12, 14, 16)]
    fixed = triplet_dataset(Store(store), triplets, "w1", "train")
    assert fixed.fixed_alpha == 0.5
    ds = triplet_dataset(Store(store), triplets, "w1", "train", alpha="planes")
    assert ds.fixed_alpha is None
    batches = EpochBatches(len(ds), 5, seed=0)
    for (u8, alphas), idx in zip(make_loader(ds, batches, workers=0, pin=False, seed=0), list(batches), strict=True):
        assert torch.equal(u8, torch.from_numpy(ds.batch(idx)))
        assert alphas.tolist() == [[0.5, 0.125, 0.5][i % 3] for i in idx]
