"""Image files in and out: grayscale TIFF/PNG planes with one-line errors naming the file, and one zip reader.

Writers go through ``files.atomic_path``, so an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from blurlatent.errors import UsageError
from blurlatent.files.atomic import atomic_path, disk_space, refuse_special_file, terminate_as_interrupt

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
# A zip member is refused before it is inflated when it claims more than MAX_MEMBER_BYTES, or more than
# BOMB_MIN_BYTES at a compression ratio above BOMB_RATIO (a 16-bit microscope plane compresses ~1.5:1;
# 100 MB of zeros deflates ~1000:1): zipfile inflates up to the member's declared size, all into memory.
MAX_MEMBER_BYTES, BOMB_MIN_BYTES, BOMB_RATIO = 1 << 30, 64 << 20, 100


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode TIFF or PNG bytes into a 2-D array, raising UsageError naming ``source`` when it cannot."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        try:
            with tifffile.TiffFile(io.BytesIO(data)) as tif:
                shapes = [tuple(s.shape) for s in tif.series]
                array = tif.asarray() if len(shapes) == 1 else None
        except Exception as exc:  # tifffile raises many types for truncated/corrupt files
            raise UsageError(f"{source}: cannot decode TIFF ({type(exc).__name__}: {exc}); re-copy or re-export the "
                             "file") from None
        if array is None:  # tifffile would read the first series and silently drop the others
            raise UsageError(f"{source}: TIFF holds {len(shapes)} image series {shapes[:4]}, expected one grayscale "
                             "plane; save each series to its own file")
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.mode not in ("L", "I;16", "I;16B", "I", "F"):
                    raise UsageError(f"{source}: PNG has mode {im.mode} (colour); pass a single-channel grayscale "
                                     "image")
                array = np.asarray(im)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"{source}: cannot decode PNG ({exc}); re-copy or re-export the file") from None
    else:
        raise UsageError(f"{source}: not a TIFF or PNG image; pass a .tif/.tiff/.png file")
    return check_grayscale(array, source)


def check_grayscale(array: np.ndarray, source: str) -> np.ndarray:
    """``array`` as one 2-D grayscale plane (singleton axes dropped); UsageError naming ``source`` for colour
    or multi-page images, images under 2x2 pixels, NaN/inf, and pixel types other than int/uint/float."""
    array = np.asarray(array)
    if np.squeeze(array).ndim < 2:
        # a 1xN or 1x1 image squeezes to fewer than two axes: say "too small", not "not grayscale"
        h, w = (array.shape[-2:] if array.ndim >= 2 else (1, array.size))
        raise UsageError(f"{source}: image is {w}x{h} pixels, too small; pass a real image")
    array = np.squeeze(array)
    if array.ndim != 2:
        raise UsageError(
            f"{source}: image has shape {tuple(array.shape)}, expected one grayscale plane; "
            "split channels/pages first (e.g. one file per channel)"
        )
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise UsageError(f"{source}: image is {array.shape[1]}x{array.shape[0]} pixels, too small; pass a real image")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UsageError(f"{source}: image holds NaN or infinite values; clean or re-export it")
    if array.dtype.kind not in "uif" or array.dtype == np.bool_:
        raise UsageError(f"{source}: unsupported pixel type {array.dtype}; pass 8/16-bit integer or float images")
    return array


def read_image(path: str | Path) -> np.ndarray:
    """Read a grayscale TIFF or PNG as a 2-D array in its own dtype. Raises UsageError naming the file."""
    path = Path(path)
    check_image_path(path)
    return decode_image(path.read_bytes(), str(path))


def check_image_path(path: Path) -> None:
    """UsageError naming ``path`` when it is missing, a folder, or a FIFO/socket/device."""
    if not path.exists():
        raise UsageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; pass an image file (.tif/.tiff/.png)")
    refuse_special_file(path, "pass an image file (.tif/.tiff/.png)")


def write_image(path: str | Path, array: np.ndarray, force: bool = False, compression: str | None = "zlib",
                description: str | None = None) -> None:
    """Write a 2-D array (or a [pages, H, W] stack to a multi-page TIFF) atomically; PNG for ``.png`` paths.
    ``description`` (text, e.g. ``Provenance.as_json``) goes in the TIFF ImageDescription or a PNG text chunk.
    A full disk is one RuntimeFailure naming ``path`` (checked first for the uncompressed size); SIGTERM
    stops it like Ctrl-C; either way no temp file is left."""
    path = Path(path)
    with terminate_as_interrupt(), disk_space(path, np.asarray(array).nbytes + 65536), atomic_path(path, force) as tmp:
        if path.suffix.lower() == ".png":
            from PIL import Image, PngImagePlugin

            info = PngImagePlugin.PngInfo()
            if description is not None:
                info.add_text("Description", description)
            Image.fromarray(array).save(tmp, format="PNG", pnginfo=info)
        else:
            import tifffile

            # pages, never RGB; a description replaces tifffile's own shape JSON
            tifffile.imwrite(tmp, array, compression=compression, photometric="minisblack", description=description,
                             metadata={} if description is None else None)



# zip handles are opened once per process, not once per member; keyed by pid because a forked worker
# must not share the parent's file offset
_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def read_zip_member(path: str | Path, member: str) -> bytes:
    """The bytes of ``member`` inside the zip ``path`` (handle cached per process).

    Raises UsageError naming ``path:member`` for a missing zip or member, a CRC error or a truncated file.
    """
    key = (os.getpid(), str(path))
    label = f"{path}:{member}"
    try:
        handle = _ZIPS.get(key)
        if handle is None:
            refuse_special_file(path, "pass the downloaded .zip file")
            handle = _ZIPS[key] = zipfile.ZipFile(path)
        check_member_size(handle.getinfo(member), label)
        return handle.read(member)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise UsageError(f"{label}: cannot read zip member ({exc}); "
                         "re-download the zip or check it was not moved") from None


def check_member_size(info: zipfile.ZipInfo, label: str) -> None:
    """UsageError, before anything is inflated, for a member that claims an absurd size or compression ratio."""
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MAX_MEMBER_BYTES or (info.file_size > BOMB_MIN_BYTES and ratio > BOMB_RATIO):
        raise UsageError(f"{label}: zip member would inflate to {info.file_size / (1 << 20):.0f} MB from "
                         f"{info.compress_size / 1024:.0f} KB (ratio {ratio:.0f}:1), refused as a possible zip bomb; "
                         "re-download the zip from its original source")


def zip_listing(path: str | Path) -> list[zipfile.ZipInfo]:
    """The file entries (not folders) of the zip ``path``, by name. Raises UsageError naming the zip."""
    refuse_special_file(path, "pass the downloaded .zip file")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{path}: not a readable zip ({exc}); re-download it") from None
    return sorted(infos, key=lambda i: i.filename)


def close_zips() -> None:
    """Close this process's cached zip handles (a later run may find the zips replaced)."""
    for key in [k for k in _ZIPS if k[0] == os.getpid()]:
        _ZIPS.pop(key).close()


def read_source(path: str | Path, member: str | None = None) -> np.ndarray:
    """One grayscale plane from a file, or from a member of a zip when ``member`` is given."""
    if member is None:
        return read_image(path)
    return decode_image(read_zip_member(path, member), f"{path}:{member}")
