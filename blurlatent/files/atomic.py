"""Files and folders we write: atomic writes, THE output policy for files, hashes and JSON.

Every writer builds its output under a hidden temp name beside it and renames it into place, so an
interrupted run never leaves a half-written file; no existing output is replaced unless ``force`` is
given, an input is never overwritten (``check_outputs``), and many files are written all or nothing
(``staged_files``). Output folders (which one a command may replace, locks) follow ``outputs``.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from blurlatent.errors import RuntimeFailure, UsageError


def check_writable(path: str | Path, force: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse to replace an existing file (unless ``force``) or to write where no file can be created; a
    dangling symbolic link counts as existing. An output that is one of ``inputs`` (also through a symbolic
    or hard link) is refused even with ``force``."""
    check_outputs([path], force, inputs)


def check_outputs(paths: Sequence[str | Path], force: bool, inputs: Sequence[str | Path] = ()) -> None:
    """``check_writable`` for many outputs at once (each input is looked at once; two outputs may not share
    a path). Raises UsageError naming the first output at fault."""
    ids = {}
    for source in inputs:
        with contextlib.suppress(OSError):
            st = os.stat(source)
            ids[(st.st_dev, st.st_ino)] = source
    seen = set()
    for path in map(Path, paths):
        if path in seen:
            raise UsageError(f"{path}: two outputs would be written to this path; give each output its own name")
        seen.add(path)
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in ids:
                raise UsageError(f"{path}: is the input {ids[st.st_dev, st.st_ino]}; choose another output (an input "
                                 "is never overwritten, even with {force=True})", "force")
        if path.is_dir():  # before "pass --force": force cannot make a folder a file
            raise UsageError(f"{path}: is a folder, expected a file path; choose a file name")
        if os.path.lexists(path) and not force:
            link = f" (a symbolic link to {os.readlink(path)})" if path.is_symlink() else ""
            raise UsageError(f"{path}: already exists{link}; pass {{force=True}} to overwrite it or choose another "
                             "output", "force")
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


# --- temp files and folders -------------------------------------------------------------------
# Every writer builds its output under a hidden temp name beside it and renames it into place. The
# name carries the writer's pid and host, so a later run can delete what a killed run (SIGKILL, power
# loss: no cleanup code runs) left behind without touching a temp of a run still going.


# what follows ".NAME" in a temp's name: _temp_prefix's ".<pid>@<host>.", then mkstemp's part (or "old") and ".tmp"
TEMP_TAIL = r"\.\d+@[^/]*\.tmp"


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
    tmp_path = temp_file(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def temp_file(path: Path) -> Path:
    """A new empty temp file beside ``path`` (parents created, stale temps of killed runs removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    Path(tmp).chmod(0o666 & ~_umask())  # mkstemp makes it private; the result is an ordinary file
    return Path(tmp)


def atomic_write_bytes(path: str | Path, data: bytes, force: bool = True) -> None:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first: what creating it would add, so a
    failed command can take exactly those away again (``remove_empty_folders``)."""
    missing, folder = [], Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, from ``missing_folders``), stopping at the first that is not empty:
    something put there meanwhile is not ours to delete."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def staged_files(force: bool = True) -> Iterator[Callable[[Path], Path]]:
    """All or nothing for many files: ``stage(path)`` gives a path of the same name inside a temp folder beside
    ``path`` to write; when the block ends without error each such file (or folder: an OME-Zarr) replaces its
    ``path``, else every temp, and every folder the outputs needed, is removed. Without ``force`` no output is
    replaced, even one that appeared while the block ran (another job's): UsageError, nothing written."""
    staged: list[tuple[Path, Path]] = []
    created: list[Path] = []

    def stage(path: Path) -> Path:
        path = Path(path)
        created.extend(f for f in missing_folders(path.parent) if f not in created)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, path.name)
        tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), suffix=".tmp", dir=path.parent))
        staged.append((tmp / path.name, path))
        return staged[-1][0]

    try:
        yield stage
        place_staged(staged, force)
        created.clear()
    finally:
        for tmp, _ in staged:
            shutil.rmtree(tmp.parent, ignore_errors=True)
        for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):  # outputs in several folders: try each, deepest first
                folder.rmdir()


