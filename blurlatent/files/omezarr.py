"""OME-Zarr images (OME-NGFF 0.1–0.5) in and out through zarr, the optional extra ``blurlatent[zarr]``.

Reading takes the full-resolution level (``datasets[0]``) of one image: an image group (``multiscales``), a
bioformats2raw folder (images ``0``, ``1``, …) or a well (its ``images``); which one is the caller's ``series``
choice. Pixel sizes come from the ``scale`` transforms (dataset and multiscale level) with the axes' units,
channel names from ``omero``. Writing makes an NGFF 0.4 image (zarr format 2, ``/`` chunk keys): the version
most viewers read (napari-ome-zarr, Fiji/MoBIE, QuPath, OMERO). Plane labels, the source file's name and the
provenance (``provenance.py``) go in a ``blurlatent`` attribute beside the NGFF metadata; it also marks the
folder as ours, the only kind of folder a write with ``force`` replaces. stacks.py is the public face
(``read_stack``/``write_stack``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.atomic import (
    check_output_location,
    disk_space,
    make_temp_dir,
    output_name,
    replace_folder,
    terminate_as_interrupt,
)
from blurlatent.files.planes import PlanePick, zarr_fetch
from blurlatent.files.provenance import KEY, Provenance

EXTRA = "pip install 'blurlatent[zarr]'"
NGFF_VERSION = "0.4"
OURS = KEY  # "blurlatent", our group attribute: {"labels": [...], "source": file name, "provenance": {...}}
ZARR_FILES = ("zarr.json", ".zgroup", ".zattrs")
WRITTEN = {".zgroup", ".zattrs", "0"}  # what write_omezarr puts in its folder: the group and one array
# NGFF units are UDUNITS-2 names; µm per unit
UM_PER_NGFF_UNIT = {"angstrom": 1e-4, "picometer": 1e-6, "nanometer": 1e-3, "micrometer": 1.0, "micron": 1.0,
                    "millimeter": 1e3, "centimeter": 1e4, "decimeter": 1e5, "meter": 1e6, "inch": 25400.0,
                    "foot": 304800.0}
AXIS_LETTERS = {"x": "X", "y": "Y", "z": "Z", "t": "T", "c": "C"}
TYPE_LETTERS = {"time": "T", "channel": "C"}
PLANE_CHUNK = 1024  # chunks are one plane deep and at most this many pixels across

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZarrImage:
    """One OME-Zarr image at full resolution: ``data`` in the order of ``axes`` (upper-case letters, e.g.
    "TCZYX"; an axis that is none of T, C, Z, Y, X is "O"); ``size`` (x, y, z) in µm, None where unknown;
    ``names`` channel names ("" where unnamed); ``labels`` our plane labels by z."""

    data: np.ndarray
    axes: str
    size: tuple[float | None, float | None, float | None]
    names: list[str] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)


def size_um(value, scale: float | None, source, axis: str) -> float | None:
    """A pixel size ``value`` in a unit of ``scale`` µm, as µm: None where unknown (no value or no known unit)
    and, with a warning naming ``source``, where it is not a finite number > 0 — a size of 0, a negative or NaN
    one is a metadata error, which outputs must not carry on (invalid OME, an NGFF scale of 0)."""
    if value is None or scale is None:
        return None
    try:
        size = float(value) * scale
    except (TypeError, ValueError, OverflowError):
        size = math.nan
    if math.isfinite(size) and size > 0:
        return size
    log.warning("%s: pixel size %s %r is not a positive number; ignored, so no output carries it", source, axis, value)
    return None


def is_zarr_path(path: str | Path) -> bool:
    """True for a ``.zarr`` name or a folder holding zarr metadata: what ``read_stack`` reads as OME-Zarr."""
    path = Path(path)
    return path.suffix.lower() == ".zarr" or (path.is_dir() and any((path / n).is_file() for n in ZARR_FILES))


def import_zarr(path: Path, doing: str):
    try:
        import zarr
    except ImportError:
        raise UsageError(f"{path}: {doing} OME-Zarr needs the zarr package; {EXTRA}") from None
    return zarr


def ngff_attrs(group) -> dict:
    """The NGFF metadata of a zarr group: under "ome" from NGFF 0.5 (zarr format 3), at the top before."""
    attrs = group.attrs.asdict()
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


def read_omezarr(path: str | Path, choose: Callable[[int], int], pick: PlanePick | None = None) -> ZarrImage:
    """Image ``choose(count)`` of the OME-Zarr at ``path`` (with ``pick``, data holds only its planes: the chunks they
    are in, ``PlanePick.read``). UsageError naming the file when zarr is missing, the folder is no OME-Zarr image, or
    a chunk cannot be read."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: file not found; check the path")
    zarr = import_zarr(path, "reading")
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for folders that are not (or not readable) zarr groups
        raise UsageError(f"{path}: not a zarr group ({type(exc).__name__}: {exc}); pass an OME-Zarr image "
                         "folder") from None
    images = list_images(path, root)
    group, multiscale = images[choose(len(images))]
    try:
        return load_image(group, multiscale, ngff_attrs(group), path, pick)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path}: cannot read OME-Zarr ({type(exc).__name__}: {exc}); re-copy or re-export "
                         "the image") from None


