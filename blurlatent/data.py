"""Torch datasets over the memory-mapped store (kept apart from store.py so the store needs no torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class TripletDataset(Dataset):
    """Item i = (crop i // T, triplet i % T) → (left, target, right), each float32 [1, H, W] in [0, 1].

    ``crops`` is uint8 [N, planes, H, W] (a memmap is fine: nothing is decoded, only sliced);
    ``index`` lists triplets as plane *indices* into axis 1.
    """

    def __init__(self, crops: np.ndarray, index: list[tuple[int, int, int]]):
        self.crops = crops
        self.index = list(index)

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
