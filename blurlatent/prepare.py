"""``prepare``: BBBC006v1-layout z-stacks (folders or the downloaded zips) → a memory-mapped uint8 store.

Steps: find the ``BBBC006_v1_images_z_XX`` folders or zips → match each field across planes by
(well, site, channel), never by file name (the UUID differs on every plane) → skip incomplete fields
with a warning → split the fields sorted by name in the order test, val, train (paper §4.1) → decode in
parallel, scale 16 → 8 bit, cut the same crop boxes on every plane → ``store.write_manifest``.

The store is built in a temp folder beside OUT and renamed into place, so an interrupted run leaves
no half-written store. The manifest records a fingerprint of the inputs (file sizes and times, zip
member CRCs) and every option, so a rerun on unchanged input returns at once ("up to date").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .errors import UsageError
from .bbbc006 import IN_FOCUS_PLANE, BBBC_PLANE_DIR, FieldKey, format_planes, parse_bbbc_name
from .files import check_output_folder, make_temp_dir, replace_folder
from .imageio import close_zips, read_source
from .intensity import NORMALIZATIONS, PERCENTILES, plane_ranges, to_unit
from .progress import progress_bar
from .store import SPLITS, STORE_FORMAT_VERSION, Store, write_manifest

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Source:
    """One image: a file, or a member of a zip."""

    plane: int
    key: FieldKey
    path: str  # file path, or the zip's path
    member: str | None = None  # member name inside the zip

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def decode_source(source: Source) -> np.ndarray:
    """The 2-D image of one source (uint16 for BBBC006). Raises UsageError naming the file or member."""
    return read_source(source.path, source.member)


# --- discovery ---------------------------------------------------------------------------------


@dataclass
class Inventory:
    """What SRC holds for the asked planes: sources[plane][FieldKey], and a fingerprint of those inputs."""

    sources: dict[int, dict[FieldKey, Source]]
    kinds: dict[int, str]  # plane -> "folder" | "zip"
    stamp: list  # (name, size, time-or-crc) rows: what the fingerprint hashes
    files: int = 0  # files in those planes
    ignored: int = 0  # ... of which without a BBBC006 name


def discover(src: str | Path, planes: Sequence[int], channels: Sequence[str]) -> Inventory:
    """Index the plane folders/zips of ``src`` for ``planes`` and ``channels`` (files are not read).

    Raises UsageError when SRC or a plane is missing, a zip is unreadable, or a field appears twice in a plane."""
    src = Path(src).resolve()  # the manifest's pointers to the 16-bit sources must work from anywhere
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder; pass the folder that holds the BBBC006_v1_images_z_XX folders or zips")
    found: dict[int, dict[str, Path]] = {}
    for entry in src.iterdir():
        match = BBBC_PLANE_DIR.match(entry.name)
        if match and (entry.is_dir() or (entry.suffix == ".zip" and entry.is_file())):
            found.setdefault(int(match["plane"]), {})["zip" if entry.suffix == ".zip" else "folder"] = entry
    sources: dict[int, dict[FieldKey, Source]] = {}
    kinds: dict[int, str] = {}
    stamp: list = []
    files_total = ignored_total = 0
    wanted = set(channels)
    for plane in planes:
        if plane not in found:
            raise UsageError(
                f"{src}: plane {plane} not found (expected BBBC006_v1_images_z_{plane:02d}/ or BBBC006_v1_images_z_{plane:02d}.zip); "
                "choose --planes that exist or complete the download"
            )
        # an unpacked folder beats its zip: same content, no decompression
        kind = "folder" if "folder" in found[plane] else "zip"
        location = found[plane][kind]
        kinds[plane] = kind
        per_plane: dict[FieldKey, Source] = {}
        if kind == "folder":
            entries = []
            for file in sorted(location.rglob("*")):
                if file.is_file():
                    st = file.stat()
                    entries.append((file, str(file.relative_to(src)), st.st_size, st.st_mtime_ns))
            members = [(name, Source(plane, None, str(file)), size, mtime) for file, name, size, mtime in entries]
        else:
            try:
                with zipfile.ZipFile(location) as archive:
                    infos = [i for i in archive.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError) as exc:
                raise UsageError(f"{location}: not a readable zip ({exc}); re-download it") from None
            members = [(f"{location.name}:{i.filename}", Source(plane, None, str(location), i.filename), i.file_size, i.CRC) for i in sorted(infos, key=lambda i: i.filename)]
        ignored = 0
        for name, bare, size, tag in members:
            key = parse_bbbc_name(bare.member or bare.path)
            if key is None:
                ignored += 1
                continue
            if key.channel not in wanted:
                continue
            source = Source(plane, key, bare.path, bare.member)
            if key in per_plane:
                raise UsageError(f"{per_plane[key].label} and {source.label}: two files for field {key.name} in plane {plane}; remove one")
            per_plane[key] = source
            stamp.append((name, size, tag))
        if ignored:
            log.info("%s: %d files without BBBC006 names ignored", location, ignored)
        ignored_total += ignored
        files_total += len(members)
        sources[plane] = per_plane
    return Inventory(sources, kinds, stamp, files_total, ignored_total)


# --- splits and crops --------------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    """``70:10:20`` → (train, val, test) ratios as given. Raises UsageError."""
    try:
        parts = tuple(float(v) for v in str(text).split(":"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise UsageError(f"split {text!r} is not TRAIN:VAL:TEST with non-negative numbers; use e.g. 70:10:20")
    return parts  # type: ignore[return-value]


def split_counts(n: int, ratios: Sequence[float]) -> dict[str, int]:
    """Field counts per split: test and val rounded from the ratios, train takes the rest; every split with
    a positive ratio gets at least one field. Raises UsageError when ``n`` is too small for that."""
    train_r, val_r, test_r = ratios
    total = train_r + val_r + test_r
    needed = sum(r > 0 for r in ratios)
    if n < needed:
        raise UsageError(f"{n} complete field(s) cannot fill {needed} splits; add fields or set a split ratio to 0 (e.g. --split 100:0:0)")
    test = int(n * test_r / total + 0.5)
    val = int(n * val_r / total + 0.5)
    test = max(test, 1) if test_r > 0 else 0
    val = max(val, 1) if val_r > 0 else 0
    if train_r > 0:
        while n - test - val < 1:  # give train its field from the larger of the two others
            if test >= val and test > 1:
                test -= 1
            else:
                val -= 1
    return {"test": test, "val": val, "train": n - test - val}


def ten_crop_boxes(height: int, width: int, crop: int) -> list[tuple[int, int, bool]]:
    """(top, left, hflip) of torchvision's ``ten_crop(img, crop)`` in its order: tl, tr, bl, br, centre,
    then the same five cut from the horizontally flipped image (boxes given in the unflipped image)."""
    five = five_crop_boxes(height, width, crop)
    flipped = [(top, width - crop - left, True) for top, left, _ in five]
    return five + flipped


def five_crop_boxes(height: int, width: int, crop: int) -> list[tuple[int, int, bool]]:
    # centre as torchvision.transforms.functional.center_crop: Python's round (half to even)
    centre = (int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0)), False)
    return [(0, 0, False), (0, width - crop, False), (height - crop, 0, False), (height - crop, width - crop, False), centre]


def cut(image: np.ndarray, box: tuple[int, int, bool], crop: int) -> np.ndarray:
    top, left, flip = box
    patch = image[top : top + crop, left : left + crop]
    return patch[:, ::-1] if flip else patch


def to_uint8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """[lo, hi] → 0..255, rounded (the paper's min–max scaling when lo/hi are the image's min/max)."""
    return np.rint(to_unit(image, lo, hi) * 255.0).astype(np.uint8)


def scales(images: Sequence[np.ndarray], planes: Sequence[int], method: str) -> list[tuple[float, float]]:
    """(lo, hi) per plane image. ``minmax``/``percentile``: each image its own; ``stack``: one scale for all,
    from the percentiles of the plane nearest the focus (z16), which keeps how brightness changes with z."""
    return plane_ranges(images, method, reference=int(np.argmin([abs(p - IN_FOCUS_PLANE) for p in planes])))


@dataclass
class FieldJob:
    name: str  # "a01_s1"
    split: str
    index: int  # position of the field within its split
    sources: dict[str, list[Source]]  # channel -> one source per plane
    planes: list[int]
    boxes: list[tuple[int, int, bool]]
    crop: int
    normalize: str
    shape: tuple[int, int]
    store: str  # folder holding the preallocated <channel>_<split>.npy arrays


def process_field(job: FieldJob) -> dict[str, list[tuple[float, float]]]:
    """Decode one field's planes and channels and write its crops (and, for test fields, the whole 8-bit
    images) straight into the store's preallocated arrays: a worker returns only the (lo, hi) per
    channel and plane, so no image data crosses between processes. Raises UsageError naming a bad file."""
    out = {}
    n = len(job.boxes)
    for channel, sources in job.sources.items():
        images = []
        for source in sources:
            image = decode_source(source)
            if image.shape != job.shape:
                raise UsageError(
                    f"{source.label}: image is {image.shape[1]}x{image.shape[0]}, other fields are {job.shape[1]}x{job.shape[0]}; "
                    "all fields of a store must have one size"
                )
            images.append(image)
        lohi = scales(images, job.planes, job.normalize)
        crops = np.load(Path(job.store) / f"{channel}_{job.split}.npy", mmap_mode="r+")[job.index * n : (job.index + 1) * n]
        full = np.load(Path(job.store) / f"{channel}_test_full.npy", mmap_mode="r+")[job.index] if job.split == "test" else None
        for p, (image, (lo, hi)) in enumerate(zip(images, lohi)):
            if full is not None:
                full[p] = to_uint8(image, lo, hi)
            for b, box in enumerate(job.boxes):
                # scale only the cropped pixels: train fields never need the whole 8-bit image
                crops[b, p] = cut(full[p], box, job.crop) if full is not None else to_uint8(cut(image, box, job.crop), lo, hi)
        del crops, full  # unmap; the shared page cache already holds the data for every process
        out[channel] = lohi
    return out


# --- the command -------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    path: Path
    up_to_date: bool
    counts: dict[str, int]  # fields per split
    crops: dict[str, int]  # crops per split (per channel)
    skipped: list[str] = field(default_factory=list)  # one warning line per skipped field
    seconds: float = 0.0


def prepare(
    src: str | Path,
    out: str | Path,
    channels: Sequence[str] = ("w1", "w2"),
    planes: Sequence[int] = tuple(range(0, 17, 2)),
    crop: int = 128,
    split: Sequence[float] = (70, 10, 20),
    normalize: str = "minmax",
    test_crops: str = "center",
    workers: int = 2,
    strict: bool = False,
    force: bool = False,
    progress: bool = False,
) -> PrepareResult:
    """Build the store at ``out`` from the BBBC006-layout z-stacks in ``src`` (see the module docstring).

    ``split`` is (train, val, test) ratios. Writes ``<ch>_{train,val,test}.npy`` uint8 [crops, planes, crop,
    crop], ``<ch>_test_full.npy`` uint8 [test fields, planes, H, W] and ``manifest.json``.
    Raises UsageError for bad options, unreadable/corrupt inputs (naming the file), incomplete fields with
    ``strict``, or an existing different store without ``force``.
    """
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    channels = list(dict.fromkeys(channels))
    planes = sorted(set(int(p) for p in planes))
    if not channels or any(len(c) != 2 or c[0] != "w" or not c[1].isdigit() for c in channels):
        raise UsageError(f"channels {channels}: use BBBC006 channel names such as w1,w2")
    if normalize not in NORMALIZATIONS:
        raise UsageError(f"normalize {normalize!r}: use one of {', '.join(NORMALIZATIONS)}")
    if test_crops not in ("center", "ten"):
        raise UsageError(f"test crops {test_crops!r}: use center or ten")
    if crop < 1:
        raise UsageError(f"crop {crop}: must be a positive number of pixels, e.g. 128")
    ratios = tuple(float(r) for r in split)
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise UsageError(f"split {split}: need three non-negative ratios TRAIN:VAL:TEST, e.g. 70:10:20")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise UsageError(f"{out}: output is inside the source folder {src}; write the store elsewhere")

    inventory = discover(src, planes, channels)
    if inventory.files and inventory.ignored == inventory.files:
        # nothing in the plane folders/zips is named like BBBC006: wrong files, not a wrong channel
        raise UsageError(
            f"{src}: none of the {inventory.ignored} files in planes {format_planes(planes)} has a BBBC006 name "
            "(mcf-z-stacks-03212011_a01_s1_w1<UUID>.tif); pass the BBBC006_v1 download (folders or zips)"
        )
    for channel in channels:
        if not any(k.channel == channel for per in inventory.sources.values() for k in per):
            raise UsageError(f"{src}: no {channel} files in planes {format_planes(planes)}; choose --channels that exist")

    # fields are (well, site); a field is kept only with every channel on every plane
    names = sorted({(k.well, k.site) for per in inventory.sources.values() for k in per})
    complete, skipped = [], []
    for well, site in names:
        missing = []
        for channel in channels:
            key = FieldKey(well, site, channel)
            gone = [p for p in planes if key not in inventory.sources[p]]
            if gone:
                missing.append(f"{channel} planes {', '.join(str(p) for p in gone)}")
        if missing:
            skipped.append(f"field {well}_s{site}: missing {'; '.join(missing)}")
        else:
            complete.append((well, site))
    if skipped and strict:
        raise UsageError(f"{src}: {skipped[0]} ({len(skipped)} incomplete field(s)); complete the data or drop --strict to skip them")
    for line in skipped[:20]:
        log.warning("%s; skipped", line)
    if len(skipped) > 20:
        log.warning("... and %d more incomplete fields skipped", len(skipped) - 20)
    if not complete:
        raise UsageError(f"{src}: no field has all planes {format_planes(planes)} for {','.join(channels)}; check --planes and --channels")

    counts = split_counts(len(complete), ratios)
    assignment = {}
    order = iter(complete)  # sorted by name; the paper takes test first, then val, then train
    for name in ("test", "val", "train"):
        for _ in range(counts[name]):
            assignment[next(order)] = name

    options = {
        "channels": channels, "planes": planes, "crop": crop, "split": list(ratios),
        "normalize": normalize, "test_crops": test_crops,
    }
    fingerprint = hashlib.sha256(
        json.dumps([STORE_FORMAT_VERSION, __version__, options, sorted(map(list, inventory.stamp))], sort_keys=True).encode()
    ).hexdigest()
    if _up_to_date(out, fingerprint):
        crops_now = {s: int(Store(out).array(channels[0], s).shape[0]) for s in SPLITS}
        return PrepareResult(out, True, counts, crops_now, skipped, time.perf_counter() - start)
    _check_output(out, force)

    first = inventory.sources[planes[0]][FieldKey(*complete[0], channels[0])]
    try:
        height, width = decode_source(first).shape
    finally:
        close_zips()
    if crop > min(height, width):
        raise UsageError(f"crop {crop} is larger than the {width}x{height} images; choose --crop <= {min(height, width)}")
    boxes = {
        "train": ten_crop_boxes(height, width, crop),
        "val": ten_crop_boxes(height, width, crop),
        "test": ten_crop_boxes(height, width, crop) if test_crops == "ten" else five_crop_boxes(height, width, crop)[4:],
    }
    fields_in = {s: [f for f in complete if assignment[f] == s] for s in SPLITS}
    position = {f: i for s in SPLITS for i, f in enumerate(fields_in[s])}

    tmp = make_temp_dir(out)
    try:
        for c in channels:  # preallocate; workers fill their own rows
            for s in SPLITS:
                shape = (len(fields_in[s]) * len(boxes[s]), len(planes), crop, crop)
                np.lib.format.open_memmap(tmp / f"{c}_{s}.npy", mode="w+", dtype=np.uint8, shape=shape).flush()
            full_shape = (len(fields_in["test"]), len(planes), height, width)
            np.lib.format.open_memmap(tmp / f"{c}_test_full.npy", mode="w+", dtype=np.uint8, shape=full_shape).flush()
        jobs = [
            FieldJob(
                name=f"{well}_s{site}", split=assignment[well, site], index=position[well, site],
                sources={c: [inventory.sources[p][FieldKey(well, site, c)] for p in planes] for c in channels},
                planes=planes, boxes=boxes[assignment[well, site]], crop=crop, normalize=normalize,
                shape=(height, width), store=str(tmp),
            )
            for well, site in complete
        ]
        records = {}
        with progress_bar(f"prepare {len(jobs)} fields", len(jobs), progress) as advance:
            for job, result in zip(jobs, _run(jobs, workers)):
                n = len(job.boxes)
                for channel, lohi in result.items():
                    records[job.name, channel] = {
                        "name": f"{job.name}_{channel}", "field": job.name, "channel": channel, "split": job.split,
                        "index": job.index, "crops": [job.index * n, (job.index + 1) * n],
                        "planes": [
                            {"plane": p, "file": s.path, "member": s.member, "lo": lo, "hi": hi}
                            for p, s, (lo, hi) in zip(planes, job.sources[channel], lohi)
                        ],
                    }
                advance()
        manifest = {
            "tool": "blurlatent prepare", "version": __version__, "fingerprint": fingerprint,
            "source": str(src.resolve()), "source_kinds": sorted(set(inventory.kinds.values())),
            **options,
            "split_counts": counts,
            "normalization": {"method": normalize, "percentiles": list(PERCENTILES),
                              "reference_plane": planes[int(np.argmin([abs(p - IN_FOCUS_PLANE) for p in planes]))] if normalize == "stack" else None},
            "image_size": [height, width],
            "crop_boxes": {s: [[t, l, f] for t, l, f in boxes[s]] for s in SPLITS},
            "fields": [records[f"{w}_s{s_}", c] for (w, s_) in complete for c in channels],
            "skipped": skipped,
        }
        write_manifest(tmp, manifest)
        replace_folder(tmp, out)
    finally:
        close_zips()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    crops_out = {s: len(fields_in[s]) * len(boxes[s]) for s in SPLITS}
    return PrepareResult(out, False, counts, crops_out, skipped, time.perf_counter() - start)


def _run(jobs: list[FieldJob], workers: int):
    """process_field over ``jobs`` in order: inline for one worker, else a process pool (decoding holds the GIL)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield process_field(job)
        return
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(min(workers, len(jobs)))
    try:
        # bounded look-ahead keeps memory flat on the full 768-field set
        pending = [pool.submit(process_field, job) for job in jobs[: 4 * workers]]
        next_job = len(pending)
        while pending:
            result = pending.pop(0).result()
            if next_job < len(jobs):
                pending.append(pool.submit(process_field, jobs[next_job]))
                next_job += 1
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _up_to_date(out: Path, fingerprint: str) -> bool:
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if recorded.get("fingerprint") != fingerprint or recorded.get("format_version") != STORE_FORMAT_VERSION:
        return False
    for name in recorded.get("checksums", {}):
        try:  # cheap (header and size, not the sha256): catches a missing or truncated array
            np.load(out / name, mmap_mode="r")
        except (OSError, ValueError):
            return False
    return True


def _check_output(out: Path, force: bool) -> None:
    check_output_folder(out, force, lambda o: None if (o / "manifest.json").is_file() else sorted(o.iterdir())[0].name,
                        "a prepared store")


