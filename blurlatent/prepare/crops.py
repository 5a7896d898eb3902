"""Which fields go to which split, and which boxes are cut from them (torchvision's ``ten_crop`` geometry).

Fields sorted by name are taken test first, then val, then train (paper §4.1); every plane of a field
is cut with the same boxes, so a crop is one z-stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from blurlatent.errors import UsageError

Box = tuple[int, int, bool]  # (top, left, flip left-right)


def split_counts(n: int, ratios: Sequence[float]) -> dict[str, int]:
    """Field counts per split: test rounded from its ratio, val rounded down, train takes the rest — the paper's
    538/76/154 of BBBC006's 768 fields at 70:10:20 (val rounded would give 537/77/154); every split with a
    positive ratio gets at least one field. Raises UsageError when ``n`` is too small for that."""
    train_r, val_r, test_r = ratios
    total = train_r + val_r + test_r
    needed = sum(r > 0 for r in ratios)
    if n < needed:
        raise UsageError(f"{n} complete field(s) cannot fill {needed} splits; add fields or set a split ratio "
                         "to 0 (e.g. split 100:0:0)")
    test = int(n * test_r / total + 0.5)
    val = int(n * val_r / total + 1e-9)  # rounded down (the 1e-9: 0.1 × 30 must give 3, not 2)
    test = max(test, 1) if test_r > 0 else 0
    val = max(val, 1) if val_r > 0 else 0
    if train_r > 0:
        while n - test - val < 1:  # give train its field from the larger of the two others
            if test >= val and test > 1:
                test -= 1
            else:
                val -= 1
    return {"test": test, "val": val, "train": n - test - val}


def assign_splits(fields: Sequence[tuple[str, int]], counts: dict[str, int]) -> dict[str, list[tuple[str, int]]]:
    """The fields of each split: ``fields`` (sorted by name) are taken test first, then val, then train."""
    order = iter(fields)
    return {name: [next(order) for _ in range(counts[name])] for name in ("test", "val", "train")}


def ten_crop_boxes(height: int, width: int, crop: int) -> list[Box]:
    """(top, left, hflip) of torchvision's ``ten_crop(img, crop)`` in its order: tl, tr, bl, br, centre,
    then the same five cut from the horizontally flipped image (boxes given in the unflipped image)."""
    five = five_crop_boxes(height, width, crop)
    flipped = [(top, width - crop - left, True) for top, left, _ in five]
    return five + flipped


def five_crop_boxes(height: int, width: int, crop: int) -> list[Box]:
    """(top, left, False) of torchvision's ``five_crop``: tl, tr, bl, br, centre."""
    # centre as torchvision.transforms.functional.center_crop: Python's round (half to even)
    centre = (int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0)), False)
    return [(0, 0, False), (0, width - crop, False), (height - crop, 0, False), (height - crop, width - crop, False),
            centre]


def crop_boxes(height: int, width: int, crop: int, test_crops: str) -> dict[str, list[Box]]:
    """Boxes per split: ten crops for train and val; the centre crop (or ten) for test."""
    ten = ten_crop_boxes(height, width, crop)
    return {"train": ten, "val": ten, "test": ten if test_crops == "ten" else five_crop_boxes(height, width, crop)[4:]}


def cut(image: np.ndarray, box: Box, crop: int) -> np.ndarray:
    """The ``crop`` x ``crop`` patch of ``image`` at ``box`` (mirrored left-right when the box says so)."""
    top, left, flip = box
    patch = image[top : top + crop, left : left + crop]
    return patch[:, ::-1] if flip else patch
