"""napari's File > Open for z-stacks: OME-TIFF, ImageJ TIFF and OME-Zarr through ``files.stacks.read_stack``.

napari's builtin reader opens an OME-TIFF at scale (1, 1, 1) and a two-channel file as one 4-D layer. This
reader gives one ZYX image layer per channel, named from the file (``cells DAPI``; ``cells c1`` where a channel
has no name), with the z, y, x scale in µm from the file's pixel size (OME PhysicalSize, ImageJ resolution and
spacing, NGFF scale; 1 pixel where the file does not say, and the layer's units say which). Like
napari-ome-zarr and napari-aicsimageio it hands napari LayerData tuples ``(data, kwargs, "image")``; unlike
their ``channel_axis`` tuple, each channel is its own tuple, so each carries its own name and metadata.

npe2's reader contract: ``get_reader(path)`` returns a function ``path -> [LayerData]``, or None for a path
this reader does not open (not a TIFF nor an OME-Zarr folder, e.g. a PNG, which napari's reader opens well).
A file that is no z-stack (time points, several series, RGB) raises the library's one-line UsageError, which
napari shows. Only numpy and ``files`` are imported here: no torch, no Qt.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from blurlatent.files.omezarr import is_zarr_path
from blurlatent.files.stacks import Stack, read_stack

TIFF_SUFFIXES = (".tif", ".tiff")
NAME_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".zarr")  # longest first
# one colour per channel, shown added together (napari's own choice for a channel_axis layer)
CHANNEL_COLORMAPS = ("magenta", "green", "cyan", "yellow", "red", "blue")
MICROMETER, PIXEL = "micrometer", "pixel"

LayerData = tuple[object, dict, str]


def opens(path) -> bool:
    """True for a ``.tif``/``.tiff`` file or an OME-Zarr folder (when zarr is installed: else napari-ome-zarr
    or another reader may take it)."""
    if not isinstance(path, (str, Path)):
        return False
    if is_zarr_path(path):
        return importlib.util.find_spec("zarr") is not None
    return Path(path).suffix.lower() in TIFF_SUFFIXES and Path(path).is_file()


def get_reader(path) -> Callable[[object], list[LayerData]] | None:
    """npe2's reader hook: ``read_stacks`` when every path given (one, or a list) is a stack this reader opens,
    else None."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    return read_stacks if paths and all(opens(p) for p in paths) else None


def read_stacks(path) -> list[LayerData]:
    """One image layer per channel of each path (``stack_layers``)."""
    paths = list(path) if isinstance(path, (list, tuple)) else [path]
    return [layer for p in paths for layer in stack_layers(p)]


def stack_layers(path: str | Path) -> list[LayerData]:
    """The channels of the z-stack ``path`` as LayerData tuples: data [Z, Y, X] as stored, kwargs with name, scale
    (z, y, x), units, axis labels, colormap and metadata (the file's pixel sizes in µm, channel, plane labels).
    UsageError (the library's message) for a file ``read_stack`` refuses."""
    first = read_stack(path, channel=0)
    stacks = [first, *(read_stack(path, channel=c) for c in range(1, first.channel_count))]
    return [stack_layer(stack, len(stacks)) for stack in stacks]


def display_stem(path: Path) -> str:
    """``cells.ome.tif`` → ``cells``: the file's name without its image suffixes."""
    name = path.name
    for suffix in NAME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def stack_layer(stack: Stack, channels: int) -> LayerData:
    """One channel of a ``channels``-channel file as a LayerData tuple (see ``stack_layers``)."""
    assert stack.path is not None  # read_stack sets it
    x, y, z = stack.pixel_size
    sizes = (z, y, x)
    label = stack.channel or f"c{stack.channel_index}"
    name = display_stem(stack.path) if channels == 1 and not stack.channel else f"{display_stem(stack.path)} {label}"
    meta = {"path": str(stack.path), "kind": stack.kind, "axes": stack.axes, "channel": stack.channel,
            "channel_index": stack.channel_index, "channel_count": channels,
            "pixel_size_um": {"x": x, "y": y, "z": z}, "plane_labels": stack.labels}
    kwargs: dict = {"name": name, "scale": tuple(1.0 if s is None else float(s) for s in sizes),
                    "units": tuple(PIXEL if s is None else MICROMETER for s in sizes),
                    "axis_labels": ("z", "y", "x"), "metadata": meta}
    if channels > 1:
        kwargs["colormap"] = CHANNEL_COLORMAPS[stack.channel_index % len(CHANNEL_COLORMAPS)]
        kwargs["blending"] = "additive"
    return stack.data, kwargs, "image"
