"""Z-stacks in and out with their metadata: multi-page TIFF, ImageJ hyperstacks, OME-TIFF (tifffile) and
OME-Zarr (omezarr.py, the optional extra ``blurlatent[zarr]``).

The API (A2's batch/CLI and B's prepare call these; extend, never rename)::

    read_stack(path, *, channel=None, series=None, planes=None) -> Stack
        path: a .tif/.tiff/.ome.tif/.png file, or an OME-Zarr folder (a ``.zarr`` name or a folder with zarr
        metadata). channel: index or name (a digit string counts as an index); series: TIFF series or
        OME-Zarr image (bioformats2raw image, well image, or multiscales entry); planes: read only these
        (their pages or chunks; ``Stack.planes``, ``Stack.plane_count``).
    Stack(data ZYX, axes, pixel_size (x, y, z) µm | None each, channel, path, kind, labels, channel_index,
          channel_count)
        kind: "tiff", "imagej", "ome", "png" or "zarr"; labels: one per plane or None.
    stack_plane(stack, z) -> YX array            (UsageError naming z and the range)
    write_stack(path, data YX|ZYX|levels YX, *, like=None, labels=None, force=False, pixel_size=None,
                provenance=None) -> None
    alpha_labels(alphas) -> ["alpha=0.000", ...]  (the plane labels of blur levels)
    is_ome_name(path) -> bool

``read_stack`` gives one channel of one series as a ZYX array (a single plane is Z=1) with its pixel sizes
in µm (OME in any unit, ImageJ resolution + unit, OME-Zarr scale + axis units); what a file holds more of
(series, channels, time points) is chosen by the caller or refused with one line naming the choices, never
guessed. ``write_stack`` writes OME-TIFF for OME/OME-Zarr inputs and every ``.ome.tif`` name (a plain TIFF
never gets that name), ImageJ for ImageJ inputs (or plane labels, or pixel sizes: OME where ImageJ cannot hold
the pixel type), OME-Zarr for ``.zarr`` names, else a plain TIFF, always atomically and in the data's own dtype,
with the job's ``provenance.Provenance`` where it is given (and then several planes are α levels, on the T axis).
Pixel sizes that are not > 0 are dropped with a warning, on reading and on writing.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.atomic import atomic_path, check_writable, disk_space, output_name, terminate_as_interrupt
from blurlatent.files.axes import given_axes, imagej_names
from blurlatent.files.images import check_image_path, read_image, write_image
from blurlatent.files.omezarr import UM_PER_NGFF_UNIT, is_zarr_path, read_omezarr, size_um, write_omezarr
from blurlatent.files.planes import PlanePick, select_zyx, tiff_fetch
from blurlatent.files.provenance import Provenance

OME_SUFFIXES = (".ome.tif", ".ome.tiff")
LABELS_NAMESPACE = "blurlatent/plane-labels"  # the OME MapAnnotation holding one label per Z plane
# µm per unit, as OME (UnitsLength symbols) and ImageJ (its unit strings) write them; NGFF names in omezarr
UM_PER_UNIT = {"µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "\\u00B5m": 1.0, "am": 1e-12,
               "fm": 1e-9, "pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "dm": 1e5, "m": 1e6,
               "in": 25400.0, "inch": 25400.0, "thou": 25.4}
# what tifffile writes as ImageJ (its imagej=True rule, 'BHhf'): ImageJ shows int16 through a calibration, -32768
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)
IMAGEJ_TYPES = "uint8, uint16, int16 or float32"


@dataclass(frozen=True)
class Stack:
    """One channel of one series: ``data`` is ZYX; ``axes`` the source's axes (e.g. "ZCYX");
    ``pixel_size`` (x, y, z) in µm, None where the file does not say; ``kind`` "ome", "imagej" or "tiff";
    ``labels`` one per plane where the file has plane labels; ``channel_index`` the channel chosen (0: the only);
    ``channel_count`` how many channels the series holds (the napari reader opens each); ``z_um`` each plane's z in
    µm where the file lists every one (OME ``Plane PositionZ``: uneven spacing), else None; ``planes`` the stack's
    planes ``data`` holds where it holds only some (``read_stack(planes=...)``), and ``depth`` how many it has."""

    data: np.ndarray
    axes: str
    pixel_size: tuple[float | None, float | None, float | None] = (None, None, None)
    channel: str | None = None
    path: Path | None = None
    kind: str = "tiff"
    labels: tuple[str, ...] | None = None
    channel_index: int = 0
    channel_count: int = 1
    z_um: tuple[float, ...] | None = None
    planes: tuple[int, ...] | None = None
    depth: int | None = None

    @property
    def plane_count(self) -> int:
        """How many planes the stack has: ``data``'s, or ``depth`` where ``data`` holds only some."""
        return int(self.data.shape[0]) if self.depth is None else self.depth


class ImageFacts(TypedDict):
    """What a file says about its image: channel names ("" where unnamed), (x, y, z) pixel size in µm (None
    where unknown), our plane labels by z and the planes' z positions in µm by (channel, z) at the first time."""

    names: list[str]
    size: tuple[float | None, float | None, float | None]
    labels: dict[int, str]
    positions: dict[tuple[int, int], float]


def is_ome_name(path: str | Path) -> bool:
    return str(path).lower().endswith(OME_SUFFIXES)


def read_stack(path: str | Path, *, channel: int | str | None = None, series: int | None = None,
               axes: str | None = None, planes: Sequence[int] | None = None) -> Stack:
    """One channel of one series of ``path`` as a ZYX ``Stack``; ``axes`` (e.g. "CZYX") replaces the axes the file
    says (``given_axes``); ``planes`` (z indices; () for none, the stack's facts alone): only these planes are read
    (TIFF pages, zarr chunks; ``planes.PlanePick``), ``data`` holds them in that order and ``Stack.planes`` says so
    (a stack of one plane is read whole). UsageError (naming the file and the parameter to pass) for several series
    without ``series``, several channels without ``channel``, more than one time point, axes that cannot be read as
    one z-stack, or a plane outside it."""
    path, given = Path(path), axes
    if isinstance(channel, str) and channel.strip().isdigit():
        channel = int(channel)
    pick = None if planes is None else PlanePick(path, channel, tuple(int(z) for z in planes), given)
    if is_zarr_path(path):
        image = read_omezarr(path, lambda count: choose_series(path, count, series), pick)
        axes, data, kind, imagej = image.axes, image.data, "zarr", None
        meta = ImageFacts(names=image.names, size=image.size, labels=image.labels, positions={})
    else:
        if path.is_dir():
            raise UsageError(f"{path}: is a folder without zarr metadata; pass an image file (.tif/.tiff/.png) or an "
                             "OME-Zarr folder")
        check_image_path(path)
        if path.suffix.lower() == ".png":
            return Stack(read_image(path)[None], given_axes(path, given, "YX", (2, 2)), path=path, kind="png")
        axes, data, kind, meta, imagej = read_tiff(path, series, pick)
    if pick is None:
        axes = given_axes(path, given, axes, data.shape)
        count = data.shape[axes.index("C")] if "C" in axes and len(axes) == data.ndim else 1
        data, plane_ids, c = select_zyx(path, axes, data, channel, meta["names"])
        depth, held = data.shape[0], None
    else:
        axes, count, plane_ids, c, depth = pick.axes, pick.count, pick.all_ids, pick.chosen, pick.depth
        held = pick.held
    labels = plane_labels(imagej, meta["labels"], plane_ids)
    labels = tuple(labels[z] for z in held) if labels is not None and held is not None else labels
    names = meta["names"]
    name = (names[c or 0] or None) if (c or 0) < len(names) else None
    check_pixels(path, data)
    listed = [meta["positions"].get((c or 0, z)) for z in range(depth)]
    z_um = tuple(v for v in listed if v is not None) if len(listed) > 1 and None not in listed else None
    return Stack(data, axes, meta["size"], name, path, kind, labels, c or 0, count, z_um, held,
                 None if held is None else depth)


