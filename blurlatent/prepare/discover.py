"""Finding BBBC006 images on disk for ``prepare``: plane folders or the downloaded zips, fields matched
across planes by (well, site, channel), never by file name (the UUID differs on every plane). A folder of
one's own z-stacks (``ownstacks``) fills the same ``Inventory``: its sources are planes of stack files.

Nothing here decodes an image; ``discover`` lists names, sizes and times (or zip CRCs), which also make
the fingerprint that tells ``prepare`` whether a store is up to date.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blurlatent.bbbc006 import (
    BBBC_PLANE_DIR,
    CHANNELS,
    IN_FOCUS_PLANE,
    PAPER_PLANES,
    FieldKey,
    format_planes,
    parse_bbbc_name,
    parse_planes,
)
from blurlatent.errors import Message, UsageError
from blurlatent.files.images import close_zips, read_source, zip_listing
from blurlatent.files.stacks import read_stack

log = logging.getLogger(__name__)

MAX_SKIP_WARNINGS = 20  # incomplete fields warned about one by one; the rest are counted


@dataclass(frozen=True)
class Source:
    """One image: a file, a member of a zip, or plane ``z`` of channel ``channel`` of a stack file."""

    plane: int
    key: FieldKey | None
    path: str  # file path, or the zip's path
    member: str | None = None  # member name inside the zip
    z: int | None = None  # the plane in a stack file (``ownstacks``); None: the file is one plane
    channel: int = 0  # the stack's channel (0 for a one-channel stack)
    channel_name: str | None = None  # its name, where the stacks name their channels (``own_stacks``)

    @property
    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def decode_source(source: Source) -> np.ndarray:
    """The 2-D image of one source (uint16 for BBBC006). Raises UsageError naming the file or member."""
    if source.z is not None:
        return stack_data(source.path, source.channel)[source.z]
    return read_source(source.path, source.member)


@functools.lru_cache(maxsize=2)  # a field's planes are read one channel at a time: read each stack file once
def stack_data(path: str, channel: int) -> np.ndarray:
    """ZYX data of one channel of a stack file (``stacks.read_stack``). Raises UsageError naming the file."""
    return read_stack(path, channel=channel).data


def close_sources() -> None:
    """Close the zips and forget the cached stacks this process read."""
    close_zips()
    stack_data.cache_clear()


@dataclass
class Inventory:
    """What SRC holds for the asked planes: sources[plane][FieldKey], and a fingerprint of those inputs."""

    sources: dict[int, dict[FieldKey, Source]]
    kinds: dict[int, str]  # plane -> "folder" | "zip"
    stamp: list  # (name, size, time-or-crc) rows: what the fingerprint hashes
    files: int = 0  # files in those planes
    ignored: int = 0  # ... of which without a BBBC006 name
    layout: str = "bbbc006"  # or "stacks": one stack file per field (``ownstacks``)
    focus: dict[str, int] = field(default_factory=dict)  # stacks: field name -> the stack's in-focus plane

    def field_name(self, well: str, site: int) -> str:
        """A field's name in the store: ``a01_s1`` for BBBC006, the file's name for a stack."""
        return well if self.layout == "stacks" else f"{well}_s{site}"


def bbbc_options(channels: Sequence[str] | None, planes: str | Sequence[int] | None,
                 focus: str | int | None) -> tuple[list[str], list[int], dict]:
    """(channels, planes, {}) for BBBC006 folders: defaults w1,w2 and the paper's planes. Raises UsageError."""
    if focus is not None:
        raise UsageError(f"{{focus}} {focus}: BBBC006 folders are in focus at plane {IN_FOCUS_PLANE} by definition; "
                         "leave {focus} out (it is for a folder of z-stack files)", "focus")
    planes = parse_planes(planes) if isinstance(planes, str) else PAPER_PLANES if planes is None else planes
    return list(channels or CHANNELS), list(planes), {}


def plane_locations(src: Path) -> dict[int, dict[str, Path]]:
    """{plane: {"folder" | "zip": path}} of the ``BBBC006_v1_images_z_XX`` folders and zips in ``src``."""
    found: dict[int, dict[str, Path]] = {}
    for entry in src.iterdir():
        match = BBBC_PLANE_DIR.match(entry.name)
        if match and (entry.is_dir() or (entry.suffix == ".zip" and entry.is_file())):
            found.setdefault(int(match["plane"]), {})["zip" if entry.suffix == ".zip" else "folder"] = entry
    return found


def folder_members(src: Path, plane: int, folder: Path) -> list[tuple[str, Source, int, int]]:
    """(name relative to ``src``, Source without key, size, mtime_ns) of every file under ``folder``."""
    members = []
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            st = file.stat()
            members.append((str(file.relative_to(src)), Source(plane, None, str(file)), st.st_size, st.st_mtime_ns))
    return members


