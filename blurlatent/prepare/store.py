"""The prepared store: memory-mapped uint8 crops that training reads with no decoding.

Layout of a store folder (``prepare`` fills the arrays in place and calls ``write_manifest``;
``write_store`` writes whole arrays, for tests and tools)::

    manifest.json                  everything needed to trust and reuse the data (see below)
    w1_train.npy  w1_val.npy  w1_test.npy      uint8 [crops, planes, H, W]
    w1_test_full.npy                           uint8 [fields, planes, H0, W0] whole test fields

``manifest.json`` holds: format_version, tool version, planes (list of z), channels, crop size,
split ratios, the images' scale (µm per pixel and between planes, synth's optics: ``Store.scale``),
normalization (method, percentiles, and for ``stack`` the reference plane nearest focus),
per-field records (name, split, source file per plane and its scale lo/hi: with ``stack`` one scale
shared by every plane of the field), crop boxes, and per array file its sha256 (``checksums``), a hash of
16 blocks spread over it (``samples``) and its size and mtime (``stamps``): ``Store.verify`` trusts an
array whose size, mtime and sampled blocks are as written, and reads the whole file only when its mtime
differs (a copy, or a change).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import PIXEL_SIZE_UM, PLANE_STEP_UM
from blurlatent.errors import UsageError
from blurlatent.files.atomic import sha256_file
from blurlatent.files.images import read_source
from blurlatent.files.stacks import read_stack
from blurlatent.prepare.discover import Inventory, stack_data
from blurlatent.synth.generator import RECORD, written_by_synth

log = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
SCALE_KEYS = ("pixel_size_um", "z_step_um", "optics")  # the images' physical scale (``Store.scale``)
SAMPLE_BLOCKS, SAMPLE_BYTES = 16, 4096


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
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{manifest}: corrupt manifest ({exc}); rerun prepare with {{prepare:force=True}}",
                             "prepare:force") from None
        if not isinstance(self.manifest, dict):
            raise UsageError(f"{manifest}: corrupt manifest (a JSON {type(self.manifest).__name__}, not an object); "
                             "rerun prepare with {prepare:force=True}", "prepare:force")
        version = self.manifest.get("format_version")
        if version != STORE_FORMAT_VERSION:
            raise UsageError(f"{manifest}: store format {version}, this blurlatent reads {STORE_FORMAT_VERSION}; "
                             "rerun prepare")
        check_manifest(self.manifest, manifest)

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

    @property
    def scale(self) -> dict:
        """The images' physical scale, as ``DataConfig`` records it: ``pixel_size_um`` (µm per pixel), ``z_step_um``
        (µm between stored planes) and ``optics`` (synth's NA and wavelength), None where unknown. A store prepared
        before they were recorded: BBBC006's scale for BBBC006's layout (real or synth), unknown for own stacks."""
        if "pixel_size_um" in self.manifest:
            return {key: self.manifest.get(key) for key in SCALE_KEYS}
        own = "stacks" in (self.manifest.get("source_kinds") or ()) or "focus" in self.manifest
        return {"pixel_size_um": None if own else PIXEL_SIZE_UM, "z_step_um": None if own else PLANE_STEP_UM,
                "optics": None}

    def plane_index(self, plane: int) -> int:
        """Position of focal plane ``plane`` on the arrays' plane axis. Raises UsageError when it is absent."""
        try:
            return self.planes.index(plane)
        except ValueError:
            raise UsageError(f"{self.path}: plane {plane} is not in this store (planes {self.planes}); "
                             "prepare with {prepare:planes} that include it", "prepare:planes") from None

    def check_channel(self, channel: str) -> None:
        """UsageError when ``channel`` is not in this store."""
        if channel not in self.channels:
            raise UsageError(f"{self.path}: channel {channel!r} is not in this store (channels {self.channels}); "
                             "use one of them or prepare it")

    def verify(self, channels: list[str] | None = None) -> None:
        """Check the arrays of ``channels`` (default: all) against what ``write_manifest`` recorded, before
        anything trusts them. Cheap when nothing changed (size, mtime and 16 sampled blocks); when an array's
        mtime differs (a copied store, or a changed file) its sha256 decides. Stores without stamps (older
        blurlatent) get the header-and-size check only. Raises UsageError naming the file and the fix."""
        stamps, samples = self.manifest.get("stamps") or {}, self.manifest.get("samples") or {}
        for name, digest in sorted((self.manifest.get("checksums") or {}).items()):
            if channels is not None and name.split("_", 1)[0] not in channels:
                continue
            file = self.path / name
            try:
                st = os.stat(file)
            except OSError:
                raise damaged(file, "missing") from None
            if not stat.S_ISREG(st.st_mode):
                raise damaged(file, "not a regular file")
            if name not in stamps:
                self.array(*name[:-4].split("_", 1))  # header and size
                continue
            size, mtime = stamps[name]
            if st.st_size != size:
                raise damaged(file, f"{st.st_size} bytes, prepare wrote {size}")
            if st.st_mtime_ns == mtime:
                if name in samples and samples[name] != sampled_digest(file):
                    raise damaged(file, "its bytes differ from what prepare wrote")
                continue
            log.info("%s: modified or copied since prepare (mtime differs); checking its sha256", file)
            if sha256_file(file) != digest:
                raise damaged(file, f"sha256 differs from {MANIFEST}")

    def array(self, channel: str, split: str) -> np.ndarray:
        """uint8 [crops, planes, H, W], memory-mapped."""
        self.check_channel(channel)
        if split not in SPLITS and split != "test_full":
            raise UsageError(f"unknown split {split!r}; use train, val or test")
        file = self.path / f"{channel}_{split}.npy"
        try:
            array = np.load(file, mmap_mode="r")
        except (OSError, ValueError) as exc:  # missing, truncated (mmap past the end) or not an .npy at all
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise UsageError(f"{file}: store array is missing or damaged ({reason}); "
                             "rerun `blurlatent prepare` with {prepare:force=True}", "prepare:force") from None
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[1] != len(self.planes):
            # float data could carry NaN into training; prepare writes uint8 [crops, planes, H, W] only
            raise UsageError(f"{file}: store array is {array.dtype} {list(array.shape)}, not uint8 [crops, "
                             f"{len(self.planes)} planes, H, W]; rerun `blurlatent prepare` with "
                             "{prepare:force=True}", "prepare:force")
        return array

    def full_test(self, channel: str) -> np.ndarray:
        """uint8 [fields, planes, H0, W0]: whole test fields, for whole-image evaluation."""
        return self.array(channel, "test_full")

    def fields(self, split: str | None = None, channel: str | None = None) -> list[dict]:
        """The manifest's field records (one per field and channel), optionally of one split and channel."""
        records = self.manifest["fields"]
        return [r for r in records
                if (split is None or r["split"] == split) and (channel is None or r["channel"] == channel)]

    def source_image(self, record: dict, plane: int) -> np.ndarray:
        """The original (16-bit) image of a field record (from ``fields()``) at ``plane``: a file, a member
        of a downloaded zip, or a plane of a z-stack. Raises UsageError when the plane is not in the record or
        the source is gone."""
        entry = next((p for p in record["planes"] if p["plane"] == plane), None)
        if entry is None:
            raise UsageError(f"{self.path}: field {record['name']} has no plane {plane} (planes {self.planes}); "
                             "pick one of those")
        if entry.get("z") is not None:  # a plane of one of the user's z-stacks (``ownstacks``)
            return stack_data(entry["file"], entry.get("stack_channel", 0))[entry["z"]]
        return read_source(entry["file"], entry.get("member") or None)

    def triplet_index(self, triplets) -> list[tuple[int, int, int]]:
        """(left, target, right) focal planes → their indices on the arrays' plane axis (what
        ``data.TripletDataset`` takes). Raises UsageError for a plane the store lacks."""
        return [(self.plane_index(a), self.plane_index(b), self.plane_index(c)) for a, b, c in triplets]


def source_scale(src: Path, inventory: Inventory) -> dict:
    """The manifest's ``SCALE_KEYS`` for a store made from ``src``: own stacks, the first stack's pixel size and z step
    (None where its file does not say); BBBC006's layout, BBBC006's scale, or synth's record's with its optics."""
    if inventory.layout == "stacks":
        first = next(source for plane in inventory.sources.values() for source in plane.values())
        x, _, z = read_stack(first.path, channel=first.channel).pixel_size
        return {"pixel_size_um": x, "z_step_um": z, "optics": None}
    if not written_by_synth(src / RECORD):
        return {"pixel_size_um": PIXEL_SIZE_UM, "z_step_um": PLANE_STEP_UM, "optics": None}
    optics = json.loads((src / RECORD).read_text()).get("optics") or {}
    wavelength = (optics.get("changed") or {}).get("wavelength_um")  # None: each channel's dye
    return {"pixel_size_um": optics.get("pixel_um", PIXEL_SIZE_UM), "z_step_um": optics.get("z_step_um", PLANE_STEP_UM),
            "optics": {"na": optics.get("na"), **({"wavelength_um": wavelength} if wavelength else {})}}


def damaged(file: Path, reason: str) -> UsageError:
    return UsageError(f"{file}: store array is missing or damaged ({reason}); "
                      "rerun `blurlatent prepare` with {prepare:force=True} to rebuild the store", "prepare:force")


def sampled_digest(file: Path) -> str:
    """sha256 of the size and ``SAMPLE_BLOCKS`` blocks of ``SAMPLE_BYTES`` spread evenly over ``file``, the
    first (the .npy header) and the last included: 64 KiB read whatever the file's size."""
    size = os.path.getsize(file)
    digest = hashlib.sha256(str(size).encode())
    with open(file, "rb") as handle:
        for i in range(SAMPLE_BLOCKS):
            handle.seek(max(0, size - SAMPLE_BYTES) * i // (SAMPLE_BLOCKS - 1))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def check_manifest(manifest: dict, source: Path) -> None:
    """UsageError naming ``source`` unless the keys every reader relies on are there with the right types:
    planes (ints) and channels (strings), both non-empty, and fields (records with a split and a channel)."""
    def listed(key, test, empty_ok=False) -> bool:
        value = manifest.get(key)
        return isinstance(value, list) and (empty_ok or bool(value)) and all(test(v) for v in value)

    def record(r) -> bool:
        return isinstance(r, dict) and isinstance(r.get("split"), str) and isinstance(r.get("channel"), str)

    problems = [key for key, ok in (
        ("planes", listed("planes", lambda p: isinstance(p, int) and not isinstance(p, bool))),
        ("channels", listed("channels", lambda c: isinstance(c, str))),
        ("fields", listed("fields", record, empty_ok=True)),
    ) if not ok]
    if problems:
        raise UsageError(f"{source}: damaged manifest: {', '.join(problems)} missing or malformed; "
                         "rerun `blurlatent prepare` with {prepare:force=True}", "prepare:force")


def write_store(path: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays and manifest into ``path`` (a fresh temp folder the caller renames into place)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", np.ascontiguousarray(array, dtype=np.uint8))
    write_manifest(path, manifest)


def write_manifest(path: Path, manifest: dict) -> dict:
    """Checksum every ``*.npy`` already in ``path`` and write ``manifest.json`` (for writers that fill
    ``np.lib.format.open_memmap`` arrays in place rather than hand whole arrays to ``write_store``)."""
    files = sorted(path.glob("*.npy"))
    checksums = {file.name: sha256_file(file) for file in files}
    samples = {file.name: sampled_digest(file) for file in files}
    stamps = {file.name: [(st := file.stat()).st_size, st.st_mtime_ns] for file in files}
    manifest = dict(manifest, format_version=STORE_FORMAT_VERSION, checksums=checksums, samples=samples,
                    stamps=stamps)
    (path / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest

