"""Files and folders we write: atomic writes, THE output policy, hashes and JSON.

Every writer builds its output under a hidden temp name beside it and renames it into place, so an
interrupted run never leaves a half-written file; no existing output is replaced unless ``force`` is
given, and a folder this tool did not write is never replaced at all.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UsageError


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
        raise UsageError(f"{out}: is not {what} (it holds {stranger!r}); choose {option}, nothing there is replaced "
                         "even with --force")
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



def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file read in 4 MiB chunks (stores reach gigabytes; never read them whole)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_safe(value: Any) -> Any:
    """Plain JSON/YAML data from dataclass dicts, numpy scalars/arrays, Paths and tuples; NaN/inf become None."""
    import math

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any, force: bool = True) -> None:
    """``data`` (made JSON-safe) as indented JSON, atomically."""
    atomic_write_bytes(path, json.dumps(json_safe(data), indent=1).encode(), force=force)
