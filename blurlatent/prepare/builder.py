"""``prepare``: BBBC006v1-layout z-stacks (folders or the downloaded zips), or a folder of one's own z-stacks
(``ownstacks``: one file per field, focus given or found), → a memory-mapped uint8 store.

Steps: find the ``BBBC006_v1_images_z_XX`` folders or zips and match each field across planes
(``discover``; own stacks: read each, choose its focus plane) → skip incomplete fields with a warning →
split the fields sorted by name in the order test, val, train (paper §4.1; ``crops``) → decode in parallel,
scale 16 → 8 bit (``intensity.plane_ranges``), cut the same crop boxes on every plane → ``store.write_manifest``.

The store is built in a temp folder beside OUT and renamed into place, so an interrupted run leaves
no half-written store. The manifest records a fingerprint of the inputs (file sizes and times, zip
member CRCs) and every option, so a rerun on unchanged input returns at once ("up to date").
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from blurlatent import __version__
from blurlatent.bbbc006 import IN_FOCUS_PLANE, FieldKey
from blurlatent.config import Normalization, PrepareConfig, check_choice
from blurlatent.errors import UsageError
from blurlatent.files.atomic import disk_space, make_temp_dir, replace_folder, reserve_space, terminate_as_interrupt
from blurlatent.files.output_folders import claim_output_folder, write_marker
from blurlatent.files.workers import ordered_map
from blurlatent.intensity import PERCENTILES, plane_ranges, to_unit
from blurlatent.prepare.crops import Box, assign_splits, crop_boxes, cut, split_counts
from blurlatent.prepare.discover import Inventory, Source, bbbc_fields, bbbc_options, close_sources, decode_source
from blurlatent.prepare.own_stacks import inspect_stacks, list_stacks, source_layout, stack_options
from blurlatent.prepare.store import MANIFEST, SPLITS, STORE_FORMAT_VERSION, Store, source_scale, write_manifest
from blurlatent.progress import progress_bar

log = logging.getLogger(__name__)

TOOL = "blurlatent prepare"
COMMAND = "prepare"  # its output marker's signature (``outputs``)
TEST_CROPS = ("center", "ten")


# --- options -------------------------------------------------------------------------------------


@dataclass
class PrepareOptions:
    """Everything that decides a store's contents (recorded in the manifest and hashed in its fingerprint)."""

    channels: list[str]
    planes: list[int]
    crop: int
    split: list[float]  # (train, val, test) ratios
    normalize: str
    test_crops: str
    # own stacks only (None for BBBC006, and then left out of the manifest and the fingerprint):
    focus: str | None = None  # "auto" or the plane number given
    focus_measure: str | None = None  # the measure of focus auto (``focus.MEASURES``)
    planes_from_focus: list[int] | None = None  # the planes asked for, relative to each stack's focus

    def recorded(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def check_options(channels: Sequence[str], planes: Sequence[int], crop: int, split: Sequence[float],
                  normalize: str, test_crops: str, **stacks) -> PrepareOptions:
    """The options, de-duplicated and sorted, when valid (no files are read). Raises UsageError."""
    channels = list(dict.fromkeys(channels))
    planes = sorted({int(p) for p in planes})
    if not channels or any(len(c) != 2 or c[0] != "w" or not c[1].isdigit() for c in channels):
        raise UsageError(f"{{channels}} {channels}: use BBBC006 channel names such as w1,w2", "channels")
    if not planes:
        raise UsageError("{planes}: none given; use e.g. the paper's 0, 2, ..., 16", "planes")
    check_choice(Normalization, normalize, "{normalize}")
    if test_crops not in TEST_CROPS:
        raise UsageError(f"{{test_crops}} {test_crops!r}: use center or ten", "test_crops")
    if crop < 1:
        raise UsageError(f"{{crop}} {crop}: must be a positive number of pixels, e.g. 128", "crop")
    ratios = [float(r) for r in split]
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise UsageError(f"{{split}} {tuple(split)}: need three non-negative ratios TRAIN:VAL:TEST, e.g. 70:10:20",
                         "split")
    return PrepareOptions(channels, planes, int(crop), ratios, normalize, test_crops, **stacks)


def check_locations(src: Path, out: Path) -> None:
    """UsageError when the store would be written inside the source folder (it would index itself)."""
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise UsageError(f"{out}: output is inside the source folder {src}; write the store elsewhere")


def parse_split(text: str) -> tuple[float, float, float]:
    """``70:10:20`` → (train, val, test) ratios as given. Raises UsageError."""
    try:
        parts = tuple(float(v) for v in str(text).split(":"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= p < float("inf") for p in parts) or sum(parts) <= 0:  # NaN fails 0 <= p
        raise UsageError(f"{{split}} {text!r} is not TRAIN:VAL:TEST with finite non-negative numbers; use e.g. "
                         "70:10:20", "split")
    return parts


# --- scales --------------------------------------------------------------------------------------


def to_uint8(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """[lo, hi] → 0..255, rounded (the paper's min–max scaling when lo/hi are the image's min/max)."""
    return np.rint(to_unit(image, lo, hi) * 255.0).astype(np.uint8)


def reference_index(planes: Sequence[int]) -> int:
    """Index in ``planes`` of the plane nearest the in-focus plane (the ``stack`` scale's reference)."""
    return int(np.argmin([abs(p - IN_FOCUS_PLANE) for p in planes]))


def scales(images: Sequence[np.ndarray], planes: Sequence[int], method: str) -> list[tuple[float, float]]:
    """(lo, hi) per plane image. ``minmax``/``percentile``: each image its own; ``stack``: one scale for all,
    from the percentiles of the plane nearest the focus (z16), which keeps how brightness changes with z."""
    return plane_ranges(images, method, reference=reference_index(planes))


# --- one field -----------------------------------------------------------------------------------


@dataclass
class FieldJob:
    name: str  # "a01_s1"
    split: str
    index: int  # position of the field within its split
    sources: dict[str, list[Source]]  # channel -> one source per plane
    planes: list[int]
    boxes: list[Box]
    crop: int
    normalize: str
    shape: tuple[int, int]
    store: str  # folder holding the preallocated <channel>_<split>.npy arrays


def read_planes(job: FieldJob, sources: Sequence[Source]) -> list[np.ndarray]:
    """The images of one channel of a field, one per plane. Raises UsageError naming a bad or odd-sized file."""
    images = []
    for source in sources:
        image = decode_source(source)
        if image.shape != job.shape:
            raise UsageError(
                f"{source.label}: image is {image.shape[1]}x{image.shape[0]}, other fields are "
                f"{job.shape[1]}x{job.shape[0]}; all fields of a store must have one size"
            )
        images.append(image)
    return images


def process_field(job: FieldJob) -> dict[str, list[tuple[float, float]]]:
    """Decode one field's planes and channels and write its crops (and, for test fields, the whole 8-bit
    images) straight into the store's preallocated arrays: a worker returns only the (lo, hi) per
    channel and plane, so no image data crosses between processes. Raises UsageError naming a bad file."""
    out = {}
    n = len(job.boxes)
    for channel, sources in job.sources.items():
        images = read_planes(job, sources)
        lohi = scales(images, job.planes, job.normalize)
        rows = slice(job.index * n, (job.index + 1) * n)
        crops = np.load(Path(job.store) / f"{channel}_{job.split}.npy", mmap_mode="r+")[rows]
        full = None
        if job.split == "test":
            full = np.load(Path(job.store) / f"{channel}_test_full.npy", mmap_mode="r+")[job.index]
        for p, (image, (lo, hi)) in enumerate(zip(images, lohi, strict=True)):
            if full is not None:
                full[p] = to_uint8(image, lo, hi)
            for b, box in enumerate(job.boxes):
                if full is not None:
                    crops[b, p] = cut(full[p], box, job.crop)
                else:  # scale only the cropped pixels: train fields never need the whole 8-bit image
                    crops[b, p] = to_uint8(cut(image, box, job.crop), lo, hi)
        del crops, full  # unmap; the shared page cache already holds the data for every process
        out[channel] = lohi
    return out


def run_fields(jobs: list[FieldJob], workers: int) -> Iterator[dict[str, list[tuple[float, float]]]]:
    """process_field over ``jobs`` in order: inline for one worker, else worker processes (decoding holds the GIL)."""
    return ordered_map(process_field, jobs, workers)


def field_record(job: FieldJob, channel: str, lohi: Sequence[tuple[float, float]]) -> dict:
    """A field's manifest record for one channel: split, crop rows, and per plane its source and scale."""
    n = len(job.boxes)
    return {
        "name": f"{job.name}_{channel}", "field": job.name, "channel": channel, "split": job.split,
        "index": job.index, "crops": [job.index * n, (job.index + 1) * n],
        **({"channel_name": name} if (name := job.sources[channel][0].channel_name) else {}),  # own stacks' names
        "planes": [
            {"plane": p, "file": s.path, "member": s.member, "lo": lo, "hi": hi,
             **({} if s.z is None else {"z": s.z, "stack_channel": s.channel})}
            for p, s, (lo, hi) in zip(job.planes, job.sources[channel], lohi, strict=True)
        ],
    }


# --- the store -----------------------------------------------------------------------------------


@dataclass
class StorePlan:
    """What goes where: the complete fields of each split, the crop boxes, the image size."""

    options: PrepareOptions
    inventory: Inventory
    splits: dict[str, list[tuple[str, int]]]  # split -> fields (well, site)
    boxes: dict[str, list[Box]]
    shape: tuple[int, int]  # (H, W) of every image

    def crops(self, split: str) -> int:
        return len(self.splits[split]) * len(self.boxes[split])


def image_shape(inventory: Inventory, options: PrepareOptions, first: tuple[str, int]) -> tuple[int, int]:
    """(H, W) of the first field's first image (every other is checked against it). Raises UsageError
    when the crop does not fit."""
    source = inventory.sources[options.planes[0]][FieldKey(*first, options.channels[0])]
    try:
        height, width = decode_source(source).shape
    finally:
        close_sources()
    if options.crop > min(height, width):
        raise UsageError(f"{{crop}} {options.crop} is larger than the {width}x{height} images; "
                         f"choose {{crop}} <= {min(height, width)}", "crop")
    return height, width


def array_shapes(plan: StorePlan) -> dict[str, tuple[int, ...]]:
    """File name → uint8 shape of every array of the store."""
    o = plan.options
    shapes: dict[str, tuple[int, ...]] = {}
    for c in o.channels:
        for s in SPLITS:
            shapes[f"{c}_{s}.npy"] = (plan.crops(s), len(o.planes), o.crop, o.crop)
        shapes[f"{c}_test_full.npy"] = (len(plan.splits["test"]), len(o.planes), *plan.shape)
    return shapes


def allocate(tmp: Path, plan: StorePlan) -> None:
    """Create the store's arrays at their final size, every block allocated now (``files.reserve_space``: a
    full disk is an error here, not SIGBUS in a worker writing through its memory map); workers fill their rows."""
    for name, shape in array_shapes(plan).items():
        np.lib.format.open_memmap(tmp / name, mode="w+", dtype=np.uint8, shape=shape).flush()
        reserve_space(tmp / name)


def field_jobs(tmp: Path, plan: StorePlan, complete: Sequence[tuple[str, int]]) -> list[FieldJob]:
    """One job per complete field, in name order."""
    o = plan.options
    where = {f: (s, i) for s in SPLITS for i, f in enumerate(plan.splits[s])}
    return [
        FieldJob(
            name=plan.inventory.field_name(well, site), split=where[well, site][0], index=where[well, site][1],
            sources={c: [plan.inventory.sources[p][FieldKey(well, site, c)] for p in o.planes] for c in o.channels},
            planes=o.planes, boxes=plan.boxes[where[well, site][0]], crop=o.crop, normalize=o.normalize,
            shape=plan.shape, store=str(tmp),
        )
        for well, site in complete
    ]


def fill(jobs: list[FieldJob], workers: int, progress: bool) -> dict[tuple[str, str], dict]:
    """Run the jobs; their manifest records keyed by (field, channel)."""
    records = {}
    with progress_bar(f"prepare {len(jobs)} fields", len(jobs), progress) as advance:
        for job, result in zip(jobs, run_fields(jobs, workers), strict=True):
            for channel, lohi in result.items():
                records[job.name, channel] = field_record(job, channel, lohi)
            advance()
    return records


def fingerprint(options: PrepareOptions, inventory: Inventory) -> str:
    """sha256 of the store format, tool version, options and input stamp: equal means up to date."""
    payload = [STORE_FORMAT_VERSION, __version__, options.recorded(), sorted(map(list, inventory.stamp))]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_manifest(src: Path, plan: StorePlan, digest: str, counts: dict[str, int], complete, records,
                   skipped: list[str]) -> dict:
    """``manifest.json`` without the checksums and format version (``write_manifest`` adds those)."""
    o = plan.options
    reference = o.planes[reference_index(o.planes)] if o.normalize == "stack" else None
    return {
        "tool": TOOL, "version": __version__, "fingerprint": digest,
        "source": str(src.resolve()), "source_kinds": sorted(set(plan.inventory.kinds.values())),
        **o.recorded(), **({"focus_planes": plan.inventory.focus} if plan.inventory.layout == "stacks" else {}),
        "split_counts": counts, **source_scale(src, plan.inventory),
        "normalization": {"method": o.normalize, "percentiles": list(PERCENTILES), "reference_plane": reference},
        "image_size": list(plan.shape),
        "crop_boxes": {s: [[top, left, flip] for top, left, flip in plan.boxes[s]] for s in SPLITS},
        "fields": [records[plan.inventory.field_name(w, s), c] for (w, s) in complete for c in o.channels],
        "skipped": skipped,
    }


def write(out: Path, src: Path, plan: StorePlan, digest: str, counts, complete, skipped, *, workers: int,
          progress: bool) -> None:
    """Build the store in a temp folder beside ``out`` and rename it into place. A full disk (checked first) is
    one RuntimeFailure naming ``out``; SIGTERM stops it like Ctrl-C; either way the temp folder is removed."""
    records_bytes = 512 * len(complete) * len(plan.options.planes) * len(plan.options.channels)  # the manifest
    need = sum(int(np.prod(shape)) + 128 for shape in array_shapes(plan).values()) + records_bytes + 65536
    with terminate_as_interrupt(), disk_space(out, need):
        tmp = make_temp_dir(out)
        try:
            allocate(tmp, plan)
            records = fill(field_jobs(tmp, plan, complete), workers, progress)
            write_manifest(tmp, build_manifest(src, plan, digest, counts, complete, records, skipped))
            write_marker(tmp, COMMAND)
            replace_folder(tmp, out)
        finally:
            close_sources()
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


# --- the command ---------------------------------------------------------------------------------


@dataclass
class PrepareResult:
    path: Path
    up_to_date: bool
    counts: dict[str, int]  # fields per split
    crops: dict[str, int]  # crops per split (per channel)
    skipped: list[str] = field(default_factory=list)  # one warning line per skipped field
    seconds: float = 0.0
    planes: list[int] = field(default_factory=list)  # the store's planes (BBBC006 numbers, focus = 16)
    focus: dict[str, int] = field(default_factory=dict)  # own stacks: field -> its stack's in-focus plane


def prepare(
    src: str | Path,
    out: str | Path,
    *,
    channels: Sequence[str] | None = None,
    planes: str | Sequence[int] | None = None,
    crop: int = PrepareConfig.crop,
    split: Sequence[float] = PrepareConfig.split,
    normalize: str = PrepareConfig.normalize,
    test_crops: str = PrepareConfig.test_crops,
    workers: int = PrepareConfig.workers,
    strict: bool = False,
    force: bool = False,
    progress: bool = False,
    focus: str | int | None = None,
    measure: str = PrepareConfig.measure,
) -> PrepareResult:
    """Build the store at ``out`` from the BBBC006-layout z-stacks in ``src``, or from a folder of stack files
    with ``focus`` ("auto" or a plane number; see ``ownstacks``) (see the module docstring).

    ``channels`` default to w1,w2 (stacks: all of the first stack's); ``planes`` (a list, or text as
    ``bbbc006.parse_planes`` reads it) to 0:16:2 (stacks: -16:0:2, relative to focus). ``split`` is (train, val,
    test) ratios. Writes ``<ch>_{train,val,test}.npy`` uint8 [crops, planes, crop, crop], ``<ch>_test_full.npy``
    uint8 [test fields, planes, H, W] and ``manifest.json``.
    Raises UsageError for bad options, unreadable/corrupt inputs (naming the file), incomplete fields with
    ``strict``, or an existing output that is not an earlier store of prepare, or is one, without ``force``.
    """
    start = time.perf_counter()
    src, out = Path(src), Path(out)
    stacks = source_layout(src) == "stacks"
    chosen = stack_options(src, channels, planes, focus, measure) if stacks else bbbc_options(channels, planes, focus)
    options = check_options(chosen[0], chosen[1], crop, split, normalize, test_crops, **chosen[2])
    check_locations(src, out)
    if stacks:
        inventory = list_stacks(src)
        digest = fingerprint(options, inventory)
        if is_up_to_date(out, digest, force):
            return recorded_result(out, start)
        assert options.planes_from_focus is not None and options.focus is not None  # stack_options sets both
        complete, skipped = inspect_stacks(inventory, src, options.channels, options.planes_from_focus,
                                           options.focus, options.focus_measure, strict)
    else:
        inventory, complete, skipped = bbbc_fields(src, options.planes, options.channels, strict)
        digest = fingerprint(options, inventory)
        if is_up_to_date(out, digest, force):
            return recorded_result(out, start)
    counts = split_counts(len(complete), options.split)
    with disk_space(out), claim_output_folder(out, COMMAND, force, "a prepared store", [src]):
        height, width = image_shape(inventory, options, complete[0])
        plan = StorePlan(options, inventory, assign_splits(complete, counts),
                         crop_boxes(height, width, options.crop, options.test_crops), (height, width))
        write(out, src, plan, digest, counts, complete, skipped, workers=workers, progress=progress)
    crops_out = {s: plan.crops(s) for s in SPLITS}
    return PrepareResult(out, False, counts, crops_out, skipped, time.perf_counter() - start, options.planes,
                         dict(inventory.focus))


def recorded_result(out: Path, start: float) -> PrepareResult:
    """The result of an up-to-date store, from its manifest."""
    store = Store(out)
    m = store.manifest
    crops = {s: int(store.array(store.channels[0], s).shape[0]) for s in SPLITS}
    return PrepareResult(out, True, dict(m["split_counts"]), crops, list(m.get("skipped", [])),
                         time.perf_counter() - start, store.planes, dict(m.get("focus_planes", {})))


def is_up_to_date(out: Path, digest: str, force: bool = False) -> bool:
    """True when ``out`` is a store of the same fingerprint whose arrays pass ``Store.verify`` (cheap when unchanged).
    A damaged one raises verify's UsageError (naming the file; the fix is force), or with ``force`` is rebuilt."""
    manifest = out / MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return False
    if not isinstance(recorded, dict) or recorded.get("fingerprint") != digest or \
            recorded.get("format_version") != STORE_FORMAT_VERSION:
        return False
    try:
        Store(out).verify()
    except UsageError:
        if force:
            return False
        raise
    return True