def list_images(path: Path, root) -> list[tuple]:
    """(group, multiscale) of every image ``path`` holds, in order: the series a caller chooses from."""
    meta = ngff_attrs(root)
    if "plate" in meta:
        raise UsageError(f"{path}: is an OME-Zarr plate; pass one well or image inside it (e.g. {path}/A/1/0)")
    if "multiscales" in meta:
        groups = [root]
    elif "bioformats2raw.layout" in meta:
        groups = [root[k] for k in sorted((k for k in root.group_keys() if k.isdigit()), key=int)]
    elif isinstance(meta.get("well"), dict):
        groups = [root[im["path"]] for im in meta["well"].get("images", []) if str(im.get("path", "")) in root]
    else:
        groups = []
    images = [(g, m) for g in groups for m in ngff_attrs(g).get("multiscales", []) if m.get("datasets")]
    if not images:
        raise UsageError(f"{path}: holds no OME-Zarr image (no multiscales metadata); pass an OME-Zarr image folder")
    return images


def load_image(group, multiscale: dict, meta: dict, source=None, pick: PlanePick | None = None) -> ZarrImage:
    dataset = multiscale["datasets"][0]
    array = group[dataset["path"]]
    axes_meta = multiscale.get("axes") or list("tczyx"[-array.ndim:])  # NGFF 0.1/0.2 had no axes: always TCZYX
    axes_meta = [a if isinstance(a, dict) else {"name": a} for a in axes_meta]  # 0.3: names only
    if len(axes_meta) != array.ndim:
        raise UsageError(f"{group.store}: {len(axes_meta)} axes for an array of {array.ndim} dimensions; re-export "
                         "the image")
    axes = "".join(AXIS_LETTERS.get(str(a.get("name", "")).lower(), TYPE_LETTERS.get(a.get("type"), "O"))
                   for a in axes_meta)
    scale = np.ones(array.ndim)
    for transforms in (dataset.get("coordinateTransformations"), multiscale.get("coordinateTransformations")):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == array.ndim:
                scale = scale * np.asarray(t["scale"], dtype=float)
    size = []
    for ax in "XYZ":
        i = axes.find(ax)
        unit = UM_PER_NGFF_UNIT.get(str(axes_meta[i].get("unit", "")).lower()) if i >= 0 else None
        size.append(size_um(scale[i], unit, source or group.store, ax.lower()))  # no unit: the scale's unit is unknown
    x, y, z = size
    channels = meta.get("omero", {}).get("channels", []) if isinstance(meta.get("omero"), dict) else []
    names = [str(c.get("label") or "") if isinstance(c, dict) else "" for c in channels]
    ours = group.attrs.asdict().get(OURS, {})
    labels = ours.get("labels") if isinstance(ours, dict) else None
    labels = {z: str(s) for z, s in enumerate(labels)} if isinstance(labels, list) else {}
    data = np.asarray(array[...]) if pick is None else pick.read(axes, array.shape, array.dtype, names,
                                                                  zarr_fetch(array))
    return ZarrImage(data, axes, (x, y, z), names, labels)


def write_omezarr(path: str | Path, data: np.ndarray, *,
                  pixel_size: tuple[float | None, float | None, float | None] = (None, None, None),
                  channel: str | None = None, labels: list[str] | None = None, source: str | None = None,
                  force: bool = False, inputs: tuple[Path, ...] = (), provenance: Provenance | None = None) -> None:
    """Write a YX plane or ZYX stack as an NGFF 0.4 image folder, atomically (built in a temp folder beside
    ``path``, then renamed onto it). ``pixel_size`` (x, y, z) in µm becomes the scale (unit micrometer); a
    None size is written as scale 1 without a unit. ``provenance`` goes in ``attrs["blurlatent"]``, and the
    planes of 3-D ``data`` with one are its α levels, on a ``t`` axis: napari and Fiji/MoBIE give a time axis a
    slider (a channel axis would be split into overlaid layers, a z axis read as depth). An existing ``path`` is
    replaced only with ``force`` and only when blurlatent wrote it; an input is never replaced."""
    path, data = Path(path), np.asarray(data)
    with omezarr_draft(path, data.shape, data.dtype, force=force, inputs=inputs, need=data.nbytes + 65536) as draft:
        draft.array[...] = data
        window = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
        draft.attrs = omezarr_attrs(path, data.ndim, pixel_size=pixel_size, channel=channel, labels=labels,
                                    source=source, provenance=provenance, window=window)