def zip_members(plane: int, location: Path) -> list[tuple[str, Source, int, int]]:
    """(``zip:member``, Source without key, size, CRC) of every file in the zip. Raises UsageError."""
    return [(f"{location.name}:{i.filename}", Source(plane, None, str(location), i.filename), i.file_size, i.CRC)
            for i in zip_listing(location)]


def discover(src: str | Path, planes: Sequence[int], channels: Sequence[str]) -> Inventory:
    """Index the plane folders/zips of ``src`` for ``planes`` and ``channels`` (files are not read).

    Raises UsageError when SRC or a plane is missing, a zip is unreadable, or a field appears twice in a plane."""
    src = Path(src).resolve()  # the manifest's pointers to the 16-bit sources must work from anywhere
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder; pass the folder that holds the BBBC006_v1_images_z_XX folders or zips")
    found = plane_locations(src)
    inventory = Inventory({}, {}, [])
    for plane in planes:
        if plane not in found:
            raise UsageError(
                f"{src}: plane {plane} not found (expected BBBC006_v1_images_z_{plane:02d}/ or "
                f"BBBC006_v1_images_z_{plane:02d}.zip); choose {{planes}} that exist or complete the download", "planes"
            )
        # an unpacked folder beats its zip: same content, no decompression
        kind = "folder" if "folder" in found[plane] else "zip"
        location = found[plane][kind]
        members = folder_members(src, plane, location) if kind == "folder" else zip_members(plane, location)
        inventory.kinds[plane] = kind
        inventory.sources[plane] = index_plane(inventory, plane, location, members, set(channels))
    return inventory


def index_plane(inventory: Inventory, plane: int, location: Path, members: list, wanted: set[str]) -> dict:
    """{FieldKey: Source} of one plane's members in ``wanted`` channels; adds their rows to the stamp and
    counts files. Raises UsageError when a field appears twice."""
    per_plane: dict[FieldKey, Source] = {}
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
            raise UsageError(f"{per_plane[key].label} and {source.label}: two files for field {key.name} "
                             f"in plane {plane}; remove one")
        per_plane[key] = source
        inventory.stamp.append((name, size, tag))
    if ignored:
        log.info("%s: %d files without BBBC006 names ignored", location, ignored)
    inventory.ignored += ignored
    inventory.files += len(members)
    return per_plane


def check_inventory(inventory: Inventory, src: Path, planes: Sequence[int], channels: Sequence[str]) -> None:
    """UsageError when SRC holds no BBBC006-named file at all, or none of a channel asked for."""
    if inventory.files and inventory.ignored == inventory.files:
        # nothing in the plane folders/zips is named like BBBC006: wrong files, not a wrong channel
        raise UsageError(
            f"{src}: none of the {inventory.ignored} files in planes {format_planes(planes)} has a BBBC006 name "
            "(mcf-z-stacks-03212011_a01_s1_w1<UUID>.tif); pass the BBBC006_v1 download (folders or zips)"
        )
    for channel in channels:
        if not any(k.channel == channel for per in inventory.sources.values() for k in per):
            raise UsageError(f"{src}: no {channel} files in planes {format_planes(planes)}; choose {{channels}} that "
                             "exist", "channels")


def complete_fields(inventory: Inventory, src: Path, planes: Sequence[int], channels: Sequence[str],
                    strict: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """(fields (well, site) sorted by name that have every channel on every plane, one line per skipped field).

    Skipped fields are logged as warnings. Raises UsageError for an incomplete field with ``strict``, or
    when no field is complete."""
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
    report_skipped(src, skipped, strict, "incomplete field(s)", "complete the data")
    if not complete:
        raise UsageError(f"{src}: no field has all planes {format_planes(planes)} for {','.join(channels)}; "
                         "check planes and channels")
    return complete, skipped


def bbbc_fields(src: Path, planes: Sequence[int], channels: Sequence[str],
                strict: bool) -> tuple[Inventory, list[tuple[str, int]], list[str]]:
    """``discover``, ``check_inventory`` and ``complete_fields`` in one: (inventory, complete fields, skip lines)."""
    inventory = discover(src, planes, channels)
    check_inventory(inventory, Path(src), planes, channels)
    return (inventory, *complete_fields(inventory, Path(src), planes, channels, strict))


def report_skipped(src: Path, skipped: list[str], strict: bool, what: str, fix: str | Message) -> None:
    """Warn one line per skipped field (the first ``MAX_SKIP_WARNINGS``); with ``strict`` raise UsageError instead.
    ``fix``: what to do about them, a ``Message`` where it names parameters."""
    fix = fix if isinstance(fix, Message) else Message(fix)
    if skipped and strict:
        raise UsageError(f"{src}: {skipped[0]} ({len(skipped)} {what}); {fix.template} or drop {{strict=True}} to skip "
                         "them", "strict", *fix.names)
    for line in skipped[:MAX_SKIP_WARNINGS]:
        log.warning("%s; skipped", line)
    if len(skipped) > MAX_SKIP_WARNINGS:
        log.warning("... and %d more %s skipped", len(skipped) - MAX_SKIP_WARNINGS, what)
