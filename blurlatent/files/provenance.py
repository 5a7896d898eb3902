"""What made an output: the provenance every blur/deblur output carries, and the one reader of it.

A ``Provenance`` is made once per job (``inference.jobs``) and handed to the writers (``stacks.write_stack``,
``omezarr.write_omezarr``, ``images.write_image``), which keep it where each format's users look:

- OME-TIFF: a MapAnnotation of namespace ``blurlatent/provenance``, one key per field (OMERO and Fiji's
  Bio-Formats show key-value pairs; lists and numbers as JSON, text as it is);
- ImageJ TIFF: the ``Info`` property (Fiji: Image > Show Info), JSON ``{"blurlatent": {...}}``;
- plain TIFF: the ImageDescription, the same JSON; PNG: a ``Description`` text chunk, the same JSON;
- OME-Zarr: the group attribute ``attrs["blurlatent"]["provenance"]``.

Names only, never paths: the model is its built-in name or its checkpoint's file name, the inputs their file
names, so no output tells where the machine that made it keeps its files.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from blurlatent.errors import UsageError

NAMESPACE = "blurlatent/provenance"  # the OME MapAnnotation holding a Provenance
KEY = "blurlatent"  # the JSON key (ImageJ Info, TIFF/PNG description) and the OME-Zarr group attribute
TEXT_FIELDS = ("command", "model", "model_sha256", "version", "channel_name")  # kept as text in OME


@dataclass(frozen=True)
class Provenance:
    """How one output was made. ``command`` "blur" or "deblur"; ``alphas`` one per level the output holds;
    ``planes`` the two planes used (stack indices, or the focal planes α came from), ``z_um`` their z in µm
    from the stack's first plane (where the input has a z step); ``target`` the plane a deblur's α aims at
    (None when α was given); ``channel`` index (all of them for an output of every channel) and ``channel_name``;
    ``model`` a built-in name or a checkpoint's file name, ``model_sha256`` its weights' checksum; ``version``
    blurlatent's; ``inputs`` the file names; ``self_check`` a deblur's self-check score per level
    (``inference.selfcheck``: above its threshold the output may be worse than the less-blurry input; None: blur)."""

    command: str
    alphas: tuple[float, ...]
    model: str
    model_sha256: str
    version: str
    planes: tuple[float, float] | None = None
    z_um: tuple[float, float] | None = None
    target: float | None = None
    channel: int | tuple[int, ...] = 0
    channel_name: str | None = None
    inputs: tuple[str, ...] = ()
    self_check: tuple[float, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, floats, text, None): what ``read_provenance`` gives back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def as_json(self) -> str:
        return json.dumps({KEY: self.as_dict()}, indent=1)

    def ome_annotation(self) -> dict[str, Any]:
        """The OME MapAnnotation (tifffile's ``metadata["MapAnnotation"]`` form); None fields are left out."""
        values = {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.as_dict().items() if v is not None}
        return {"Namespace": NAMESPACE, "Value": values}


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance blurlatent wrote into ``path`` (OME-TIFF, ImageJ or plain TIFF, PNG, OME-Zarr folder) as
    ``Provenance.as_dict`` gives it; {} for a file without one. UsageError naming a file that cannot be read."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: file not found; check the path")
    try:
        if path.is_dir():
            return zarr_provenance(path)
        if path.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return json_provenance(getattr(image, "text", {}).get("Description"))
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return ome_provenance(tif.ome_metadata or "")
            if tif.is_imagej:
                return json_provenance((tif.imagej_metadata or {}).get("Info"))
            return json_provenance(tif.pages[0].description)
    except UsageError:
        raise
    except Exception as exc:  # tifffile/PIL raise many types for files that are not images
        raise UsageError(f"{path}: cannot read its metadata ({type(exc).__name__}: {exc}); pass an output of "
                         "blurlatent blur or deblur") from None


def json_provenance(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text or "")
    except ValueError:
        return {}
    return complete(found.get(KEY)) if isinstance(found, dict) else {}


def ome_provenance(xml: str) -> dict[str, Any]:
    for annotation in ET.fromstring(xml).iter():
        if annotation.tag.endswith("MapAnnotation") and annotation.get("Namespace") == NAMESPACE:
            pairs = {m.get("K") or "": m.text or "" for m in annotation.iter() if m.tag.endswith("}M")}
            return complete({k: v if k in TEXT_FIELDS else json.loads(v) for k, v in pairs.items()})
    return {}


def zarr_provenance(folder: Path) -> dict[str, Any]:
    for name in (".zattrs", "zarr.json"):
        if (folder / name).is_file():
            attrs = json.loads((folder / name).read_text())
            attrs = attrs.get("attributes", attrs) if name == "zarr.json" else attrs
            ours = attrs.get(KEY) if isinstance(attrs, dict) else None
            return complete(ours.get("provenance")) if isinstance(ours, dict) else {}
    return {}


def complete(found: Any) -> dict[str, Any]:
    """``found`` with every field of ``Provenance`` (absent ones None); {} when it is no provenance."""
    if not isinstance(found, dict) or "command" not in found:
        return {}
    return {name: found.get(name) for name in Provenance.__dataclass_fields__}