def omezarr_attrs(path: Path, ndim: int, *, pixel_size: tuple[float | None, float | None, float | None],
                  channel: str | None, labels: list[str] | None, source: str | None, provenance: Provenance | None,
                  window: tuple[float, float]) -> dict:
    """The group attributes ``write_omezarr`` writes for an image of ``ndim`` dimensions (its docstring says what),
    ``window`` the (min, max) an omero channel shows: whole images and images written block by block share them."""
    axes = ("tyx" if provenance is not None else "zyx") if ndim == 3 else "yx"
    # a bad size: unwritten
    sizes = {a: size_um(v, 1.0, output_name(path), a) for a, v in zip("xyz", pixel_size, strict=True)}
    axes_meta = [{"name": a, "type": "time"} if a == "t" else
                 {"name": a, "type": "space", **({"unit": "micrometer"} if sizes[a] is not None else {})}
                 for a in axes]
    scale = [float(s) if (s := sizes.get(a)) is not None else 1.0 for a in axes]
    multiscale = {"version": NGFF_VERSION, "name": channel or path.name.split(".")[0], "axes": axes_meta,
                  "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}
    attrs: dict = {"multiscales": [multiscale], OURS: {"source": source or "", "labels": list(labels or [])}}
    if provenance is not None:
        attrs[OURS]["provenance"] = provenance.as_dict()
    if channel:
        lo, hi = window
        attrs["omero"] = {"version": NGFF_VERSION, "channels": [
            {"label": channel, "color": "FFFFFF", "active": True,
             "window": {"min": lo, "max": hi, "start": lo, "end": hi}}]}
    return attrs


@dataclass
class OmeZarrDraft:
    """An OME-Zarr image being written (``omezarr_draft``): its array ``"0"`` to fill, the ``attrs`` to give it
    (``omezarr_attrs``), and ``tmp``, the temp folder it is built in, where ``scratch`` arrays may go too."""

    array: Any
    attrs: dict
    tmp: Path

    def scratch(self, shape: tuple[int, ...], dtype, name: str = "unit") -> Any:
        """A zarr array ``name`` beside the image in its temp folder, deleted before the folder becomes the output."""
        store = self.tmp / f".{name}.zarr"
        zarr = import_zarr(store, "writing")
        return zarr.create_array(str(store), shape=shape, dtype=dtype, chunks=plane_chunks(shape), zarr_format=2,
                                 fill_value=0)


def plane_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks one plane deep and at most PLANE_CHUNK px across."""
    return (1,) * (len(shape) - 2) + tuple(min(n, PLANE_CHUNK) for n in shape[-2:])


@contextlib.contextmanager
def omezarr_draft(path: Path, shape: tuple[int, ...], dtype, *, force: bool = False, inputs: tuple[Path, ...] = (),
                  need: int = 0) -> Iterator[OmeZarrDraft]:
    """The output policy for an OME-Zarr image written piece by piece: ``path`` checked (``check_zarr_output``), an
    empty array of ``shape`` and ``dtype`` (``plane_chunks``) built in a temp folder beside it, and when the block
    ends the draft's ``attrs`` written, its scratch arrays deleted and the folder renamed onto ``path``; an error,
    Ctrl-C or SIGTERM in the block leaves no output and no temp. ``need``: bytes of disk the block will write."""
    zarr = import_zarr(path, "writing")
    check_zarr_output(path, force, inputs)
    with terminate_as_interrupt(), disk_space(path, need):
        tmp = make_temp_dir(path)
        try:
            root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
            array = root.create_array("0", shape=shape, dtype=dtype, chunks=plane_chunks(shape), fill_value=0,
                                      chunk_key_encoding={"name": "v2", "separator": "/"})
            draft = OmeZarrDraft(array, {}, tmp)
            yield draft
            root.attrs.update(draft.attrs)
            for entry in tmp.iterdir():
                if entry.name not in WRITTEN:
                    shutil.rmtree(entry)
            replace_folder(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def check_zarr_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing ``path`` unless ``force`` and it is an OME-Zarr blurlatent wrote (a folder we did not
    write is never replaced), and an output that is one of ``inputs``."""
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise UsageError(f"{path}: is the input; choose another output (an input is never overwritten, even with "
                         "{force=True})", "force")
    if path.exists() or path.is_symlink():
        if not force:
            raise UsageError(f"{path}: already exists; pass {{force=True}} to overwrite it or choose another output",
                             "force")
        if path.is_symlink() or not path.is_dir() or not written_by_us(path):
            raise UsageError(f"{path}: exists and is not an OME-Zarr written by blurlatent, so it is never replaced "
                             "(even with {force=True}); choose another output", "force")
        extra = sorted(e.name for e in path.iterdir() if e.name not in WRITTEN)
        if extra:  # ours, but someone put more in it: replacing the folder would delete that too
            raise UsageError(f"{path}: holds {extra[0]!r}, which blurlatent did not write, so it is never replaced "
                             "(even with {force=True}); choose another output", "force")
    check_output_location(path)


def written_by_us(path: Path) -> bool:
    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs) if name == "zarr.json" else attrs
        if isinstance(attrs, dict) and isinstance(attrs.get(OURS), dict):
            return True
    return False