def read_tiff(path: Path, series: int | None,
              pick: PlanePick | None = None) -> tuple[str, np.ndarray, str, ImageFacts, dict | None]:
    """Axes, data, kind, OME facts (``ome_facts``'s keys) and ImageJ metadata of one series of a TIFF; with ``pick``,
    data holds only its planes (``PlanePick.read``: the pages they are on)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            index = choose_series(path, len(tif.series), series)
            s = tif.series[index]
            kind = "ome" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
            ome = tif.ome_metadata if tif.is_ome else None
            imagej = tif.imagej_metadata if tif.is_imagej else None
            resolution = imagej_resolution(tif.pages[0]) if imagej is not None else (None, None)
            meta = tiff_facts(path, index, ome, imagej, resolution, s.axes, s.shape)
            axes = s.axes
            data = s.asarray() if pick is None else pick.read(axes, s.shape, s.dtype, meta["names"], tiff_fetch(s))
    except UsageError:
        raise
    except Exception as exc:  # tifffile raises many types for truncated/corrupt files
        raise UsageError(f"{path}: cannot read TIFF ({type(exc).__name__}: {exc}); re-copy or re-export the "
                         "file") from None
    return axes, data, kind, meta, imagej


def tiff_facts(path: Path, index: int, ome: str | None, imagej: dict | None, resolution, axes: str,
               shape: tuple[int, ...]) -> ImageFacts:
    """``ImageFacts`` of series ``index`` of a TIFF: from its OME XML, or its ImageJ metadata and resolution."""
    meta = ome_facts(ome, index, path) if ome is not None else ImageFacts(names=[], size=(None, None, None), labels={},
                                                                          positions={})
    if imagej is not None:
        scale, spacing = um_per_unit(imagej.get("unit")), imagej.get("spacing")
        x, y, z = (size_um(v, scale, path, ax) for v, ax in zip((*resolution, spacing), "xyz", strict=True))
        meta["size"] = (x, y, z)
        meta["names"] = meta["names"] or imagej_names(imagej.get("Labels"), axes, shape)
    return meta


def choose_series(path: Path, count: int, series: int | None) -> int:
    if count == 0:
        raise UsageError(f"{path}: TIFF holds no readable image; re-copy or re-export the file")
    if series is None:
        if count > 1:
            raise UsageError(f"{path}: holds {count} image series; pass {{series=0..{count - 1}}} to choose one",
                             "series")
        return 0
    if not 0 <= series < count:
        raise UsageError(f"{{series}} {series} does not exist: {path} holds {count} series (0..{count - 1}); "
                         f"pass {{series=0..{count - 1}}}", "series")
    return series


def check_pixels(path: Path, data: np.ndarray) -> None:
    if data.shape[-1] < 2 or data.shape[-2] < 2:
        raise UsageError(f"{path}: planes are {data.shape[-1]}x{data.shape[-2]} pixels, too small; pass a real image")
    if data.dtype.kind not in "uif" or data.dtype == np.bool_:
        raise UsageError(f"{path}: unsupported pixel type {data.dtype}; pass 8/16-bit integer or float images")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise UsageError(f"{path}: image holds NaN or infinite values; clean or re-export it")


def imagej_resolution(page) -> tuple[float | None, float | None]:
    """Pixel width and height in the ImageJ unit, from the TIFF resolution tags (pixels per unit)."""
    sizes = []
    for tag in ("XResolution", "YResolution"):
        value = page.tags.get(tag)
        num, den = value.value if value is not None else (0, 1)
        sizes.append(den / num if num else None)
    return sizes[0], sizes[1]


def ome_facts(xml: str, index: int, source=None) -> ImageFacts:
    """Channel names, (x, y, z) pixel sizes in µm (``omezarr.size_um``: a size that is not > 0 is dropped, with a
    warning naming ``source``) and our plane labels of OME Image ``index``."""
    root = ET.fromstring(xml)
    images = root.findall("{*}Image")
    pixels = images[index].find("{*}Pixels") if index < len(images) else None
    if pixels is None:
        return ImageFacts(names=[], size=(None, None, None), labels={}, positions={})
    size = []
    for ax in "XYZ":
        value, unit = pixels.get(f"PhysicalSize{ax}"), pixels.get(f"PhysicalSize{ax}Unit", "µm")
        size.append(size_um(value, um_per_unit(unit), source, ax.lower()))
    names = [c.get("Name") or "" for c in pixels.findall("{*}Channel")]  # "" where a channel has no name
    refs = {r.get("ID") for r in images[index].findall("{*}AnnotationRef")}
    labels = {}
    for annotation in root.iter():
        if (annotation.tag.endswith("MapAnnotation") and annotation.get("Namespace") == LABELS_NAMESPACE
                and annotation.get("ID") in refs):
            for m in annotation.iter():
                if m.tag.endswith("}M") and (key := m.get("K") or "").isdigit():
                    labels[int(key)] = m.text or ""
    x, y, z = size
    return {"names": names, "size": (x, y, z), "labels": labels, "positions": plane_positions(pixels)}


def plane_positions(pixels: ET.Element) -> dict[tuple[int, int], float]:
    """OME ``Plane`` z positions in µm by (channel, z), at the first time point; {} where a plane lacks a finite one
    or its unit is not a length (OME's default unit, the "reference frame", is taken as µm, as Bio-Formats does)."""
    found = {}
    for plane in pixels.findall("{*}Plane"):
        unit = plane.get("PositionZUnit", "µm")
        scale = 1.0 if unit == "reference frame" else um_per_unit(unit)
        if plane.get("TheT", "0") != "0":
            continue
        try:
            value = float(plane.get("PositionZ", "nan")) * (scale or math.nan)
            key = int(plane.get("TheC", "0")), int(plane.get("TheZ", "0"))
        except ValueError:
            return {}
        if not math.isfinite(value):
            return {}
        found[key] = value
    return found


def plane_labels(imagej: dict | None, ome_labels: dict[int, str], ids: np.ndarray) -> tuple[str, ...] | None:
    """The labels of the chosen planes: ImageJ slice labels (by plane number) or our OME labels (by z)."""
    flat = ids.reshape(-1)
    if imagej is not None and isinstance(imagej.get("Labels"), list):
        source = imagej["Labels"]
        return tuple(str(source[i]) for i in flat) if all(i < len(source) for i in flat) else None
    if ome_labels and all(z in ome_labels for z in range(len(flat))):
        return tuple(ome_labels[z] for z in range(len(flat)))
    return None


def stack_plane(stack: Stack, z: int) -> np.ndarray:
    """Plane ``z`` of ``stack`` (YX); UsageError naming z and the valid range."""
    count = stack.data.shape[0]
    if not 0 <= z < count:
        raise UsageError(f"{{z}} {z} is out of range: {stack.path} has {count} planes; pass {{z=0..{count - 1}}}", "z")
    return stack.data[z]


def alpha_labels(alphas) -> list[str]:
    """One plane label per blur level, ``alpha=0.250``: what ``write_stack(labels=...)`` gets for blur levels."""
    return [f"alpha={float(a):.3f}" for a in alphas]


def write_stack(path: str | Path, data: np.ndarray, *, like: Stack | None = None,
                labels: list[str] | None = None, force: bool = False,
                pixel_size: tuple[float | None, float | None, float | None] | None = None,
                provenance: Provenance | None = None, channels: Sequence[str] | None = None) -> None:
    """Write a YX plane or ZYX stack atomically, keeping ``like``'s metadata: OME-TIFF for an OME or OME-Zarr
    ``like`` and for every ``.ome.tif``/``.ome.tiff`` name (pixel sizes, channel name, source file name in the
    description, plane labels as a MapAnnotation), ImageJ for an ImageJ ``like`` or when ``labels`` or
    ``pixel_size`` are given (resolution, unit, z spacing, slice labels), an NGFF image folder for a ``.zarr``
    name (needs ``blurlatent[zarr]``), a PNG for a ``.png`` plane, else a plain TIFF. ``labels``: one per plane
    (``alpha_labels``); ``pixel_size`` (x, y, z) in µm overrides ``like``'s. ``provenance`` is recorded as
    ``provenance.read_provenance`` reads it back, and makes the planes of a 3-D ``data`` its α levels (one per
    ``provenance.alphas``), written on the T axis: a level is no depth. UsageError for a wrong shape or label
    count, an existing output without ``force``, ``like``'s own file as the output, or an ImageJ ``like`` with
    pixels ImageJ cannot hold (``IMAGEJ_DTYPES``; nothing is converted). ``channels``: the names ("" unnamed) of
    ``data``'s first axis, channels (CYX, or C × levels × YX), written as OME-TIFF, which names each channel."""
    path, data = Path(path), np.asarray(data)
    lead = 0 if channels is None else 1
    if data.ndim - lead not in (2, 3) or (channels is not None and len(channels) != data.shape[0]):
        raise UsageError(f"{path}: data has shape {data.shape}; write a YX plane or a ZYX stack"
                         f"{'' if channels is None else f', after {len(channels)} channels'}")
    planes = 1 if data.ndim - lead == 2 else data.shape[lead]
    if labels is not None and len(labels) != planes:
        raise UsageError(f"labels: {len(labels)} given for {planes} planes; pass one label per plane")
    if provenance is not None and len(provenance.alphas) != planes:
        raise UsageError(f"provenance: {len(provenance.alphas)} alphas for {planes} levels; pass one per level")
    given = pixel_size if pixel_size is not None else like.pixel_size if like is not None else None
    if given is not None:
        x, y, z = (size_um(v, 1.0, output_name(path), ax) for v, ax in zip(given, "xyz", strict=True))
        like = replace(like or Stack(data, "ZYX", kind="tiff"), pixel_size=(x, y, z))  # a bad size: never written
    inputs = (like.path,) if like is not None and like.path is not None else ()
    kind = output_kind(path, like, labels, data.dtype)
    if channels is not None and kind in ("zarr", "png"):
        raise UsageError(f"{path}: {len(channels)} channels go into one .tif or .ome.tif here; name the output so")
    kind = "ome" if channels is not None else kind
    if kind == "zarr":
        write_omezarr(path, data, pixel_size=like.pixel_size if like else (None, None, None), force=force,
                      channel=like.channel if like else None, labels=labels, source=inputs[0].name if inputs else None,
                      inputs=inputs, provenance=provenance)
        return
    described = provenance.as_json() if provenance is not None else None
    if kind == "png":
        if planes != 1:
            raise UsageError(f"{path}: PNG holds one plane, data has {planes}; write a .tif or .ome.tif")
        check_writable(path, force, inputs)
        write_image(path, data.reshape(data.shape[-2:]), force=force, description=described)
        return
    if kind == "imagej" and data.dtype not in IMAGEJ_DTYPES:  # converting would lose bits: say so instead
        source = like.path if like is not None and like.path is not None else "its input"  # an ImageJ like
        raise UsageError(f"{path}: an ImageJ TIFF (the kind of {source}) holds {IMAGEJ_TYPES} pixels, not "
                         f"{data.dtype}; convert the data to one of them, or write a .ome.tif")
    axes = "YX" if data.ndim - lead == 2 else "TYX" if provenance is not None else "ZYX"
    if channels is not None:  # OME's order: the channels of each level (TCYX)
        axes, data = axes[:-2] + "CYX", np.moveaxis(data, 0, -3)
    options = (ome_options(axes, like, labels, provenance, channels) if kind == "ome" else
               imagej_options(axes, like, labels, described) if kind == "imagej" else
               {"photometric": "minisblack", **({"description": described, "metadata": None} if described else {})})
    import tifffile

    check_writable(path, force, inputs)
    with terminate_as_interrupt(), disk_space(path, data.nbytes + 65536), atomic_path(path, force) as tmp:
        tifffile.imwrite(tmp, data, compression="zlib", **options)


def output_kind(path: Path, like: Stack | None, labels: list[str] | None, dtype=None) -> str:
    """"zarr", "png", "ome", "imagej" or "tiff": the name decides first (a ``.ome.tif`` is always OME), then
    what ``like`` was read from, then whether labels or pixel sizes need metadata: ImageJ's, or OME's for
    ``dtype`` pixels ImageJ cannot hold (int8, int32, uint32, float64, …: OME-TIFF keeps them as they are)."""
    name = path.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith(".png"):
        return "png"
    source = like.kind if like is not None else None
    if is_ome_name(path) or source in ("ome", "zarr"):
        return "ome"
    sized = like is not None and any(v is not None for v in like.pixel_size)
    if source != "imagej" and (labels is not None or sized) and dtype is not None and dtype not in IMAGEJ_DTYPES:
        return "ome"
    return "imagej" if labels is not None or source == "imagej" or sized else "tiff"


def source_note(like: Stack | None) -> str:
    """The description of a file we write: the source's name, never its path (no output tells where the machine
    that wrote it keeps its files)."""
    source = f"; source: {like.path.name}" if like is not None and like.path is not None else ""
    return f"written by blurlatent{source}"


def um_per_unit(unit) -> float | None:
    """µm per ``unit`` (an OME symbol, an ImageJ unit or an NGFF name); None for pixels or unknown units."""
    text = str(unit or "").strip()
    return UM_PER_UNIT.get(text) or UM_PER_NGFF_UNIT.get(text.lower())


def ome_options(axes: str, like: Stack | None, labels: list[str] | None, provenance: Provenance | None,
                channels: Sequence[str] | None = None) -> dict:
    """tifffile's OME options; the z step is kept as PhysicalSizeZ even on one plane or T levels (OME images
    always have a Z axis), so an output still says the z step of the stack it came from. ``channels``: the
    names of the C axis, else ``like``'s channel."""
    meta: dict = {"axes": axes, "Description": source_note(like)}
    size = like.pixel_size if like is not None else (None, None, None)
    for ax, value in zip("XYZ", size, strict=True):
        if value is not None:
            meta[f"PhysicalSize{ax}"], meta[f"PhysicalSize{ax}Unit"] = value, "µm"
    names = list(channels) if channels is not None else [like.channel] if like is not None and like.channel else []
    if any(names):
        meta["Channel"] = {"Name": names}
    annotations = [] if provenance is None else [provenance.ome_annotation()]
    if labels is not None:  # by plane: z for a stack, t for levels
        annotations.append({"Namespace": LABELS_NAMESPACE, "Value": {str(i): s for i, s in enumerate(labels)}})
    if annotations:
        meta["MapAnnotation"] = annotations
    return {"ome": True, "imagej": False, "photometric": "minisblack", "metadata": meta}


def imagej_options(axes: str, like: Stack | None, labels: list[str] | None, info: str | None) -> dict:
    """tifffile's ImageJ options: T levels are frames (Fiji: a t slider with the slice labels, not depth); the
    z spacing stays as the voxel depth; ``info`` (the provenance JSON) is the Info property."""
    meta: dict = {"axes": axes, "Info": info or source_note(like)}
    x, y, z = like.pixel_size if like is not None else (None, None, None)
    options: dict = {"imagej": True, "ome": False, "metadata": meta}
    if x is not None and y is not None:
        options["resolution"] = (1 / x, 1 / y)
        meta["unit"] = "um"
    if z is not None:
        meta["spacing"], meta["unit"] = z, "um"
    if labels is not None:
        meta["Labels"] = list(labels)
    return options
