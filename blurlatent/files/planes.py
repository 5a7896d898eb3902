"""One z-stack out of a file's image: singleton axes dropped, the channel chosen, the z axis found — on the pixels
read (``select_zyx``), or on the image's axes and shape alone (``zyx_plane_ids``), so that a reader fetches only the
planes a job needs (``PlanePick``): two planes of a 40-plane stack are two TIFF pages or two zarr chunks read, not
forty. ``stacks.read_stack`` reads by them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.axes import channel_index, given_axes

Z_LIKE = "ZQI"  # tifffile names the pages of a plain multi-page TIFF Q (shaped) or I (sequence): the z axis


def zyx_plane_ids(path: Path, axes: str, shape: Sequence[int], channel: int | str | None,
                  names: list[str]) -> tuple[np.ndarray, int | None]:
    """(the file's plane number of each z plane of the chosen channel, in z order: C order over the axes before YX;
    the channel chosen, None where the image has one), from the image's ``axes`` and ``shape`` alone. UsageError
    naming the file for colour samples, axes that are not planes of Y by X pixels, several time points, an axis that
    is no z axis or two that could each be z, and a ``channel`` that is not there (``axes.channel_index``)."""
    shape = tuple(int(s) for s in shape)
    if "S" in axes and shape[axes.index("S")] > 1:
        raise UsageError(f"{path}: holds colour samples (axes {axes}, shape {shape}); save one grayscale "
                         "channel per file")
    if axes.endswith("S"):  # one sample per pixel
        axes, shape = axes[:-1], shape[:-1]
    if axes[-2:] != "YX" or len(axes) != len(shape):
        raise UsageError(f"{path}: axes {axes} with shape {shape} are not planes of Y by X pixels; re-export "
                         "the stack as ZYX or CZYX")
    ids = np.arange(int(np.prod(shape[:-2], dtype=np.int64))).reshape(shape[:-2])
    chosen = None
    if "C" in axes and shape[axes.index("C")] > 1:
        chosen = channel_index(path, shape[axes.index("C")], channel, names)
    elif channel not in (None, 0) and (channel not in names):
        raise UsageError(f"{{channel}} {channel} does not exist: {path} has one channel; leave {{channel}} out",
                         "channel")
    keep = ""
    for ax, size in zip(axes[:-2], shape[:-2], strict=True):
        i = len(keep)  # the axes before this one that were kept: the dropped ones are gone from ids
        if ax == "C" and chosen is not None:
            ids = np.take(ids, chosen, axis=i)
        elif size == 1:
            ids = np.take(ids, 0, axis=i)
        elif ax == "T":
            raise UsageError(f"{path}: holds {size} time points (axes {axes}, shape {shape}); blurlatent "
                             "reads one z-stack, save one time point per file")
        elif ax not in Z_LIKE:
            raise UsageError(f"{path}: axis {ax} of size {size} (axes {axes}) is not a z axis; re-export the "
                             "stack as ZYX or CZYX")
        else:
            keep += ax
    if len(keep) > 1:
        raise UsageError(f"{path}: {len(keep)} axes ({keep}) could each be z (axes {axes}); re-export the stack "
                         "as ZYX or CZYX")
    return ids.reshape(-1), chosen


def select_zyx(path: Path, axes: str, data: np.ndarray, channel: int | str | None,
               names: list[str]) -> tuple[np.ndarray, np.ndarray, int | None]:
    """``data`` (axes ``axes``) as ZYX: singleton axes dropped, the channel chosen, the z axis found. Also
    returns the file's plane number of each chosen plane (for its label) and the chosen channel. A view of ``data``
    where it holds one channel's planes in order, else a copy of the chosen planes only."""
    ids, chosen = zyx_plane_ids(path, axes, data.shape, channel, names)
    if axes.endswith("S"):
        data = data[..., 0]
    planes = data.reshape(-1, *data.shape[-2:])
    in_order = len(ids) == len(planes) and bool(np.all(ids == np.arange(len(planes))))
    return (planes if in_order else planes[ids]), ids, chosen


@dataclass
class PlanePick:
    """Planes ``planes`` (z indices, in that order; () for none: the image's facts alone) of one channel of ``path``,
    chosen on the image's axes and shape before a pixel is read; ``given``: axes that replace the file's
    (``axes.given_axes``). ``read`` fills in ``axes``, ``count`` (channels), ``chosen`` (the channel), ``depth`` (the
    stack's planes), ``all_ids`` (the file's plane number of each), ``held`` (the planes read: ``planes``; None for
    every plane of a one-plane stack asked for planes, nothing to pick; () where a plane lies outside the stack, which
    the caller's range check then says in its words) and ``ids`` (the file's plane numbers of those)."""

    path: Path
    channel: int | str | None
    planes: tuple[int, ...]
    given: str | None = None
    axes: str = ""
    count: int = 1
    chosen: int | None = None
    depth: int = 0
    all_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    held: tuple[int, ...] | None = None
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def read(self, axes: str, shape: Sequence[int], dtype, names: list[str],
             fetch: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        """The picked planes [k, Y, X] of an image of ``axes`` and ``shape``, through ``fetch(file plane numbers)``
        (which returns them stacked). UsageError: ``zyx_plane_ids``'s refusals."""
        self.axes = given_axes(self.path, self.given, axes, tuple(shape))
        self.count = int(shape[self.axes.index("C")]) if "C" in self.axes else 1
        self.all_ids, self.chosen = zyx_plane_ids(self.path, self.axes, shape, self.channel, names)
        self.depth = len(self.all_ids)
        inside = all(0 <= z < self.depth for z in self.planes)
        # planes=(): the facts alone, never a pixel (a streamed job's huge one-plane inputs); a stack of one plane
        # asked for planes is read whole
        self.held = None if self.depth == 1 and self.planes else self.planes if inside else ()
        self.ids = self.all_ids if self.held is None else self.all_ids[list(self.held)]
        yx = tuple(int(s) for s in (shape[-3:-1] if self.axes.endswith("S") else shape[-2:]))
        if not len(self.ids):
            return np.empty((0, *yx), dtype=dtype)
        return np.asarray(fetch([int(i) for i in self.ids])).reshape(len(self.ids), *yx)


def tiff_fetch(series) -> Callable[[list[int]], np.ndarray]:
    """``PlanePick.read``'s fetch for a tifffile series: its pages by index where each page is one plane, else (a
    page holding a volume, a file tifffile maps as one block) the planes taken from the whole series."""
    page = tuple(series.keyframe.shape)
    if page == tuple(series.shape[-len(page):]) and len(series) * int(np.prod(page)) == int(np.prod(series.shape)):
        return lambda ids: series.asarray(key=ids)
    return lambda ids: series.asarray().reshape(-1, *series.shape[-2:])[ids]


def zarr_fetch(array) -> Callable[[list[int]], np.ndarray]:
    """``PlanePick.read``'s fetch for a zarr array: each plane sliced out, so only its chunks are read."""
    return lambda ids: np.stack([np.asarray(array[np.unravel_index(i, array.shape[:-2])]) for i in ids])
