"""The real in-focus fields: ``manifest.json`` and the images and label masks it names, sha256 checked.

The images and masks are not committed (data from a fetched repository); ``MissingData`` carries the one line
that says how to rebuild them, which the bench prints before exiting with status 2.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "real"
SPLITS = ("train", "val", "test")
REBUILD = ("real fields missing in {data} ({what}; the images and masks are not committed): rebuild them with "
           "`python benchmarks/data/real/make_real_set.py SOURCE_DIR --out {data}` from a copy of the GitHub "
           "repository DeepTrackAI/cell_counting_dataset (benchmarks/data/real/README.md), or pass --data DIR")


class MissingData(Exception):
    """The data folder lacks the manifest or a file it names, or a file's sha256 differs: the message is the fix."""


@dataclass(frozen=True)
class Field:
    """One real field: ``image`` float64 [H, W] (the camera's counts, in focus), ``labels`` int32 [H, W]
    (0 background, 1…n one per nucleus), its manifest ``stem``, ``split`` and pixel size."""

    stem: str
    split: str
    image: np.ndarray
    labels: np.ndarray
    pixel_size_um: float


def read_manifest(data: Path) -> list[dict]:
    """The manifest's entries; MissingData (with the rebuild line) when there is none or a named file is absent."""
    path = Path(data) / "manifest.json"
    if not path.is_file():
        raise MissingData(REBUILD.format(data=data, what="no manifest.json"))
    entries = json.loads(path.read_text())
    absent = [e[key] for e in entries for key in ("file", "mask") if not (Path(data) / e[key]).is_file()]
    if absent:
        raise MissingData(REBUILD.format(data=data, what=f"{len(absent)} of {2 * len(entries)} image/mask files "
                                                         f"absent, e.g. {absent[0]}"))
    return entries


def entries_of(entries: list[dict], split: str, limit: int | None = None) -> list[dict]:
    """The entries of ``split`` in manifest order, at most ``limit`` of them (None: all)."""
    chosen = [e for e in entries if e["split"] == split]
    return chosen[:limit] if limit is not None else chosen


def stem(entry: dict) -> str:
    """The field's short name: the image file's stem without the acquisition UUID, e.g. ``IXMtest_E12_s9``."""
    name = Path(entry["file"]).stem
    return "_".join(name.split("_")[:3]) if name.startswith("IXMtest_") else name


def checked_bytes(data: Path, relative: str, sha256: str) -> bytes:
    """The file's bytes once their sha256 matches the manifest's; MissingData otherwise."""
    raw = (Path(data) / relative).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise MissingData(REBUILD.format(data=data, what=f"{relative} has sha256 {digest[:12]}…, the manifest "
                                                         f"says {sha256[:12]}…"))
    return raw


def center_crop(array: np.ndarray, crop: tuple[int, int] | None) -> np.ndarray:
    """The central ``crop`` (H, W) of ``array``'s last two axes (all of an axis shorter than the crop)."""
    if crop is None:
        return array
    h, w = array.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return array[..., top:top + ch, left:left + cw]


def load_field(data: Path, entry: dict, crop: tuple[int, int] | None = None) -> Field:
    """One field, its image and mask sha256-checked against ``entry`` (MissingData when either differs), optionally
    centre-cropped; labels renumbered 1…n after the crop (nuclei cut by it keep their visible part)."""
    image = tifffile.imread(io.BytesIO(checked_bytes(data, entry["file"], entry["sha256"])))
    labels = tifffile.imread(io.BytesIO(checked_bytes(data, entry["mask"], entry["mask_sha256"])))
    if image.shape != labels.shape or image.ndim != 2:
        raise MissingData(f"{entry['file']}: image {image.shape} and mask {labels.shape} are not one 2-D field")
    image, labels = center_crop(image, crop), center_crop(labels, crop)
    present = np.unique(labels[labels > 0])
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[present] = np.arange(1, len(present) + 1)
    return Field(stem(entry), entry["split"], image.astype(np.float64), lookup[labels],
                 float(entry.get("pixel_size_um", 0.645)))