def place_staged(staged: list[tuple[Path, Path]], force: bool) -> None:
    """Rename each finished temp onto its output. Without ``force`` the outputs are looked at again first (the
    job checked them before its work, but another one may have written them meanwhile) and each file is placed
    with ``os.link``, which never replaces; what was placed is taken back when a later one cannot be."""
    appeared = next((path for _, path in staged if not force and os.path.lexists(path)), None)
    if appeared is not None:
        raise appeared_meanwhile(appeared)
    placed: list[Path] = []
    try:
        for tmp, path in staged:
            if tmp.is_dir():  # an OME-Zarr folder; with force, an earlier one is moved aside first
                replace_folder(tmp, path)
            elif force:
                os.replace(tmp, path)
            else:
                link_no_replace(tmp, path)
            placed.append(path)
    except BaseException:
        for path in [] if force else placed:  # new outputs: nothing of anyone else's is lost taking them back
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


def link_no_replace(tmp: Path, path: Path) -> None:
    """Move the file ``tmp`` to ``path`` unless ``path`` exists (atomically where the filesystem has hard links)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise appeared_meanwhile(path) from None
    except OSError:  # no hard links here (FAT, some network filesystems): look, then rename
        if os.path.lexists(path):
            raise appeared_meanwhile(path) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def appeared_meanwhile(path: Path) -> UsageError:
    return UsageError(f"{path}: appeared while this job ran (another job wrote it?); pass {{force=True}} to overwrite "
                      "it or choose another output", "force")


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


# --- robustness: full disks, special files, SIGTERM (issue 11) ------------------------------------------------
# A full disk must end a command with one line naming what it was writing, not SIGBUS (memory-mapped writes
# into a sparse file) or "[Errno 28]"/torch's "unexpected pos"; every writer's own cleanup removes its temp.

MB = 1 << 20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_TEMP_NAME = re.compile(rf"^\.(?P<name>.+?){TEMP_TAIL}$")
_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"))


def free_bytes(path: str | Path) -> int:
    """Bytes still writable (by an ordinary user) on the filesystem that holds, or will hold, ``path``."""
    folder = Path(path).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def output_name(path: str | Path) -> Path:
    """The output the user named for ``path``, which may lie inside a writer's temp (``.NAME.<pid>@<host>.x.tmp``)."""
    path = Path(path)
    for i, part in enumerate(path.parts):
        if (match := _TEMP_NAME.match(part)) is not None:
            return Path(*path.parts[:i], match["name"])
    return path


def disk_full(path: str | Path, need: int) -> RuntimeFailure:
    """The one message for a full disk: the output at fault, what it needs (when known) and what is free."""
    needs = f"needs ~{max(need, MB // 10) / MB:.1f} MB, " if need > 0 else ""
    return RuntimeFailure(f"disk full writing {output_name(path)} ({needs}{free_bytes(path) / MB:.1f} MB free); "
                          "free some space or choose another output location")


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc``, or an exception it was raised from or while handling, is ENOSPC/EDQUOT — or torch's
    file writer failed (it drops the errno: "unexpected pos …", "PytorchStreamWriter failed writing")."""
    seen = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and link.errno in DISK_FULL:
            return True
        if isinstance(link, RuntimeError) and ("inline_container" in str(link) or "PytorchStreamWriter" in str(link)):
            return True
        link = link.__cause__ or link.__context__
    return False


@contextlib.contextmanager
def disk_space(path: str | Path, need: int = 0) -> Iterator[None]:
    """Refuse up front (RuntimeFailure "disk full writing PATH …") when the filesystem of ``path`` has less
    than ``need`` bytes free, and turn a disk that fills while the block writes into the same one line."""
    if need > 0 and free_bytes(path) < need:
        raise disk_full(path, need)
    try:
        yield
    except (UsageError, RuntimeFailure):
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full(path, need) from exc
        raise


def reserve_space(path: str | Path) -> None:
    """Allocate every block of the existing file ``path`` now, so writing it through a memory map cannot meet a
    full disk later (the kernel's answer to that is SIGBUS, which kills the process): ENOSPC is raised here."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    finally:
        os.close(fd)


def refuse_special_file(path: str | Path, fix: str) -> None:
    """UsageError when ``path`` exists but is a FIFO, socket or device: reading one blocks or never ends.
    Symlinks are followed; a missing path or a folder is left to the caller's own message."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    kind = next((name for test, name in _SPECIAL if test(mode)), None)
    if kind is not None:
        raise UsageError(f"{path}: is {kind}, not a regular file (reading it could block forever); {fix}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (``kill``, a scheduler's stop) raises KeyboardInterrupt like Ctrl-C, so the
    same cleanup runs: temps removed, worker pools ended. Only in the main thread, and only where SIGTERM still
    has its default action (a handler someone else installed is left alone)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back while the block runs (they arrive when it ends): for forking worker
    processes, where a signal mid-fork lands in logging's at-fork hooks ("Exception ignored in
    _releaseLock") or in a child that has not yet set its own handlers. Children inherit the held mask;
    ``release_stop_signals`` lets them receive signals again once their handlers are set."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
