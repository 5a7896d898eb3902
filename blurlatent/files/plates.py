"""OME-Zarr HCS plates in and out (NGFF plate → wells → fields), through zarr (the extra ``blurlatent[zarr]``).

A plate's root holds ``plate`` (rows, columns, wells [{path "A/1", rowIndex, columnIndex}], acquisitions,
field_count, name), each well group ``well`` (images [{path "0", acquisition}]), and each field is an NGFF image
that ``omezarr`` reads. ``read_plate`` lists the fields in the plate's order (wells as listed, then each well's
images). ``write_plate_layout`` makes the same plate's groups — root, rows, wells and their metadata, NGFF 0.4 in
zarr format 2 as ``omezarr`` writes images — in a folder that the fields are then written into, one image per
field (``omezarr.write_omezarr``, from any worker process). The root also carries our attribute (the source name
and the job's provenance, ``provenance.read_provenance`` reads it) and the output-folder marker, which lists the
files of the finished plate: only a plate blurlatent wrote is ever replaced
(``output_folders.check_output_folder``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from blurlatent.errors import UsageError
from blurlatent.files.omezarr import NGFF_VERSION, OURS, import_zarr, ngff_attrs
from blurlatent.files.output_folders import write_marker

PLATE_KEYS = ("name", "rows", "columns", "wells", "acquisitions", "field_count")  # NGFF 0.4 plate fields kept
ROOT_FILES = (".zattrs", "zarr.json")  # zarr format 2, format 3


@dataclass(frozen=True)
class PlateField:
    """One field of a plate: ``well`` its well's path ("A/1"), ``image`` its path in the well ("0")."""

    well: str
    image: str

    @property
    def name(self) -> str:
        """The field's path in the plate, "A/1/0"."""
        return f"{self.well}/{self.image}"


@dataclass(frozen=True)
class Plate:
    """An HCS plate: ``plate`` its NGFF plate metadata as read, ``wells`` each well's ``well`` metadata by path,
    ``fields`` every field in order."""

    path: Path
    plate: dict
    wells: dict[str, dict]
    fields: tuple[PlateField, ...]

    def field_path(self, field: PlateField) -> Path:
        return self.path / field.well / field.image


def root_attrs(path: str | Path) -> dict | None:
    """The NGFF attributes of the zarr group at ``path`` read from its JSON (no zarr needed: a cheap look before
    torch or dask is imported); None where it has none."""
    for name in ROOT_FILES:
        try:
            attrs = json.loads((Path(path) / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", {}) if name == "zarr.json" and isinstance(attrs, dict) else attrs
        if isinstance(attrs, dict):
            return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs
    return None


def is_plate(path: str | Path) -> bool:
    """True for a folder whose zarr group holds NGFF ``plate`` metadata."""
    attrs = root_attrs(path) if Path(path).is_dir() else None
    return attrs is not None and isinstance(attrs.get("plate"), dict)


def read_plate(path: str | Path) -> Plate:
    """The plate at ``path`` and its fields. UsageError naming the folder when it is no plate, a listed well is
    missing or holds no image, or the plate has no field."""
    path = Path(path)
    if not is_plate(path):
        raise UsageError(f"{path}: is not an OME-Zarr HCS plate (no plate metadata); pass a plate folder, a "
                         "z-stack with {z=P1 P2}, or a folder of z-stacks", "z")
    zarr = import_zarr(path, "reading")
    root = zarr.open_group(str(path), mode="r")
    plate = dict(ngff_attrs(root)["plate"])
    wells: dict[str, dict] = {}
    fields: list[PlateField] = []
    for entry in plate.get("wells") or []:
        well = str(entry.get("path", "")) if isinstance(entry, dict) else ""
        try:
            meta = ngff_attrs(root[well]).get("well") if well else None
        except KeyError:
            meta = None
        images = [str(im.get("path", "")) for im in (meta or {}).get("images", []) if isinstance(im, dict)]
        if not images or "" in images:
            raise UsageError(f"{path}: well {well or '?'} is listed in the plate but holds no image; re-copy or "
                             "re-export the plate")
        wells[well] = dict(meta or {})
        fields += [PlateField(well, image) for image in images]
    if not fields:
        raise UsageError(f"{path}: the plate lists no well; pass a plate with images")
    return Plate(path, plate, wells, tuple(fields))


def write_plate_layout(folder: str | Path, plate: Plate, source: str = "", provenance: dict | None = None) -> None:
    """Make ``plate``'s groups in the empty ``folder`` (root, rows, wells; NGFF 0.4, zarr format 2): its plate and
    well metadata (NGFF 0.4 fields only) and our attribute (``source``, ``provenance``); the fields' images are
    written into it next, then ``sign_plate``."""
    folder = Path(folder)
    zarr = import_zarr(folder, "writing")
    root = zarr.open_group(str(folder), mode="w", zarr_format=2)
    meta = {key: plate.plate[key] for key in PLATE_KEYS if key in plate.plate}
    ours: dict = {"source": source, "labels": []}
    if provenance is not None:
        ours["provenance"] = provenance
    root.attrs.update({"plate": {**meta, "version": NGFF_VERSION}, OURS: ours})
    for well, attrs in plate.wells.items():
        images = [{k: v for k, v in im.items() if k in ("path", "acquisition")}
                  for im in attrs.get("images", []) if isinstance(im, dict)]
        root.require_group(well).attrs.update({"well": {"images": images, "version": NGFF_VERSION}})


def sign_plate(folder: str | Path, command: str) -> None:
    """Mark the finished plate in ``folder`` as ``command``'s output: the marker lists every file it holds, so a
    later run with ``force`` replaces it, and refuses it once anyone else put something in it."""
    write_marker(folder, command)
