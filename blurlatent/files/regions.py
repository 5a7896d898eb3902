"""Planes read by region, never whole: what a streamed job (``inference.streaming``) reads huge planes through.

``open_plane`` gives one YX plane of a TIFF or OME-Zarr as a ``PlaneRegions`` (``shape``, ``dtype``, and
``plane[rows, cols]`` reading only that region) beside the file's facts (a ``stacks.Stack`` holding no pixel:
``read_stack(planes=())``), so outputs keep the input's metadata. OME-Zarr: the zarr array, read chunk by chunk.
TIFF: a contiguous uncompressed series through a memory map made afresh for each region (a map kept open would
keep every page it touched in the process's resident memory); any other TIFF through tifffile's zarr store (its
tiles or strips: a TIFF written as one strip reads the whole plane for each region, said in the log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.omezarr import import_zarr, is_zarr_path, list_images
from blurlatent.files.planes import zyx_plane_ids
from blurlatent.files.stacks import Stack, choose_series, read_stack

log = logging.getLogger(__name__)
BIG_CHUNK = 1 << 26  # bytes: a TIFF chunk (strip, tile) larger than this is read whole for every region in it


@dataclass
class PlaneRegions:
    """One YX plane of an N-D array-like ``source`` (a zarr array, or ``mapped`` to open a memory map per read) at the
    index ``lead`` before Y, X and ``tail`` after them. ``plane[rows, cols]`` (two slices) is a numpy array."""

    source: Any
    lead: tuple[int, ...]
    tail: tuple[int, ...]
    shape: tuple[int, int]
    dtype: np.dtype
    mapped: tuple[Path, int] | None = None  # (TIFF path, series): a fresh tifffile.memmap per read

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        if self.mapped is None:
            return np.asarray(self.source[self.lead + tuple(key) + self.tail])
        import tifffile

        mapped = tifffile.memmap(self.mapped[0], series=self.mapped[1], mode="r")
        try:
            return np.array(mapped[self.lead + tuple(key) + self.tail])
        finally:
            del mapped  # unmapped: its pages leave this process's resident memory


def file_facts(path: Path, *, channel: int | str | None, series: int | None, axes: str | None) -> Stack:
    """The facts of ``path``'s stack without a pixel (``read_stack(planes=())``); UsageError as ``read_stack``."""
    return read_stack(path, channel=channel, series=series, axes=axes, planes=())


@contextlib.contextmanager
def open_plane(path: str | Path, facts: Stack, z: int, *, series: int | None) -> Iterator[PlaneRegions]:
    """Plane ``z`` of the stack ``facts`` (``file_facts`` of ``path``) as a ``PlaneRegions``, open while the block
    runs. UsageError naming the file for one that is neither an OME-Zarr nor a TIFF (a PNG is read whole)."""
    path = Path(path)
    if is_zarr_path(path):
        zarr = import_zarr(path, "reading")
        root = zarr.open_group(str(path), mode="r")
        images = list_images(path, root)
        group, multiscale = images[choose_series(path, len(images), series)]
        yield plane_of(path, group[multiscale["datasets"][0]["path"]], facts, z)
        return
    if path.suffix.lower() == ".png":
        raise UsageError(f"{path}: a PNG is read whole; save the plane as a tiled TIFF or an OME-Zarr to stream it")
    import tifffile

    with tifffile.TiffFile(path) as tif:
        index = choose_series(path, len(tif.series), series)
        s = tif.series[index]
        if s.dataoffset is not None:  # contiguous, uncompressed: mapped per read, nothing decoded
            yield plane_of(path, s, facts, z, mapped=(path, index))
            return
        with contextlib.closing(s.aszarr()) as store:
            array = import_zarr(path, "reading").open_array(store, mode="r")
            if np.prod(array.chunks) * array.dtype.itemsize > BIG_CHUNK:
                log.info("%s: stored in chunks of %s px, each read whole for every block in it: slow; a tiled TIFF or "
                         "an OME-Zarr reads faster", path, "x".join(map(str, array.chunks[-2:][::-1])))
            yield plane_of(path, array, facts, z)


def plane_of(path: Path, array: Any, facts: Stack, z: int, mapped: tuple[Path, int] | None = None) -> PlaneRegions:
    """Plane ``z`` of ``facts``' channel in ``array`` (axes ``facts.axes``): its index found as ``planes`` finds it."""
    shape = tuple(int(n) for n in array.shape)
    ids, _ = zyx_plane_ids(path, facts.axes, shape, facts.channel_index if facts.channel_count > 1 else None, [])
    tail = (0,) if facts.axes.endswith("S") else ()
    planes = shape[:-3] if tail else shape[:-2]
    lead = tuple(int(i) for i in np.unravel_index(int(ids[z]), planes)) if planes else ()
    yx = shape[-3:-1] if tail else shape[-2:]
    return PlaneRegions(array, lead, tail, (yx[0], yx[1]), np.dtype(array.dtype), mapped)
