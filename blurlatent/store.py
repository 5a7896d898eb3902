"""The prepared store: memory-mapped uint8 crops that training reads with no decoding.

Layout of a store folder (``prepare`` fills the arrays in place and calls ``write_manifest``;
``write_store`` writes whole arrays, for tests and tools)::

    manifest.json                  everything needed to trust and reuse the data (see below)
    w1_train.npy  w1_val.npy  w1_test.npy      uint8 [crops, planes, H, W]
    w1_test_full.npy                           uint8 [fields, planes, H0, W0] whole test fields

``manifest.json`` holds: format_version, tool version, planes (list of z), channels, crop size,
split ratios, normalization (method, percentiles, and for ``stack`` the reference plane nearest focus),
per-field records (name, split, source file per plane and its scale lo/hi: with ``stack`` one scale
shared by every plane of the field), crop boxes, and a sha256 per array file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import UsageError
from .files import sha256_file
from .imageio import read_source

STORE_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


class Store:
    """Read-only view of a prepared store.

    >>> store = Store("prepared/")
    >>> crops = store.array("w1", "train")          # np.memmap uint8 [crops, planes, H, W]
    >>> index = store.triplet_index([(0, 8, 16)])    # plane indices for data.TripletDataset
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise UsageError(f"{self.path}: not a prepared store (no manifest.json); "
                             f"run `blurlatent prepare SRC/ {self.path}` first")
        try:
            self.manifest = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise UsageError(f"{manifest}: corrupt manifest ({exc}); rerun prepare with force=True") from None
        version = self.manifest.get("format_version")
        if version != STORE_FORMAT_VERSION:
            raise UsageError(f"{manifest}: store format {version}, this blurlatent reads {STORE_FORMAT_VERSION}; "
                             "rerun prepare")

    @property
    def planes(self) -> list[int]:
        return list(self.manifest["planes"])

    @property
    def channels(self) -> list[str]:
        return list(self.manifest["channels"])

    @property
    def normalize(self) -> str:
        """How the 8-bit data was scaled: ``minmax``, ``percentile`` or ``stack`` (``intensity``'s names);
        training copies it into the checkpoint so inference scales images the same way."""
        norm = self.manifest.get("normalization", self.manifest.get("normalize", "minmax"))
        return str(norm.get("method", "minmax") if isinstance(norm, dict) else norm)

    def plane_index(self, plane: int) -> int:
        """Position of focal plane ``plane`` on the arrays' plane axis. Raises UsageError when it is absent."""
        try:
            return self.planes.index(plane)
        except ValueError:
            raise UsageError(f"{self.path}: plane {plane} is not in this store (planes {self.planes}); "
                             "prepare with planes that include it") from None

    def check_channel(self, channel: str) -> None:
        """UsageError when ``channel`` is not in this store."""
        if channel not in self.channels:
            raise UsageError(f"{self.path}: channel {channel!r} is not in this store (channels {self.channels}); "
                             "use one of them or prepare it")

    def array(self, channel: str, split: str) -> np.ndarray:
        """uint8 [crops, planes, H, W], memory-mapped."""
        self.check_channel(channel)
        if split not in SPLITS and split != "test_full":
            raise UsageError(f"unknown split {split!r}; use train, val or test")
        file = self.path / f"{channel}_{split}.npy"
        try:
            return np.load(file, mmap_mode="r")
        except (OSError, ValueError) as exc:  # missing, truncated (mmap past the end) or not an .npy at all
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(f"{file}: store array is missing or damaged ({reason}); "
                             "rerun `blurlatent prepare` with force=True") from None

    def full_test(self, channel: str) -> np.ndarray:
        """uint8 [fields, planes, H0, W0]: whole test fields, for whole-image evaluation."""
        return self.array(channel, "test_full")

    def fields(self, split: str | None = None, channel: str | None = None) -> list[dict]:
        """The manifest's field records (one per field and channel), optionally of one split and channel."""
        records = self.manifest["fields"]
        return [r for r in records
                if (split is None or r["split"] == split) and (channel is None or r["channel"] == channel)]

    def source_image(self, record: dict, plane: int) -> np.ndarray:
        """The original (16-bit) image of a field record (from ``fields()``) at ``plane``: a file, or a member
        of a downloaded zip. Raises UsageError when the plane is not in the record or the source is gone."""
        entry = next((p for p in record["planes"] if p["plane"] == plane), None)
        if entry is None:
            raise UsageError(f"{self.path}: field {record['name']} has no plane {plane} (planes {self.planes}); "
                             "pick one of those")
        return read_source(entry["file"], entry.get("member") or None)

    def triplet_index(self, triplets) -> list[tuple[int, int, int]]:
        """(left, target, right) focal planes → their indices on the arrays' plane axis (what
        ``data.TripletDataset`` takes). Raises UsageError for a plane the store lacks."""
        return [tuple(self.plane_index(p) for p in t) for t in triplets]


def write_store(path: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays and manifest into ``path`` (a fresh temp folder the caller renames into place)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", np.ascontiguousarray(array, dtype=np.uint8))
    write_manifest(path, manifest)


def write_manifest(path: Path, manifest: dict) -> dict:
    """Checksum every ``*.npy`` already in ``path`` and write ``manifest.json`` (for writers that fill
    ``np.lib.format.open_memmap`` arrays in place rather than hand whole arrays to ``write_store``)."""
    checksums = {file.name: sha256_file(file) for file in sorted(path.glob("*.npy"))}
    manifest = dict(manifest, format_version=STORE_FORMAT_VERSION, checksums=checksums)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest

