"""Image files in and out: TIFF/PNG reading with clear errors, atomic writes, BBBC006 names, intensity scales.

Every writer goes through a temp file in the destination folder and ``os.replace``, so an interrupted
run never leaves a half-written file, and no existing file is replaced unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .errors import UsageError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")

# Real BBBC006v1 names carry NO separator between the channel digit and the UUID:
#   mcf-z-stacks-03212011_a01_s1_w1a571d43d-5554-47fd-bb54-5db68290e5a7.tif
# (the google/microscopeimagequality copies add a "00_" prefix).
BBBC_NAME = re.compile(
    r"^(?:\d+_)?(?P<prefix>mcf-z-stacks-\d+)_(?P<well>[a-p]\d{2})_s(?P<site>\d+)_w(?P<channel>\d)"
    r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.tiff?$"
)
BBBC_PLANE_DIR = re.compile(r"BBBC006_v1_images_z_(?P<plane>\d{2})(?:\.zip)?$")


@dataclass(frozen=True, order=True)
class FieldKey:
    """One imaging field and channel of BBBC006, the same on every plane (the UUID is not)."""

    well: str
    site: int
    channel: str  # "w1" or "w2"

    @property
    def name(self) -> str:
        return f"{self.well}_s{self.site}_{self.channel}"


def parse_bbbc_name(name: str) -> FieldKey | None:
    """(well, site, channel) of a BBBC006 file name, or None when the name is not one."""
    match = BBBC_NAME.match(Path(name).name)
    if match is None:
        return None
    return FieldKey(match["well"], int(match["site"]), f"w{match['channel']}")


def plane_from_path(path: str | Path) -> int | None:
    """The z plane of a file inside a ``BBBC006_v1_images_z_XX`` folder (or zip), else None."""
    for part in reversed(Path(path).parts[:-1]):
        match = BBBC_PLANE_DIR.match(part)
        if match:
            return int(match["plane"])
    return None


def decode_image(data: bytes, source: str) -> np.ndarray:
    """Decode TIFF or PNG bytes into a 2-D array, raising UsageError naming ``source`` when it cannot."""
    import io as _io

    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        import tifffile

        try:
            array = tifffile.imread(_io.BytesIO(data))
        except Exception as exc:  # tifffile raises many types for truncated/corrupt files
            raise UsageError(f"{source}: cannot decode TIFF ({type(exc).__name__}: {exc}); re-copy or re-export the file") from None
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        from PIL import Image

        try:
            with Image.open(_io.BytesIO(data)) as im:
                im.load()
                if im.mode not in ("L", "I;16", "I;16B", "I", "F"):
                    raise UsageError(f"{source}: PNG has mode {im.mode} (colour); pass a single-channel grayscale image")
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
    if not path.exists():
        raise UsageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; pass an image file (.tif/.tiff/.png)")
    return decode_image(path.read_bytes(), str(path))


def check_writable(path: Path, force: bool) -> None:
    """Refuse to replace an existing file (unless ``force``) or to write where no file can be created."""
    path = Path(path)
    if path.exists() and not force:
        raise UsageError(f"{path}: already exists; pass --force to overwrite it or choose another output")
    if path.exists() and path.is_dir():
        raise UsageError(f"{path}: is a folder, expected a file path; choose a file name")
    check_output_location(path)


def check_output_location(path: str | Path) -> None:
    """Refuse an output ``path`` (file or folder) whose nearest existing ancestor is a file or a folder
    this process cannot write into, so a command fails before any work instead of at its first write.
    Missing folders in between are fine: writers create them."""
    path = Path(path)
    ancestor = path.absolute().parent
    # Path.exists() is False for "a_file/x" (NotADirectoryError is swallowed), so this stops at a_file
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{path}: {ancestor} is a file, not a folder; choose another output location")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"{ancestor}: folder is not writable; choose another output location")



def check_output_folder(out: str | Path, force: bool, foreign: "Callable[[Path], str | None]", what: str,
                        option: str = "another output folder") -> bool:
    """Check that a command may write the folder ``out``; True when an existing non-empty one gets replaced.

    ``foreign(out)`` names something in ``out`` this command did not write (or returns None): such a
    folder is never replaced, even with ``force`` — ``--force`` on a mistyped path must not wipe a
    user's data — so its message does not suggest ``--force``. An earlier output of the same command
    (``what``, e.g. "a prepared store") is replaced only with ``force``. Raises UsageError otherwise.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is a file; choose a folder name")
    check_output_location(out)
    if not out.is_dir() or not any(out.iterdir()):
        return False
    stranger = foreign(out)
    if stranger is not None:
        raise UsageError(f"{out}: is not {what} (it holds {stranger!r}); choose {option}, nothing there is replaced even with --force")
    if not force:
        raise UsageError(f"{out}: already exists and holds {what}; pass --force to replace it or choose {option}")
    return True

# --- temp files and folders -------------------------------------------------------------------
# Every writer builds its output under a hidden temp name beside it and renames it into place. The
# name carries the writer's pid and host, so a later run can delete what a killed run (SIGKILL, power
# loss: no cleanup code runs) left behind without touching a temp of a run still going.


