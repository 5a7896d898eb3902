"""``prepare`` on one's own z-stacks: a folder holding one stack file per field (any names; ZYX or CZYX;
TIFF, OME-TIFF, ImageJ, and whatever else ``stacks.read_stack`` reads) → the ``Inventory`` that the BBBC006
path makes, so splits, scaling, crops, the manifest and the output policy are prepare's own.

The focus: ``focus="auto"`` takes each stack's plane with the highest focus measure (``focus``), a number
takes that plane of every stack. ``planes`` are then offsets from it: ``-16:0:2`` (before focus, lower
stack indices) or ``0:16:2`` (after), never both sides at once.

Plane numbers in the store: BBBC006's, relative to focus. Stack plane ``f + o`` is stored as plane
``16 - |o|``, so the in-focus plane is 16 and smaller numbers are blurrier, on either side: the paper's
triplets and ``evaluate`` (which read "16 = in focus, far = blurriest") work on such a store unchanged.
Planes after focus are mirrored rather than stored as 17..32 because defocus blur is near-symmetric in
``|o|`` (a widefield PSF grows with |defocus| both ways; ``optics`` models it so), so a model trained on
either side learns the same task, and the default triplets (0..16) fit both; one side per store keeps the
mirror one-to-one. The manifest records the side, each stack's focus plane, and per stored plane its
stack plane ``z``.

Channels: w1 is the first stack's first channel, w2 its second, …; where the first stack names the channel (OME
``Channel Name``, NGFF ``omero``, ImageJ labels) every stack is matched by that name, whatever order it lists its
channels in, and the manifest records it (``channel_name``); a stack without it is refused, naming the file.
Unnamed channels are matched by position. Stacks of different z steps (µm between planes, where the files say)
are refused too: the same planes from focus would mean different defocus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from blurlatent.bbbc006 import BBBC_PLANE_DIR, IN_FOCUS_PLANE, FieldKey, format_planes, parse_planes
from blurlatent.errors import Message, UsageError
from blurlatent.files.stacks import read_stack
from blurlatent.prepare.discover import Inventory, Source, report_skipped, stack_data
from blurlatent.prepare.focus import MEASURES, best_plane, focus_outside

STACK_SUFFIXES = (".tif", ".tiff")  # .ome.tif(f) included
FOLDER_SUFFIXES = (".zarr",)  # OME-Zarr (.ome.zarr) is a folder
NAME_SUFFIX = re.compile(r"(\.ome)?\.(tiff?|zarr)$", re.IGNORECASE)
MAX_CHANNELS = 16
DEFAULT_OFFSETS = "-16:0:2"  # the paper's planes 0:16:2, counted from focus


def source_layout(src: Path) -> str:
    """``bbbc006`` when ``src`` holds ``BBBC006_v1_images_z_XX`` folders or zips, ``stacks`` when it holds stack
    files. Raises UsageError when it is not a folder or holds neither."""
    if not src.is_dir():
        raise UsageError(f"{src}: not a folder; pass the folder that holds the BBBC006_v1_images_z_XX folders or "
                         "zips, or one z-stack file per field")
    if any(BBBC_PLANE_DIR.match(entry.name) for entry in src.iterdir()):
        return "bbbc006"
    if stack_files(src):
        return "stacks"
    raise UsageError(f"{src}: holds neither BBBC006_v1_images_z_XX folders/zips nor z-stack files (.tif, .tiff, "
                     ".ome.tif, .ome.zarr); pass a folder with one of those")


def stack_files(src: Path) -> list[Path]:
    """The stack files (and OME-Zarr folders) directly in ``src``, sorted by name; hidden entries ignored."""
    found = []
    for entry in sorted(src.iterdir()):
        suffix = entry.suffix.lower()
        if entry.name.startswith("."):
            continue
        if (entry.is_file() and suffix in STACK_SUFFIXES) or (entry.is_dir() and suffix in FOLDER_SUFFIXES):
            found.append(entry)
    return found


def parse_offsets(planes: str | Sequence[int]) -> list[int]:
    """Planes relative to focus, from text (``-16:0:2``, ``0:16:2``, ``-8,-4,0``) or ints: sorted, all on one
    side of focus and at most 16 planes from it. Raises UsageError naming planes."""
    offsets = (parse_planes(planes, limit=IN_FOCUS_PLANE, lowest=-IN_FOCUS_PLANE) if isinstance(planes, str)
               else sorted({int(p) for p in planes}))
    text = planes if isinstance(planes, str) else format_planes(offsets)
    if not offsets:
        raise UsageError("{planes}: none given; use planes relative to focus, e.g. -16:0:2", "planes")
    if min(offsets) < 0 < max(offsets):
        raise UsageError(f"{{planes}} {text!r} lie on both sides of focus; give one side: {min(offsets)}:0 (before "
                         f"focus) or 0:{max(offsets)} (after)", "planes")
    if max(abs(o) for o in offsets) > IN_FOCUS_PLANE:
        raise UsageError(f"{{planes}} {text!r}: at most {IN_FOCUS_PLANE} planes from focus (the store numbers "
                         "planes as BBBC006, focus = 16); choose {planes} within -16..16", "planes")
    return offsets


def stack_options(src: Path, channels: Sequence[str] | None, planes: str | Sequence[int] | None,
                  focus: str | int | None, measure: str) -> tuple[list[str], list[int], dict]:
    """(channels, the store's planes, the own-stack fields of ``PrepareOptions``) for the stacks in ``src``.
    ``planes`` default to ``-16:0:2``; ``channels`` to every channel of the first stack. Raises UsageError."""
    focus = parse_focus(focus)
    if focus == "auto" and measure not in MEASURES:
        raise UsageError(f"focus measure {measure!r}: use one of {', '.join(MEASURES)}")
    offsets = parse_offsets(DEFAULT_OFFSETS if planes is None else planes)
    extra = {"focus": str(focus), "focus_measure": measure if focus == "auto" else None, "planes_from_focus": offsets}
    return stack_channels(stack_files(src), channels), sorted({stored_plane(o) for o in offsets}), extra


def stored_plane(offset: int) -> int:
    """The store's plane for stack plane focus + ``offset``: BBBC006 numbering, mirrored after focus."""
    return IN_FOCUS_PLANE - abs(offset)


def parse_focus(focus: str | int | None) -> str | int:
    """``auto`` or a plane number >= 0 (0 = each stack's first plane). Raises UsageError naming focus."""
    text = str(focus).strip().lower() if focus is not None else ""
    if text == "auto":
        return "auto"
    if text.isdigit():
        return int(text)
    if not text:
        raise UsageError("{focus}: not given; a folder of z-stacks needs auto (the sharpest plane of each stack) "
                         "or a plane number such as 16", "focus")
    raise UsageError(f"{{focus}} {focus!r}: use auto or a plane number (0 = the first plane of a stack)", "focus")


def stack_channels(files: Sequence[Path], channels: Sequence[str] | None) -> list[str]:
    """``channels`` as given, or every channel of the first stack (w1 = its first channel, w2 its second, …)."""
    if channels:
        return list(channels)
    names, _ = stack_facts(files[0])
    return [f"w{i + 1}" for i in range(min(len(names), MAX_CHANNELS))]


def stack_facts(path: Path) -> tuple[list[str], float | None]:
    """(the names of a stack file's channels, "" where one has none; its z step in µm, None where the file does not
    say), from its metadata alone: no plane is read. UsageError naming a file that cannot be read."""
    first = read_stack(path, channel=0, planes=())
    names = [first.channel or ""]
    names += [read_stack(path, channel=i, planes=()).channel or "" for i in range(1, first.channel_count)]
    return names, first.pixel_size[2]


def check_z_steps(steps: dict[Path, float | None]) -> None:
    """UsageError naming two stacks whose z steps differ (steps a file does not state are not compared)."""
    known = [(path, step) for path, step in steps.items() if step is not None]
    for path, step in known[1:]:
        if not math.isclose(step, known[0][1], rel_tol=1e-3):
            raise UsageError(f"{known[0][0]} and {path}: z steps of {known[0][1]:g} µm and {step:g} µm; one store's "
                             "planes from focus must mean one defocus: prepare stacks of one z step together (a "
                             "folder each)")


def channel_indices(path: Path, channels: Sequence[str], names: list[str], reference: list[str],
                    first: Path) -> dict[str, int]:
    """Each of ``channels`` (w1 = the first stack's first channel, …) as an index of ``path``'s channels ``names``:
    by name where the first stack (``first``, channels ``reference``) names it, else by position. UsageError naming
    ``path`` when it lacks that name, or two of its channels bear it."""
    indices = {}
    for c in channels:
        position = int(c[1:]) - 1
        wanted = reference[position] if position < len(reference) else ""
        found = [i for i, n in enumerate(names) if n == wanted]
        if wanted and len(found) != 1:
            listed = ", ".join(f"{i}: {n or '(no name)'}" for i, n in enumerate(names))
            what = f"names channels {found[0]} and {found[1]} {wanted}" if found else f"has no channel named {wanted}"
            raise UsageError(f"{path}: {what} ({c}: channel {position} of {first.name}; its channels are {listed}); "
                             "move it out of the folder, or choose {channels} that every stack names", "channels")
        indices[c] = found[0] if wanted else position
    return indices


def list_stacks(src: Path) -> Inventory:
    """An Inventory of the stack files in ``src`` with their fingerprint rows (name, size, mtime), nothing read."""
    inventory = Inventory({}, {}, [], layout="stacks")
    for entry in stack_files(src):
        for file in [entry] if entry.is_file() else sorted(p for p in entry.rglob("*") if p.is_file()):
            st = file.stat()
            inventory.stamp.append((str(file.relative_to(src)), st.st_size, st.st_mtime_ns))
        inventory.files += 1
    return inventory


def stack_field_names(src: Path) -> dict[str, Path]:
    """Field name (the file name less ``.tif``, ``.ome.tiff``, ``.zarr`` …) → its stack file. UsageError on a clash."""
    names: dict[str, Path] = {}
    for path in stack_files(src):
        name = NAME_SUFFIX.sub("", path.name)
        if name in names:
            raise UsageError(f"{names[name]} and {path}: two stacks for field {name}; remove or rename one")
        names[name] = path
    return names


def inspect_stacks(inventory: Inventory, src: Path, channels: Sequence[str], offsets: Sequence[int],
                   focus: str | int, measure: str | None, strict: bool) -> tuple[list[tuple[str, int]], list[str]]:
    """Read every stack, choose its focus plane and fill ``inventory`` (sources under the stored planes, the
    focus per field). Returns (complete fields, one line per skipped stack). A stack without a channel asked
    for (by position), or whose focus leaves too few planes on the asked side, is skipped (UsageError with
    ``strict``); an unreadable stack, one without a channel the first stack names (``channel_indices``), and stacks
    of two z steps (``check_z_steps``) are a UsageError naming the file(s), before any plane is read."""
    focus = parse_focus(focus)
    planes = sorted({stored_plane(o) for o in offsets})
    inventory.sources = {p: {} for p in planes}
    inventory.kinds = dict.fromkeys(planes, "stacks")
    complete, skipped = [], []
    files = stack_field_names(src)
    facts = {path: stack_facts(path) for path in files.values()}  # metadata only: refusals before any plane
    check_z_steps({path: step for path, (_, step) in facts.items()})
    first = next(iter(files.values()))
    reference = facts[first][0]
    indices = {path: channel_indices(path, channels, names, reference, first) for path, (names, _) in facts.items()}
    named = {c: (reference[int(c[1:]) - 1] or None) if int(c[1:]) <= len(reference) else None for c in channels}
    for name, path in files.items():
        data, reason = channel_data(path, channels, indices[path])
        if reason is None:
            depth = data[0].shape[0]
            f = best_plane(data, measure or MEASURES[0]) if focus == "auto" else int(focus)
            outside = [f + o for o in offsets if not 0 <= f + o < depth]
            reason = focus_outside(f, depth) if focus == "auto" else None  # found at an end: it lies past it
            if reason is None and outside:
                how = "auto" if focus == "auto" else "given"
                reason = (f"focus at plane {f} ({how}) of its {depth} leaves no plane {outside[0]} for planes "
                          f"{format_planes(offsets)}")
        if reason is not None:
            skipped.append(f"stack {name}: {reason}")
            continue
        inventory.focus[name] = f
        for o in offsets:
            for c in channels:
                key = FieldKey(name, 0, c)
                inventory.sources[stored_plane(o)][key] = Source(stored_plane(o), key, str(path), None, f + o,
                                                                 indices[path][c], named[c])
        complete.append((name, 0))
    report_skipped(src, skipped, strict, "stack(s)", Message("choose {planes} nearer the focus", "planes"))
    if not complete:
        raise UsageError(f"{src}: no stack has planes {format_planes(offsets)} around its focus for "
                         f"{','.join(channels)}; choose {{planes}} and {{channels}} that exist", "planes", "channels")
    return complete, skipped


def channel_data(path: Path, channels: Sequence[str], indices: dict[str, int]) -> tuple[list, str | None]:
    """(ZYX data per channel, None), or ([], why the stack is skipped) when it lacks a channel; ``indices``: each
    channel's index in the file (``channel_indices``). The first channel of the file is read first, so that a
    damaged file is a UsageError naming it, not a skip."""
    stack_data(str(path), 0)
    data = []
    for c in channels:
        try:
            data.append(stack_data(str(path), indices[c]))
        except UsageError:
            return [], f"no channel {c} (channel {indices[c]} of the file)"
    if any(d.shape != data[0].shape for d in data):
        return [], "channels of different shapes"
    if data[0].shape[0] < 2:
        return [], "a single plane, not a z-stack"
    return data, None
