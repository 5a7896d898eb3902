"""Which two planes a blur or deblur works on — the one place that chooses them, for the command line (through
``batch``) and the Python API alike.

Two forms: one plane per file (or per 2-D array), or two planes ``z = (P1, P2)`` of one z-stack (a file read
with ``stacks.read_stack``, or an array with ``axes`` such as "ZYX" or "CZYX"). A stack given without ``z``,
``z`` with a single-plane input, or ``z`` beside a second input is refused with one line saying what to pass,
never guessed. ``Inputs.sources`` keeps each plane's ``Stack``, whose metadata the outputs carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.axes import check_axes_letters, given_axes
from blurlatent.files.images import read_image
from blurlatent.files.stacks import Stack, read_stack

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
ALL_CHANNELS = "all"  # channel="all": every channel of a file into one output (``inference.channels``)


class Inputs(NamedTuple):
    """Two YX planes of one shape and the ``Stack`` each came from (the same one for two planes of a stack)."""

    first: np.ndarray
    second: np.ndarray
    sources: tuple[Stack, Stack]


def read_file(path: str | Path, channel: int | str | None = None, series: int | None = None,
              axes: str | None = None, planes: Sequence[int] | None = None) -> Stack:
    """``path`` as a ZYX ``Stack``: TIFF (plain, ImageJ, OME) and anything else ``read_stack`` reads (``axes``
    replacing the file's, e.g. "CZYX"; ``planes``: only those planes read); a file that is not a TIFF (PNG, or not
    an image at all) through ``imageio.read_image`` and its messages."""
    path = Path(path)
    if path.is_file() and not path.name.lower().endswith(".zarr"):
        with open(path, "rb") as handle:
            magic = handle.read(4)
        if magic not in TIFF_MAGIC:
            plane = read_image(path)
            return Stack(plane[None], given_axes(path, axes, "YX", plane.shape), path=path,
                         kind="png" if path.suffix.lower() == ".png" else "tiff")
    return read_stack(path, channel=channel, series=series, axes=axes, planes=planes)


def every_channel(channel) -> bool:
    """Whether ``channel`` asks for every channel of a file (``"all"``, in any case)."""
    return isinstance(channel, str) and channel.strip().lower() == ALL_CHANNELS


def check_z(z: Sequence[int]) -> tuple[int, int]:
    """``z`` as two different plane indices; UsageError otherwise."""
    values = tuple(z)
    if len(values) != 2 or any(isinstance(v, bool) or int(v) != v for v in values):
        raise UsageError(f"{{z}} {' '.join(map(str, values))}: give two plane indices, e.g. {{z=0 8}}", "z")
    first, second = int(values[0]), int(values[1])
    if first == second:
        raise UsageError(f"{{z}} {first} {second}: the two planes must differ; pass two different plane indices", "z")
    return first, second


def single_plane(stack: Stack, in_folders: bool = False) -> np.ndarray:
    """The one YX plane of ``stack``; UsageError when it holds several (then ``z`` chooses two of them, except
    ``in_folders``: folder mode pairs single-plane files, and a folder of stacks is deblur's ``stack_dir``)."""
    count = stack.data.shape[0]
    if count != 1 and in_folders:
        raise UsageError(f"{stack.path}: holds {count} planes (axes {stack.axes}), but folder mode pairs single-plane "
                         "files; split it into one file per plane, or deblur a folder of z-stacks with "
                         "`blurlatent deblur --stack-dir DIR --z P1 P2`")
    if count != 1:
        raise UsageError(f"{stack.path}: holds {count} planes (axes {stack.axes}); pass {{z=P1 P2}} with this one "
                         "file to use two of its planes, or split channels/pages into one file per plane", "z")
    return stack.data[0]


def stack_pair(stack: Stack, z: Sequence[int], name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Planes ``z[0]`` and ``z[1]`` of a ZYX ``stack`` (read whole, or with those planes: ``Stack.planes``);
    UsageError naming z and the valid range (``check_stack_z``)."""
    first, second = check_stack_z(stack, z, name)
    if stack.planes is not None:  # read with only some planes: where each lies in data
        return stack.data[stack.planes.index(first)], stack.data[stack.planes.index(second)]
    return stack.data[first], stack.data[second]


def check_stack_z(stack: Stack, z: Sequence[int], name: str | None = None) -> tuple[int, int]:
    """``z`` as two planes of ``stack`` (``Stack.plane_count``, whatever ``data`` holds); UsageError naming z and the
    valid range (``name``: the stack's, default its path)."""
    first, second = check_z(z)
    name = name or str(stack.path)
    count = stack.plane_count
    if count == 1:
        raise UsageError(f"{name}: holds one plane, so {{z=P1 P2}} cannot choose two; pass a z-stack, or two "
                         "single-plane images without {z=P1 P2}", "z")
    for value in (first, second):
        if not 0 <= value < count:
            raise UsageError(f"{{z}} {first} {second}: plane {value} is out of range: {name} has {count} planes; pass "
                             f"{{z=P1 P2}} within 0..{count - 1}", "z")
    return first, second


def read_inputs(first: str | Path, second: str | Path | None = None, *, z: Sequence[int] | None = None,
                channel: int | str | None = None, series: int | None = None, in_folders: bool = False,
                axes: str | None = None) -> Inputs:
    """The two planes of a job: one per file (``second`` given, no ``z``) or planes ``z`` of the stack ``first``.

    UsageError (naming the file and what to pass) for a stack without ``z``, ``z`` on a single plane or
    beside ``second``, planes of two sizes, and whatever ``read_stack`` refuses (``channel``, ``series``);
    ``in_folders``: the files of a folder-mode pair (a stack there is not fixed by ``z``).
    """
    if second is not None and z is not None:
        raise UsageError(f"{{z}} chooses two planes of one stack, but two files were given ({first}, {second}); pass "
                         "one z-stack and {z=P1 P2}, or two single-plane files without {z=P1 P2}", "z")
    planes = check_z(z) if second is None and z is not None else None  # a stack: read those two planes only
    stack = read_file(first, channel, series, axes, planes)
    if second is None:
        if z is None:
            if stack.data.shape[0] > 1:
                single_plane(stack)  # raises: names the planes and z
            raise UsageError(f"{first}: holds one plane; give a second image of the same field, or a z-stack "
                             "and {z=P1 P2}", "z")
        a, b = stack_pair(stack, z)
        return Inputs(a, b, (stack, stack))
    other = read_file(second, channel, series, axes)
    a, b = single_plane(stack, in_folders), single_plane(other, in_folders)
    if a.shape != b.shape:
        raise UsageError(f"{second}: image is {b.shape[1]}x{b.shape[0]} but {first} is {a.shape[1]}x{a.shape[0]}; "
                         "pass two planes of one field")
    return Inputs(a, b, (stack, other))


def output_like(stack: Stack) -> Stack:
    """``stack``'s metadata for an output whose planes are α levels, not focal planes: not its plane labels. The
    z step stays (OME's PhysicalSizeZ, ImageJ's spacing): the levels go on T (``stacks.write_stack``), never Z."""
    return dataclasses.replace(stack, labels=None)


# --- arrays (the Python API) ----------------------------------------------------------------------------


def check_axes(axes: str, shape: tuple[int, ...]) -> str:
    """``axes`` upper-cased: letters of TCZYX, each once, one per array dimension, ending in YX, with Z."""
    if len(str(axes).strip()) != len(shape):
        raise UsageError(f"axes {axes!r} do not describe an array of shape {shape}; give one letter of TCZYX per "
                         "dimension, ending in YX, with Z, e.g. axes='ZYX' or 'CZYX'")
    return check_axes_letters(axes, need_z=True)


def array_stack(data: np.ndarray, axes: str | None, channel: int | None = None) -> Stack:
    """A 3-D or 4-D array as a ZYX ``Stack``: axes checked, the channel chosen, singleton T dropped."""
    data = np.asarray(data)
    if axes is None:
        if data.ndim != 3:
            raise UsageError(f"axes: give the axes of an array of shape {data.shape}, e.g. axes='CZYX'")
        axes = "ZYX"
    axes = check_axes(axes, data.shape)
    if "T" in axes:
        if data.shape[axes.index("T")] != 1:
            raise UsageError(f"axes {axes}: the array holds {data.shape[axes.index('T')]} time points; pass one "
                             "z-stack")
        data, axes = np.take(data, 0, axis=axes.index("T")), axes.replace("T", "")
    if "C" in axes:
        count = data.shape[axes.index("C")]
        if channel is None and count > 1:
            raise UsageError(f"{{channel}}: the array holds {count} channels (axes {axes}); pass "
                             f"{{channel=0..{count - 1}}}", "channel")
        index = 0 if channel is None else channel
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
            raise UsageError(f"{{channel}} {channel} does not exist: the array holds {count} channels; pass "
                             f"{{channel=0..{count - 1}}}", "channel")
        data, axes = np.take(data, int(index), axis=axes.index("C")), axes.replace("C", "")
    elif channel not in (None, 0):
        raise UsageError(f"{{channel}} {channel} does not exist: axes {axes} have no C; leave {{channel}} out",
                         "channel")
    return Stack(data, axes)


def array_pair(first: np.ndarray, second: np.ndarray | None = None, *, z: Sequence[int] | None = None,
               axes: str | None = None, channel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two planes of an API call: ``first`` and ``second`` as they are, or planes ``z`` of the stack
    ``first`` (axes e.g. "ZYX", "CZYX" with ``channel``). UsageError for z beside ``second``, a stack without z."""
    if z is None:
        if second is None:
            raise UsageError("{z}: give a second image, or z=(P1, P2) with a stack and its axes", "z")
        if axes is not None or channel is not None:
            raise UsageError("axes and channel describe a stack: pass z=(P1, P2) with them, or leave them out")
        return first, second
    if second is not None:
        raise UsageError("{z} chooses two planes of one stack, but a second image was given; pass one z-stack and "
                         "z=(P1, P2), or two images without z", "z")
    return stack_pair(array_stack(first, axes, channel), z, name="the stack")