def _temp_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}@{socket.gethostname()}."


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | Path, name: str) -> list[Path]:
    """Delete the temp files/folders for output ``name`` in ``folder`` whose writer (same host) is dead.

    Returns what was removed. Temps of live processes and of other hosts are left alone."""
    import glob
    import shutil

    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for entry in folder.glob(f".{glob.escape(name)}.*@*.tmp"):
        pid_text, _, rest = entry.name[len(name) + 2:].partition("@")
        if not pid_text.isdigit() or not rest.startswith(host + ".") or _pid_alive(int(pid_text)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def make_temp_dir(out: str | Path) -> Path:
    """A fresh temp folder beside ``out`` (created with its parents), to be renamed onto ``out`` by
    ``replace_folder``; stale temps of killed earlier runs for ``out`` are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out.parent, out.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out.name), suffix=".tmp", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    return tmp


def replace_folder(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` onto ``out``, replacing an existing ``out`` (moved aside under a
    temp name first, so a kill between the two renames leaves only temps that the next run removes)."""
    import shutil

    if out.exists():
        trash = out.with_name(f"{_temp_prefix(out.name)}old.tmp")
        os.replace(out, trash)
        os.replace(tmp, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def atomic_path(path: str | Path, force: bool = True) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on success it replaces ``path``, on any error it is deleted."""
    path = Path(path)
    check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes, force: bool = True) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)


def write_image(path: str | Path, array: np.ndarray, force: bool = False, compression: str | None = "zlib") -> None:
    """Write a 2-D array (or a [pages, H, W] stack to a multi-page TIFF) atomically; PNG for ``.png`` paths."""
    path = Path(path)
    with atomic_path(path, force) as tmp:
        if path.suffix.lower() == ".png":
            from PIL import Image

            Image.fromarray(array).save(tmp, format="PNG")
        else:
            import tifffile

            tifffile.imwrite(tmp, array, compression=compression)


# --- intensity scales -------------------------------------------------------------------------
# One pair of functions serves prepare (16 -> 8 bit), training and inference (any -> [0, 1] -> back).


def intensity_range(image: np.ndarray, method: str = "minmax", percentiles: tuple[float, float] = (0.1, 99.9)) -> tuple[float, float]:
    """(lo, hi) that map to 0 and 1. ``minmax`` is the paper's per-image scaling; ``percentile`` clips outliers."""
    if method == "minmax":
        lo, hi = float(image.min()), float(image.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(image, percentiles))
    else:
        raise UsageError(f"unknown normalization {method!r}; use minmax or percentile")
    if hi <= lo:
        hi = lo + 1.0  # a flat image: map it to 0 rather than divide by zero
    return lo, hi


def to_unit(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] as float32, clipping outside."""
    return np.clip((image.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)


def from_unit(unit: np.ndarray, lo: float, hi: float, dtype: np.dtype) -> np.ndarray:
    """Inverse of ``to_unit`` into ``dtype`` (rounded and clipped for integer types)."""
    values = unit.astype(np.float64) * (hi - lo) + lo
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


# --- plane lists and progress bars (shared by synth, prepare and the commands that take --planes) ---

N_BBBC_PLANES = 34  # BBBC006v1: z00..z33, z16 in focus


def parse_planes(text: str, limit: int = N_BBBC_PLANES - 1) -> list[int]:
    """Planes from ``start:stop[:step]`` (stop INCLUSIVE: ``0:16:2`` is the paper's nine planes 0, 2, …, 16),
    a comma list (``0,8,16``) or one number. Returns sorted unique ints in 0..``limit``.

    Raises UsageError naming the text and the fix.
    """
    text = str(text).strip()
    hint = "use START:STOP[:STEP] with an inclusive stop (e.g. 0:16:2) or a list such as 0,8,16"
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = parts[0], parts[1], (parts[2] if len(parts) == 3 else 1)
            if step <= 0 or stop < start:
                raise UsageError(f"planes {text!r}: need START <= STOP and STEP > 0; {hint}")
            planes = list(range(start, stop + 1, step))
        else:
            planes = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"planes {text!r} is not a plane range; {hint}") from None
    if not planes:
        raise UsageError(f"planes {text!r} selects no plane; {hint}")
    bad = [p for p in planes if p < 0 or p > limit]
    if bad:
        raise UsageError(f"planes {text!r}: plane {bad[0]} is outside 0..{limit}; {hint}")
    return sorted(set(planes))


def format_planes(planes) -> str:
    """Inverse of ``parse_planes`` for printing: ``[0, 2, …, 16]`` → ``0:16:2``."""
    planes = sorted(planes)
    if len(planes) > 2:
        step = planes[1] - planes[0]
        if step > 0 and all(b - a == step for a, b in zip(planes, planes[1:])):
            return f"{planes[0]}:{planes[-1]}" + (f":{step}" if step != 1 else "")
    return ",".join(str(p) for p in planes)


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True):
    """A rich progress bar on stderr; yields ``advance(n=1)``. A no-op when ``enabled`` is False."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
